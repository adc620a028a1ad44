#!/usr/bin/env python3
"""Play Exotel's or Twilio's side of calls against pipecat_echo_bot.py and report what Pipecat sends.

    PY=$(.ci/pipecat-env.sh | tail -1)
    $PY crates/exogate/tests/interop/check_bot.py                      # spawns the bot, both serializers
    $PY crates/exogate/tests/interop/check_bot.py --serializer twilio --bot-rate 16000
    $PY crates/exogate/tests/interop/check_bot.py --serializer exotel --url ws://127.0.0.1:9000/ws

Needs only the standard library and `websockets` (installed with pipecat-ai). Without --url it starts
pipecat_echo_bot.py (same interpreter, port 0) once per serializer and also checks the bot's stdout
lines (READY/START/DTMF/CLEAR/END). Exit status 0 when every check passed, 1 otherwise.

Scenarios per serializer:
  echo       connected, start, 2 s of 440 Hz in real time (Exotel: 1600 B PCM16 per 100 ms; Twilio: 160 B
             mu-law per 20 ms), wait for the echo, stop, wait to see if the bot closes, close 1000.
  clear      3 s sent at once (faster than real time), DTMF `#` after 0.5 s: expects `clear`, the rest of
             the echo dropped, then echo working again.
  hangup     1 s sent at once, then DTMF `*`: expects the queued echo, then the bot closing the socket.
  handshake  variants of connected/start (missing connected, missing fields, camelCase...): which ones
             Pipecat's runner accepts.
"""

import argparse
import asyncio
import base64
import json
import math
import os
import struct
import sys
import time
import uuid

import websockets
from websockets.exceptions import ConnectionClosed

HERE = os.path.dirname(os.path.abspath(__file__))
RESAMPLED = False  # the bot's pipeline rate differs from the wire rate (set per serializer run)

# ---------------------------------------------------------------- audio

BIAS, CLIP = 0x84, 32635
SEG_END = (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF)


def ulaw_encode_sample(x: int) -> int:
    sign = 0x80 if x < 0 else 0
    m = min(abs(x), CLIP) + BIAS
    exp = next(e for e in range(8) if m <= SEG_END[e])
    mant = (m >> (exp + 3)) & 0x0F
    return ~(sign | exp << 4 | mant) & 0xFF


def _ulaw_decode_sample(b: int) -> int:
    u = ~b & 0xFF
    sign, exp, mant = u & 0x80, (u >> 4) & 7, u & 0x0F
    m = ((mant << 3) + BIAS) << exp
    return BIAS - m if sign else m - BIAS


ULAW_LUT = [_ulaw_decode_sample(b) for b in range(256)]


def ulaw_decode(data: bytes) -> list[int]:
    return [ULAW_LUT[b] for b in data]


def tone(freq: float, seconds: float, rate: int, amp: float = 0.4) -> list[int]:
    n = int(seconds * rate)
    return [int(amp * 32767 * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]


def pcm16(samples: list[int]) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def unpcm16(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data[: len(data) // 2 * 2]))


def best_correlation(sent: list[int], got: list[int], max_lag: int, window: int = 2000):
    """Normalised cross-correlation of got[lag:] against sent, best over 0..max_lag samples
    (coarse search every 4 samples, then refined)."""
    if not sent or not got:
        return 0.0, 0
    start = min(len(sent) // 4, 800)
    a = sent[start:start + window]
    ea = math.sqrt(sum(x * x for x in a)) or 1.0

    def corr(lag):
        b = got[start + lag:start + lag + len(a)]
        if len(b) < len(a):
            return None
        eb = math.sqrt(sum(x * x for x in b)) or 1.0
        return sum(x * y for x, y in zip(a, b)) / (ea * eb)

    best = (-2.0, 0)
    for lags in (range(0, max_lag + 1, 4), None):
        if lags is None:
            lags = range(max(0, best[1] - 4), best[1] + 5)
        for lag in lags:
            c = corr(lag)
            if c is not None and c > best[0]:
                best = (c, lag)
    return best


def trailing_silence(samples: list[int], threshold: int = 64) -> int:
    n = 0
    for x in reversed(samples):
        if abs(x) > threshold:
            break
        n += 1
    return n


# ---------------------------------------------------------------- protocol dialects


class Exotel:
    name = "exotel"
    rate = 8000
    frame_ms = 100

    def __init__(self, rate: int = 8000):
        self.rate = rate
        self.stream_sid = uuid.uuid4().hex
        self.call_sid = uuid.uuid4().hex
        self.seq = 0
        self.chunk = 0

    def _seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    def connected(self):
        return {"event": "connected"}

    def start(self, **overrides):
        start = {
            "stream_sid": self.stream_sid,
            "call_sid": self.call_sid,
            "account_sid": "exotelt",
            "from": "09876543210",
            "to": "08047491899",
            "custom_parameters": {"agentId": "pipecat", "lang": "en"},
            "media_format": {"encoding": "base64", "sample_rate": str(self.rate), "bit_rate": "128kbps"},
        }
        for k, v in overrides.items():
            if v is None:
                start.pop(k, None)
            else:
                start[k] = v
        return {"event": "start", "sequence_number": self._seq(), "stream_sid": self.stream_sid,
                "start": start}

    def frames(self, samples: list[int]) -> list[bytes]:
        """Wire payloads, one per message."""
        n = self.rate * self.frame_ms // 1000
        return [pcm16(samples[i:i + n]) for i in range(0, len(samples), n)]

    def media(self, payload: bytes):
        self.chunk += 1
        return {"event": "media", "sequence_number": self._seq(), "stream_sid": self.stream_sid,
                "media": {"chunk": str(self.chunk), "timestamp": str((self.chunk - 1) * self.frame_ms),
                          "payload": base64.b64encode(payload).decode()}}

    def dtmf(self, digit: str):
        return {"event": "dtmf", "sequence_number": self._seq(), "stream_sid": self.stream_sid,
                "dtmf": {"digit": digit, "duration": "100"}}

    def stop(self):
        return {"event": "stop", "sequence_number": self._seq(), "stream_sid": self.stream_sid,
                "stop": {"call_sid": self.call_sid, "account_sid": "exotelt", "reason": "callended"}}

    def decode(self, payload: bytes) -> list[int]:
        return unpcm16(payload)

    def seconds(self, payload: bytes) -> float:
        return len(payload) / 2 / self.rate

    def sid_of(self, msg: dict):
        return msg.get("stream_sid", msg.get("streamSid"))


class Twilio:
    name = "twilio"
    rate = 8000
    frame_ms = 20

    def __init__(self, rate: int = 8000):
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.call_sid = "CA" + uuid.uuid4().hex
        self.account_sid = "AC" + uuid.uuid4().hex
        self.seq = 0
        self.chunk = 0

    def _seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    def connected(self):
        return {"event": "connected", "protocol": "Call", "version": "1.0.0"}

    def start(self, **overrides):
        start = {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"agentId": "pipecat", "from_number": "+919876543210",
                                 "to_number": "+918047491899"},
        }
        for k, v in overrides.items():
            if v is None:
                start.pop(k, None)
            else:
                start[k] = v
        return {"event": "start", "sequenceNumber": self._seq(), "start": start,
                "streamSid": self.stream_sid}

    def frames(self, samples: list[int]) -> list[bytes]:
        n = 160
        return [bytes(ulaw_encode_sample(x) for x in samples[i:i + n])
                for i in range(0, len(samples), n)]

    def media(self, payload: bytes):
        self.chunk += 1
        return {"event": "media", "sequenceNumber": self._seq(),
                "media": {"track": "inbound", "chunk": str(self.chunk),
                          "timestamp": str((self.chunk - 1) * self.frame_ms),
                          "payload": base64.b64encode(payload).decode()},
                "streamSid": self.stream_sid}

    def dtmf(self, digit: str):
        return {"event": "dtmf", "streamSid": self.stream_sid, "sequenceNumber": self._seq(),
                "dtmf": {"track": "inbound_track", "digit": digit}}

    def stop(self):
        return {"event": "stop", "sequenceNumber": self._seq(),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid}

    def decode(self, payload: bytes) -> list[int]:
        return ulaw_decode(payload)

    def seconds(self, payload: bytes) -> float:
        return len(payload) / 8000

    def sid_of(self, msg: dict):
        return msg.get("streamSid", msg.get("stream_sid"))


# ---------------------------------------------------------------- connection


class Call:
    """One WebSocket connection; records every message the bot sends, with arrival times."""

    def __init__(self, url: str, dialect):
        self.url = url
        self.d = dialect
        self.received = []  # (t, kind, raw_len, msg or bytes)
        self.closed = asyncio.Event()
        self.close_info = None
        self.t0 = None

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url, max_size=None, ping_interval=None,
                                           open_timeout=5, close_timeout=2)
        self.t0 = time.monotonic()
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def _read(self):
        try:
            async for data in self.ws:
                t = self.now()
                if isinstance(data, bytes):
                    self.received.append((t, "binary", len(data), data))
                    continue
                try:
                    msg = json.loads(data)
                except ValueError:
                    self.received.append((t, "text", len(data), data))
                    continue
                self.received.append((t, msg.get("event", "?"), len(data), msg))
        except ConnectionClosed:
            pass
        finally:
            rcvd, sent = self.ws.protocol.close_rcvd, self.ws.protocol.close_sent
            self.close_info = {
                "t": self.now(),
                "rcvd": (rcvd.code, rcvd.reason) if rcvd else None,
                "sent": (sent.code, sent.reason) if sent else None,
                "bot_first": bool(self.ws.protocol.close_rcvd_then_sent),
            }
            self.closed.set()

    async def send(self, msg: dict):
        try:
            await self.ws.send(json.dumps(msg))
        except ConnectionClosed:
            pass

    async def handshake(self, connected=True, **start_overrides):
        if connected:
            await self.send(self.d.connected())
        await self.send(self.d.start(**start_overrides))

    async def send_audio(self, payloads: list[bytes], realtime: bool):
        step = self.d.frame_ms / 1000
        t_start = time.monotonic()
        for i, p in enumerate(payloads):
            if realtime:
                delay = t_start + i * step - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.send(self.d.media(p))

    async def wait_quiet(self, quiet: float, timeout: float):
        """Until no message for `quiet` seconds (or the socket closed, or timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed.is_set():
            last = self.received[-1][0] if self.received else 0.0
            if self.received and self.now() - last >= quiet:
                return
            await asyncio.sleep(0.05)

    async def close(self, code=1000):
        if not self.closed.is_set():
            await self.ws.close(code)
        try:
            await asyncio.wait_for(self.closed.wait(), 3)
        except asyncio.TimeoutError:
            pass
        self.reader.cancel()

    def media(self, since=0.0, until=math.inf):
        return [(t, m) for t, k, _, m in self.received if k == "media" and since <= t < until]

    def payloads(self, since=0.0, until=math.inf) -> list[bytes]:
        return [base64.b64decode(m["media"]["payload"]) for _, m in self.media(since, until)]

    def events(self) -> dict:
        out = {}
        for _, k, _, _ in self.received:
            out[k] = out.get(k, 0) + 1
        return out


def media_stats(call: Call, since=0.0, until=math.inf) -> dict:
    media = call.media(since, until)
    if not media:
        return {"messages": 0}
    payloads = [base64.b64decode(m["media"]["payload"]) for _, m in media]
    times = [t for t, _ in media]
    sizes = sorted({len(p) for p in payloads})
    gaps = [b - a for a, b in zip(times, times[1:])]
    audio = sum(call.d.seconds(p) for p in payloads)
    # Lead: how far the bot's cumulative audio ran ahead of wall time since its first media.
    lead, acc = 0.0, 0.0
    for (t, _), p in zip(media, payloads):
        lead = max(lead, acc - (t - times[0]))
        acc += call.d.seconds(p)
    span = times[-1] - times[0]
    keys = sorted({json.dumps(sorted(m.keys())) + json.dumps(sorted(m["media"].keys())) for _, m in media})
    return {
        "messages": len(media),
        "payload_sizes": sizes,
        "json_sizes": sorted({n for t, k, n, _ in call.received if k == "media" and since <= t < until}),
        "total_bytes": sum(len(p) for p in payloads),
        "audio_s": round(audio, 3),
        "first_at_s": round(times[0], 3),
        "last_at_s": round(times[-1], 3),
        "gap_ms": (round(min(gaps) * 1000, 1), round(sum(gaps) / len(gaps) * 1000, 1),
                   round(max(gaps) * 1000, 1)) if gaps else None,
        "pace_x_realtime": round((audio - call.d.seconds(payloads[-1])) / span, 3) if span > 0 else None,
        "max_lead_ms": round(lead * 1000, 1),
        "shapes": keys,
    }


# ---------------------------------------------------------------- checks


class Report:
    def __init__(self):
        self.failures = []

    def check(self, ok: bool, what: str):
        print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        if not ok:
            self.failures.append(what)

    def info(self, what: str, value=None):
        print(f"  {what}" + ("" if value is None else f": {value}"), flush=True)


class Bot:
    """The echo bot as a child process; collects its stdout lines."""

    def __init__(self, serializer: str, rate: int | None, log_level: str, stock: bool = False):
        self.serializer, self.rate, self.log_level, self.stock = serializer, rate, log_level, stock
        self.lines: list[str] = []

    async def start(self) -> int:
        cmd = [sys.executable, os.path.join(HERE, "pipecat_echo_bot.py"), "--port", "0",
               "--serializer", self.serializer, "--log-level", self.log_level]
        if self.rate:
            cmd += ["--rate", str(self.rate)]
        if self.stock:
            cmd += ["--stock"]
        t = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"bot did not start: {line!r}")
        self.startup_s = time.monotonic() - t
        self.port = int(line.split()[1])
        self.reader = asyncio.create_task(self._read())
        return self.port

    async def _read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            self.lines.append(line.decode().rstrip())

    async def wait_line(self, prefix: str, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            await asyncio.sleep(0.05)
        return None

    def conn_lines(self, n: int) -> list[str]:
        return [l for l in self.lines if len(l.split()) > 1 and l.split()[1] == str(n)]

    async def stop(self):
        self.proc.terminate()  # our own child, by pid
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ---------------------------------------------------------------- scenarios


async def scenario_echo(url, mk, rep: Report, bot: Bot | None, conn: int):
    d = mk()
    print(f"\n== {d.name}: echo (2 s of 440 Hz, real time, {d.frame_ms} ms frames)", flush=True)
    samples = tone(440, 2.0, d.rate)
    frames = d.frames(samples)
    async with Call(url, d) as call:
        await call.handshake()
        t_audio = call.now()
        await call.send_audio(frames, realtime=True)
        t_end = call.now()
        await call.wait_quiet(1.0, 6)
        st = media_stats(call)
        st["first_echo_latency_ms"] = round((st.get("first_at_s", 0) - t_audio) * 1000, 1)
        st["last_after_input_end_ms"] = round((st.get("last_at_s", 0) - t_end) * 1000, 1)
        rep.info("sent", f"{len(frames)} messages of {len(frames[0])} B, {sum(map(len, frames))} B")
        rep.info("events from bot", call.events())
        for k, v in st.items():
            rep.info(k, v)
        got = b"".join(call.payloads())
        sent = b"".join(frames)
        rep.check(st["messages"] > 0, "bot echoed audio")
        same = f"echo byte-identical to input ({len(got)} vs {len(sent)} B)"
        if RESAMPLED:
            rep.info("resampled: " + same.replace("byte-identical", "identical"), got == sent)
        else:
            rep.check(got == sent, same)
        c, lag = best_correlation(d.decode(sent), d.decode(got), 2400)
        rep.info("correlation", f"{c:.4f} at lag {lag} samples ({lag * 1000 / d.rate:.1f} ms; a 440 Hz tone "
                 f"repeats every 50 ms, so the lag is modulo 50 ms: see first_echo_latency_ms)")
        rep.check(c > 0.95, "echo correlates with input (> 0.95)")
        rep.check(all(d.sid_of(m) == d.stream_sid for _, m in call.media()), "media carry our stream sid")
        rep.check("mark" not in call.events(), "bot sends no marks")
        # stop: does Pipecat react?
        await call.send(d.stop())
        try:
            await asyncio.wait_for(call.closed.wait(), 1.5)
        except asyncio.TimeoutError:
            pass
        rep.info("after stop (1.5 s)", "bot closed the socket" if call.closed.is_set()
                 else "bot ignored stop, socket still open; closing it ourselves with 1000")
        await call.close()
        rep.info("close", call.close_info)
    if bot:
        end = await bot.wait_line(f"END {conn}")
        rep.info("bot", bot.conn_lines(conn))
        rep.check(end is not None and "disconnected" in end, f"bot logged END socket disconnected ({end})")


async def scenario_clear(url, mk, rep: Report, bot: Bot | None, conn: int):
    d = mk()
    print(f"\n== {d.name}: clear (3 s sent at once, `#` at 0.5 s)", flush=True)
    frames = d.frames(tone(440, 3.0, d.rate))
    async with Call(url, d) as call:
        await call.handshake()
        t_audio = call.now()
        await call.send_audio(frames, realtime=False)
        await asyncio.sleep(0.5)
        t_dtmf = call.now()
        await call.send(d.dtmf("#"))
        await call.wait_quiet(0.7, 5)
        clears = [(t, m, n) for t, k, n, m in call.received if k == "clear"]
        rep.check(len(clears) == 1, f"one clear ({len(clears)})")
        t_clear = clears[0][0] if clears else math.inf
        if clears:
            rep.info("clear", f"{json.dumps(clears[0][1])} ({clears[0][2]} B), "
                     f"{(t_clear - t_dtmf) * 1000:.1f} ms after the DTMF")
        before = media_stats(call, 0, t_clear)
        after = media_stats(call, t_clear)
        rep.info("burst pace before clear", {k: before.get(k) for k in
                                             ("messages", "payload_sizes", "audio_s", "gap_ms", "pace_x_realtime", "max_lead_ms")})
        rep.info("audio after clear", f"{after.get('audio_s', 0)} s in {after['messages']} messages")
        total = before.get("audio_s", 0) + after.get("audio_s", 0)
        rep.check(total < 2.0, f"queued echo dropped by the interruption ({total:.2f} of 3.0 s played)")
        order = [k for _, k, _, _ in call.received]
        rep.info("order around clear", order[max(0, order.index('clear') - 2):order.index('clear') + 3] if "clear" in order else order[-5:])
        # Echo still works after the interruption.
        n0 = len(call.media())
        more = d.frames(tone(440, 0.5, d.rate))
        await call.send_audio(more, realtime=True)
        await call.wait_quiet(0.7, 3)
        got = b"".join(p for p in call.payloads()[n0:])
        missing = d.seconds(b"x" * (sum(map(len, more)) - len(got)))
        # Pipecat holds back the last partial 40 ms output chunk until more audio (or an end) comes.
        # With resampling, the soxr stream resamplers hold back up to ~200 ms more.
        rep.check(0 <= missing < (0.3 if RESAMPLED else 0.04), f"echo resumes after clear ({len(got)} of {sum(map(len, more))} B)")
        rep.check(call.d.sid_of(clears[0][1]) == d.stream_sid if clears else False, "clear carries our stream sid")
        await call.send(d.stop())
        await call.close()
    if bot:
        await bot.wait_line(f"END {conn}")
        lines = bot.conn_lines(conn)
        rep.info("bot", lines)
        rep.check(any(l.startswith(f"CLEAR {conn}") for l in lines), "bot logged CLEAR")


async def scenario_hangup(url, mk, rep: Report, bot: Bot | None, conn: int):
    d = mk()
    print(f"\n== {d.name}: hang-up (1 s sent at once, `*` 0.3 s later)", flush=True)
    frames = d.frames(tone(440, 1.0, d.rate))
    async with Call(url, d) as call:
        await call.handshake()
        await call.send_audio(frames, realtime=False)
        # Give the bot's input side time to move the audio into its output queue: a DTMF is a system
        # frame and overtakes audio still waiting in the input transport, and the EndFrame cancels
        # that queue (see the report).
        await asyncio.sleep(0.3)
        t_dtmf = call.now()
        await call.send(d.dtmf("*"))
        try:
            await asyncio.wait_for(call.closed.wait(), 6)
        except asyncio.TimeoutError:
            pass
        rep.check(call.closed.is_set(), "bot closed the socket")
        ci = call.close_info or {}
        rep.info("close", ci)
        if call.closed.is_set():
            rep.info("closed after DTMF", f"{(ci['t'] - t_dtmf) * 1000:.0f} ms")
        payloads = call.payloads()
        audio = [x for p in payloads for x in d.decode(p)]
        silence_s = trailing_silence(audio) / d.rate
        echo_s = len(audio) / d.rate - silence_s
        rep.info("media before close", f"{len(payloads)} messages, sizes {[len(p) for p in payloads]}")
        rep.info("echo before close", f"{echo_s:.3f} s, then {silence_s:.3f} s of silence")
        if payloads:
            last_t = call.media()[-1][0]
            rep.info("final message", f"{len(payloads[-1])} B ({d.seconds(payloads[-1]):.3f} s), "
                     f"{'all silence' if not any(d.decode(payloads[-1])) else 'ends in silence'}, "
                     f"{(ci.get('t', last_t) - last_t) * 1000:.0f} ms before the close")
        rep.check(1.8 <= silence_s <= 2.05,
                  "bot sends ~2 s of end silence (audio_out_end_silence_secs) right before closing")
        rep.check(echo_s >= (0.75 if RESAMPLED else 0.95),
                  f"queued echo flushed before the close ({echo_s:.3f} of 1.0 s)")
        rep.check(ci.get("bot_first") is True and bool(ci.get("rcvd")) and ci["rcvd"][0] == 1000,
                  "bot initiated a normal close (1000)")
        rep.info("events from bot", call.events())
    if bot:
        end = await bot.wait_line(f"END {conn}")
        rep.info("bot", bot.conn_lines(conn))
        rep.check(end is not None and "end frame" in end, f"bot logged END end frame ({end})")


async def probe(url, d, rep, label, connected=True, expect=True, bot=None, conn=0, **start_overrides):
    frames = d.frames(tone(440, 0.5, d.rate))
    async with Call(url, d) as call:
        await call.handshake(connected=connected, **start_overrides)
        await call.send_audio(frames, realtime=True)
        await call.wait_quiet(0.6, 3)
        got = sum(len(p) for p in call.payloads())
        ci = call.close_info if call.closed.is_set() else None
        await call.close()
    sent = sum(map(len, frames))
    accepted = got > 0
    extra = ""
    if bot:
        await bot.wait_line(f"END {conn}", 3)
        extra = "; bot: " + " | ".join(l[:160] for l in bot.conn_lines(conn))
    rep.check(accepted == expect,
              f"{label}: {'echoed ' + str(got) + ' of ' + str(sent) + ' B' if accepted else 'no echo'}"
              + (f", closed by bot {ci['rcvd']}" if ci and ci.get("bot_first") else "") + extra)


async def scenario_handshake(url, mk, rep: Report, bot, conn: int) -> int:
    d0 = mk()
    print(f"\n== {d0.name}: handshake variants", flush=True)
    if d0.name == "exotel":
        cases = [
            ("connected + start (form A)", {}, True),
            ("no connected, start first", {"connected": False}, True),
            ("start without custom_parameters/media_format/from/to",
             {"custom_parameters": None, "media_format": None, "from": None, "to": None}, True),
            ("custom_parameters = {}", {"custom_parameters": {}}, True),
            ("start without account_sid", {"account_sid": None}, False),
            ("start without stream_sid (top-level only)", {"stream_sid": None}, False),
            ("camelCase streamSid/callSid/accountSid in start",
             {"stream_sid": None, "call_sid": None, "account_sid": None,
              "streamSid": d0.stream_sid, "callSid": d0.call_sid, "accountSid": "exotelt"}, False),
        ]
    else:
        cases = [
            ("connected + start", {}, True),
            ("no connected, start first", {"connected": False}, True),
            ("start without customParameters", {"customParameters": None}, True),
            ("start without accountSid/tracks/mediaFormat",
             {"accountSid": None, "tracks": None, "mediaFormat": None}, True),
            ("start without callSid", {"callSid": None}, False),
        ]
    for label, kw, expect in cases:
        conn += 1
        kw = dict(kw)
        connected = kw.pop("connected", True)
        await probe(url, mk(), rep, label, connected=connected, expect=expect, bot=bot, conn=conn, **kw)
    return conn


async def run_serializer(args, serializer: str, rep: Report):
    global RESAMPLED
    mk = {"exotel": lambda: Exotel(args.exotel_rate), "twilio": lambda: Twilio()}[serializer]
    wire = args.exotel_rate if serializer == "exotel" else 8000
    RESAMPLED = (bool(args.bot_rate) and args.bot_rate != wire) or args.bot_stock
    bot = None
    url = args.url
    if not url:
        bot = Bot(serializer, args.bot_rate, args.log_level, args.bot_stock)
        port = await bot.start()
        url = f"ws://127.0.0.1:{port}/ws"
        print(f"\n##### {serializer}: bot {url} (started in {bot.startup_s:.2f} s, pipeline rate "
              f"{'stock 16000/24000' if args.bot_stock else args.bot_rate or '= wire rate'})", flush=True)
    try:
        conn = 0
        for name in args.scenarios:
            conn += 1
            if name == "echo":
                await scenario_echo(url, mk, rep, bot, conn)
            elif name == "clear":
                await scenario_clear(url, mk, rep, bot, conn)
            elif name == "hangup":
                await scenario_hangup(url, mk, rep, bot, conn)
            elif name == "handshake":
                conn = await scenario_handshake(url, mk, rep, bot, conn - 1)
    finally:
        if bot:
            await bot.stop()


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serializer", choices=["exotel", "twilio", "both"], default="both")
    p.add_argument("--url", help="bot URL (default: spawn pipecat_echo_bot.py)")
    p.add_argument("--bot-rate", type=int, default=None, help="--rate for the spawned bot")
    p.add_argument("--bot-stock", action="store_true", help="--stock for the spawned bot "
                   "(Pipecat's default 16/24 kHz pipeline, so everything is resampled)")
    p.add_argument("--exotel-rate", type=int, default=8000, help="Exotel wire rate in start")
    p.add_argument("--scenarios", default="echo,clear,hangup,handshake")
    p.add_argument("--log-level", default="WARNING", help="spawned bot's Pipecat log level")
    args = p.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    rep = Report()
    for s in (["exotel", "twilio"] if args.serializer == "both" else [args.serializer]):
        await run_serializer(args, s, rep)
    print(f"\n{len(rep.failures)} failed check(s)" + "".join(f"\n  - {f}" for f in rep.failures))
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
