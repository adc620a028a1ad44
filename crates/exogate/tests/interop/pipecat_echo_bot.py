#!/usr/bin/env python3
"""A Pipecat echo bot, the third-party server for exogate's `bridge` interop test.

    python pipecat_echo_bot.py --port PORT --serializer exotel|twilio [--host 127.0.0.1] [--rate HZ]

Serves ws://HOST:PORT/ws with FastAPI + uvicorn and Pipecat's FastAPIWebsocketTransport, the way a
Pipecat telephony bot is deployed. For each connection it reads the first two messages with Pipecat's
own runner helper (pipecat.runner.utils.parse_telephony_websocket: `connected`, then `start`), checks the
detected provider is the one asked for, builds ExotelFrameSerializer or TwilioFrameSerializer from
`start`, and runs transport.input() -> Echo -> transport.output():

  * caller audio (InputAudioRawFrame) goes back as OutputAudioRawFrame, same bytes, same rate;
  * DTMF `*`: the bot ends the call (EndWorkerFrame -> EndFrame -> transport closes the socket, 1000);
  * DTMF `#`: the bot interrupts (broadcast_interruption -> InterruptionFrame -> serializer sends `clear`).

No VAD, STT, LLM or TTS. Pipeline rate: --rate if given, else the wire rate (Exotel: start.media_format
.sample_rate, default 8000; Twilio: 8000), so by default nothing is resampled. With --rate 16000 the
serializers resample (Exotel PCM16 wire rate <-> pipeline rate; Twilio mu-law 8 kHz <-> pipeline rate).
With --stock the bot keeps Pipecat's defaults instead (pipeline 16 kHz in, 24 kHz out; Exotel serializer
without params, i.e. 8 kHz assumed whatever `start` says), like a bot made from Pipecat's examples.

Stdout (flushed, one line each; everything else, including Pipecat's logs, goes to stderr):
  READY <port>                                   listening
  START <n> <provider> stream_sid=.. call_sid=.. wire_rate=.. pipeline_rate=..
  DTMF <n> <digit>
  CLEAR <n>                                      the bot interrupted (`#`)
  ERROR <n> <text>                               bad handshake; the socket is closed with 1008
  END <n> <reason>                               reason: "end frame (dtmf *)" | "socket disconnected" | ...
"""

import argparse
import asyncio
import json
import re
import socket
import sys

from loguru import logger

ARGS = None  # set in main()


def out(line: str) -> None:
    print(line, flush=True)


def parse_rate(value, default: int) -> int:
    """Exotel's sample_rate comes as "8000", 8000 or "16kHz"."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return int(value) or default
    m = re.match(r"\s*(\d+(?:\.\d+)?)\s*(k?)", str(value), re.I)
    if not m:
        return default
    rate = float(m.group(1)) * (1000 if m.group(2) else 1)
    return int(rate) or default


def build_app():
    from fastapi import FastAPI, WebSocket
    from pipecat.audio.dtmf.types import KeypadEntry
    from pipecat.frames.frames import (
        EndWorkerFrame,
        Frame,
        InputAudioRawFrame,
        InputDTMFFrame,
        OutputAudioRawFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.runner.utils import parse_telephony_websocket
    from pipecat.serializers.exotel import ExotelFrameSerializer
    from pipecat.serializers.twilio import TwilioFrameSerializer
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketParams,
        FastAPIWebsocketTransport,
    )
    from pipecat.workers.runner import WorkerRunner

    class Echo(FrameProcessor):
        """Caller audio back to the caller; `*` ends the call, `#` interrupts."""

        def __init__(self, conn: int, state: dict):
            super().__init__()
            self._conn = conn
            self._state = state

        async def process_frame(self, frame: Frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                await self.push_frame(
                    OutputAudioRawFrame(
                        audio=frame.audio,
                        sample_rate=frame.sample_rate,
                        num_channels=frame.num_channels,
                    )
                )
            elif isinstance(frame, InputDTMFFrame):
                out(f"DTMF {self._conn} {frame.button.value}")
                if frame.button == KeypadEntry.STAR:
                    self._state.setdefault("reason", "end frame (dtmf *)")
                    # Downstream, so echo audio queued before it is flushed first; the worker
                    # then sends an EndFrame through the pipeline and the output transport
                    # closes the socket.
                    await self.push_frame(EndWorkerFrame(reason="dtmf *"))
                elif frame.button == KeypadEntry.POUND:
                    out(f"CLEAR {self._conn}")
                    await self.broadcast_interruption()
            else:
                await self.push_frame(frame, direction)

    app = FastAPI()
    counter = {"n": 0}

    @app.websocket("/ws")
    async def ws_endpoint(websocket: WebSocket):
        counter["n"] += 1
        conn = counter["n"]
        await websocket.accept()

        # Keep a copy of the raw handshake messages (the runner's parse only returns selected
        # fields; we also want start.media_format.sample_rate).
        raw: list[str] = []
        orig_iter_text = websocket.iter_text

        async def tapped_iter_text():
            async for text in orig_iter_text():
                raw.append(text)
                yield text

        websocket.iter_text = tapped_iter_text  # type: ignore[method-assign]
        try:
            provider, call_data = await parse_telephony_websocket(websocket)
        except Exception as e:  # socket closed before the handshake, etc.
            out(f"ERROR {conn} handshake: {e.__class__.__name__}: {e}")
            out(f"END {conn} handshake failed")
            return
        finally:
            websocket.iter_text = orig_iter_text  # type: ignore[method-assign]

        if provider != ARGS.serializer:
            out(f"ERROR {conn} detected provider {provider!r}, expected {ARGS.serializer!r}; "
                f"messages: {raw!r}")
            await websocket.close(code=1008)
            out(f"END {conn} wrong handshake")
            return

        start = {}
        for text in raw:
            try:
                msg = json.loads(text)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("event") == "start":
                start = msg.get("start") or {}

        if provider == "exotel" and ARGS.stock:
            # As pipecat.runner.utils._create_telephony_transport builds it: 8 kHz assumed.
            wire_rate = 8000
            serializer = ExotelFrameSerializer(
                stream_sid=call_data["stream_id"], call_sid=call_data["call_id"]
            )
        elif provider == "exotel":
            wire_rate = parse_rate((start.get("media_format") or {}).get("sample_rate"), 8000)
            pipeline_rate = ARGS.rate or wire_rate
            serializer = ExotelFrameSerializer(
                stream_sid=call_data["stream_id"],
                call_sid=call_data["call_id"],
                params=ExotelFrameSerializer.InputParams(exotel_sample_rate=wire_rate),
            )
        else:
            wire_rate = 8000
            pipeline_rate = ARGS.rate or wire_rate
            serializer = TwilioFrameSerializer(
                stream_sid=call_data["stream_id"],
                call_sid=call_data["call_id"],
                params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
            )
        if ARGS.stock:
            # Pipecat's defaults, as a bot built from the examples/runner has them.
            pipeline_params = PipelineParams()
        else:
            pipeline_params = PipelineParams(
                audio_in_sample_rate=pipeline_rate, audio_out_sample_rate=pipeline_rate
            )
        pipeline_rate = (f"{pipeline_params.audio_in_sample_rate}"
                         if pipeline_params.audio_in_sample_rate == pipeline_params.audio_out_sample_rate
                         else f"{pipeline_params.audio_in_sample_rate}/{pipeline_params.audio_out_sample_rate}")
        out(f"START {conn} {provider} stream_sid={call_data['stream_id']} "
            f"call_sid={call_data['call_id']} wire_rate={wire_rate} pipeline_rate={pipeline_rate}")

        try:
            transport = FastAPIWebsocketTransport(
                websocket=websocket,
                params=FastAPIWebsocketParams(
                    audio_in_enabled=True,
                    audio_out_enabled=True,
                    add_wav_header=False,
                    serializer=serializer,
                ),
            )
        except ValueError as e:  # Origin refused (PIPECAT_ALLOWED_ORIGINS)
            out(f"ERROR {conn} {e}")
            await websocket.close(code=1008)
            out(f"END {conn} transport refused")
            return
        state: dict = {}
        pipeline = Pipeline([transport.input(), Echo(conn, state), transport.output()])
        worker = PipelineWorker(
            pipeline,
            params=pipeline_params,
            enable_rtvi=False,
        )

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(transport, ws):
            state.setdefault("reason", "socket disconnected")
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        try:
            await runner.run()
        except Exception as e:
            state.setdefault("reason", f"error {e.__class__.__name__}: {e}")
        out(f"END {conn} {state.get('reason', 'pipeline finished')}")

    return app


async def serve(host: str, port: int) -> None:
    import uvicorn

    app = build_app()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    actual_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    async def announce():
        while not server.started:
            await asyncio.sleep(0.02)
        out(f"READY {actual_port}")

    task = asyncio.create_task(announce())
    await server.serve(sockets=[sock])
    task.cancel()


def main() -> None:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="TCP port (0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--serializer", choices=["exotel", "twilio"], required=True)
    p.add_argument("--rate", type=int, default=None,
                   help="pipeline sample rate (default: the wire rate, no resampling)")
    p.add_argument("--stock", action="store_true",
                   help="Pipecat's defaults instead: pipeline 16 kHz in / 24 kHz out, Exotel serializer "
                        "built like the runner's (8 kHz wire rate assumed whatever `start` says)")
    p.add_argument("--log-level", default="INFO", help="Pipecat (loguru) log level on stderr")
    ARGS = p.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=ARGS.log_level.upper())
    try:
        asyncio.run(serve(ARGS.host, ARGS.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
