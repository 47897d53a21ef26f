"""The benchmark's baseline: what a Python user would otherwise write, a pipecat pipeline around pipecat's own
`WebsocketClientTransport`, doing the daemon's job (mic up at 16 kHz, bot audio down, written out).

    python -m voiceterm_devkit.baseline_client --url ws://127.0.0.1:8765 --mic mic.raw --out bot.raw

Pipeline: transport.input() -> BotAudioSink (appends bot audio to --out) -> MicFileSource (reads --mic,
S16_LE mono 16 kHz, one 20 ms chunk per 20 ms of wall time) -> transport.output() (protobuf frames,
`add_wav_header=False`, 20 ms chunks like the daemon's). It sends RTVI `client-ready` and a push-to-talk
start first, as the daemon does. One JSON line per milestone goes to stdout (connected, first_audio,
exit) with `t` = time.monotonic(), so the benchmark can time it from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from typing import Any

MIC_RATE = 16000
CHUNK_MS = 20


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"t": time.monotonic(), "event": event, **fields}), flush=True)


def _rtvi(kind: str, data: Any) -> dict[str, Any]:
    return {"label": "rtvi-ai", "type": kind, "id": uuid.uuid4().hex[:8], "data": data}


def build(args: argparse.Namespace):
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        OutputAudioRawFrame,
        OutputTransportMessageUrgentFrame,
        StartFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.serializers.protobuf import ProtobufFrameSerializer
    from pipecat.transports.websocket.client import WebsocketClientParams, WebsocketClientTransport

    class BotAudioSink(FrameProcessor):
        """Appends every chunk of bot audio to a file (the baseline's speaker)."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self._file = open(path, "wb")  # noqa: SIM115 - closed at EndFrame/cancel
            self.frames = 0

        async def process_frame(self, frame: Frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                if self.frames == 0:
                    emit("first_audio", rate=frame.sample_rate)
                self.frames += len(frame.audio) // 2
                self._file.write(frame.audio)
                return
            await self.push_frame(frame, direction)

        def close(self) -> None:
            self._file.close()

    class MicFileSource(FrameProcessor):
        """Plays a raw 16 kHz file into the pipeline at real time, 20 ms per chunk (the baseline's mic)."""

        def __init__(self, path: str) -> None:
            super().__init__()
            with open(path, "rb") as f:
                self._pcm = f.read()
            self._task: asyncio.Task | None = None

        async def process_frame(self, frame: Frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, StartFrame) and self._task is None:
                self._task = self.create_task(self._stream(), "mic-file-source")
            elif isinstance(frame, (EndFrame, CancelFrame)) and self._task is not None:
                await self.cancel_task(self._task)
                self._task = None

        async def _stream(self) -> None:
            await self.push_frame(OutputTransportMessageUrgentFrame(message=_rtvi("client-ready", _about())))
            await self.push_frame(
                OutputTransportMessageUrgentFrame(
                    message=_rtvi("client-message", {"t": "push_to_talk", "d": {"state": "start"}})
                )
            )
            step = MIC_RATE * CHUNK_MS // 1000 * 2
            pos = 0
            next_at = time.monotonic()
            while True:
                chunk = self._pcm[pos : pos + step]
                if len(chunk) < step:
                    pos, chunk = 0, self._pcm[:step]
                pos += step
                await self.push_frame(OutputAudioRawFrame(chunk, MIC_RATE, 1))
                next_at += CHUNK_MS / 1000
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    transport = WebsocketClientTransport(
        uri=args.url,
        params=WebsocketClientParams(
            serializer=ProtobufFrameSerializer(),
            add_wav_header=False,
            audio_in_enabled=True,
            audio_in_sample_rate=args.bot_rate,
            audio_out_enabled=True,
            audio_out_sample_rate=MIC_RATE,
            audio_out_10ms_chunks=CHUNK_MS // 10,
        ),
    )

    @transport.event_handler("on_connected")
    async def on_connected(_transport, _ws):
        emit("connected")

    @transport.event_handler("on_disconnected")
    async def on_disconnected(_transport, _ws):
        emit("disconnected")

    sink = BotAudioSink(args.out)
    pipeline = Pipeline([transport.input(), sink, MicFileSource(args.mic), transport.output()])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=args.bot_rate, audio_out_sample_rate=MIC_RATE),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    return worker, sink


def _about() -> dict[str, Any]:
    import platform

    return {
        "version": "2.0.0",
        "about": {
            "library": "pipecat-python-baseline",
            "library_version": "0",
            "platform": platform.system(),
            "platform_version": platform.release(),
            "platform_details": {},
        },
    }


async def run(args: argparse.Namespace) -> None:
    from pipecat.workers.runner import WorkerRunner

    worker, sink = build(args)
    runner = WorkerRunner(handle_sigint=True, handle_sigterm=True)
    await runner.add_workers(worker)
    try:
        if args.seconds > 0:
            task = asyncio.create_task(runner.run())
            done, _ = await asyncio.wait({task}, timeout=args.seconds)
            if not done:
                await runner.cancel()
            await task
        else:
            await runner.run()
    finally:
        sink.close()
        emit("exit", bot_frames=sink.frames)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m voiceterm_devkit.baseline_client", description=__doc__)
    parser.add_argument("--url", required=True, help="the bot's ws:// URL")
    parser.add_argument("--mic", required=True, help="raw S16_LE mono 16 kHz input (looped)")
    parser.add_argument("--out", required=True, help="raw S16_LE file the bot's audio is appended to")
    parser.add_argument("--bot-rate", type=int, default=24000, help="the bot's output rate (Hz)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long; 0 = on SIGTERM")
    parser.add_argument("--log-level", default="WARNING", help="pipecat (loguru) log level on stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
