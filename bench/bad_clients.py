#!/usr/bin/env python3
"""Bad media clients for bench/soak.sh (standard library only). Every second, until --secs pass,
opens one of each kind against ws://HOST:PORT/ and keeps at most --max of them open:

  silent    a TCP connection that never sends a byte (header timeout)
  nostart   a WebSocket that never sends `start` (START_TIMEOUT_SECS)
  idle      a WebSocket that sends `start`, then nothing (IDLE_SECS)
  garbage   a WebSocket that sends `start`, then junk frames of every kind
  deaf      a WebSocket that sends `start` and audio, and never reads what comes back

Prints one JSON line at the end: how many of each were opened and how many the server closed.
"""
import argparse, base64, json, os, random, socket, threading, time

def handshake(host, port):
    s = socket.create_connection((host, port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
    return s

def frame(payload: bytes, opcode=1):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

def start_event(sid):
    return json.dumps({"event": "start", "sequence_number": "1", "stream_sid": sid, "start": {
        "stream_sid": sid, "call_sid": "CA" + sid, "account_sid": "soak", "from": "+919800000000",
        "to": "+918000000000", "custom_parameters": {},
        "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}}).encode()

def media_event(seq):
    payload = base64.b64encode(bytes(3200)).decode()
    return json.dumps({"event": "media", "sequence_number": str(seq), "stream_sid": "s",
                       "media": {"chunk": str(seq), "timestamp": "0", "payload": payload}}).encode()

GARBAGE = [b"not json", b"{}", b'{"event":"nope"}', b'{"event":"media","media":{"payload":"%%%"}}',
           b'{"event":"mark","mark":{"name":"never-sent"}}', b'{"event":"dtmf","dtmf":{"digit":"5"}}']

def closed_by_server(s, secs):
    """Waits up to `secs` for the server to end the connection."""
    s.settimeout(1)
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False

def run(kind, host, port, stats, lock):
    sid = f"{kind}{random.randrange(1 << 30)}"
    closed = False
    try:
        if kind == "silent":
            s = socket.create_connection((host, port), timeout=5)
            closed = closed_by_server(s, 40)
        else:
            s = handshake(host, port)
            if kind != "nostart":
                s.sendall(frame(start_event(sid)))
            if kind == "garbage":
                for i in range(200):
                    s.sendall(frame(random.choice(GARBAGE)) if i % 7 else frame(os.urandom(64), opcode=2))
                    time.sleep(0.02)
            if kind == "deaf":
                s.settimeout(2)
                try:
                    for seq in range(2, 3000):
                        s.sendall(frame(media_event(seq)))  # never reads
                except OSError:
                    closed = True
            if not closed:
                closed = closed_by_server(s, 60)
        s.close()
    except OSError:
        closed = True
    with lock:
        stats[kind]["opened"] += 1
        stats[kind]["closed_by_server"] += int(closed)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secs", type=float, required=True)
    ap.add_argument("--max", type=int, default=40)
    a = ap.parse_args()
    kinds = ["silent", "nostart", "idle", "garbage", "deaf"]
    stats = {k: {"opened": 0, "closed_by_server": 0} for k in kinds}
    lock = threading.Lock()
    threads = []
    end = time.time() + a.secs
    while time.time() < end:
        threads = [t for t in threads if t.is_alive()]
        for k in kinds:
            if len(threads) < a.max:
                t = threading.Thread(target=run, args=(k, a.host, a.port, stats, lock), daemon=True)
                t.start()
                threads.append(t)
        time.sleep(1)
    for t in threads:
        t.join(90)
    print(json.dumps(stats))

if __name__ == "__main__":
    main()
