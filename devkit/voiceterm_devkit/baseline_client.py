"""The benchmark's baseline: what a Python user would otherwise write, a pipecat pipeline around pipecat's own
`WebsocketClientTransport`, doing the daemon's job (mic up at 16 kHz, bot audio down to a speaker).

    python -m voiceterm_devkit.baseline_client --url ws://127.0.0.1:8765 --mic mic --speaker spk --pacing device

Pipeline: transport.input() -> BotAudioSink (bot audio to the playback thread) -> AlsaMicSource (the capture
thread's 20 ms chunks, hopped into asyncio with `call_soon_threadsafe`) -> transport.output() (protobuf frames,
`add_wav_header=False`, 20 ms chunks like the daemon's). The ALSA threads are the floor client's
(`bench_alsa`): the same devices, periods and pacing as the daemon's, so the three clients differ only in what
sits between the devices and the socket. It sends RTVI `client-ready` and a push-to-talk start first, as the
daemon does. One JSON line per milestone goes to stdout (connected, first_audio, stats on SIGUSR1, exit) with
`t` = time.monotonic(), so the benchmark can time it from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from typing import Any

from voiceterm_devkit.bench_alsa import PacedCapture, PacedPlayback

MIC_RATE = 16000
CHUNK_MS = 20
MIC_QUEUE_CHUNKS = 32  # chunks waiting for the pipeline (640 ms); more are dropped and counted


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
        """Hands every chunk of bot audio to the playback thread (the baseline's speaker)."""

        def __init__(self, playback: PacedPlayback) -> None:
            super().__init__()
            self.playback = playback
            self.received_audio_bytes = 0

        async def process_frame(self, frame: Frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                if not self.received_audio_bytes:
                    emit("first_audio", rate=frame.sample_rate)
                self.received_audio_bytes += len(frame.audio)
                self.playback.put(frame.audio)
                return
            await self.push_frame(frame, direction)

    class AlsaMicSource(FrameProcessor):
        """The capture thread's chunks into the pipeline, as they come (the baseline's mic)."""

        def __init__(self, capture: PacedCapture) -> None:
            super().__init__()
            self.capture = capture
            self.queue: asyncio.Queue[bytes] = asyncio.Queue(MIC_QUEUE_CHUNKS)
            self.dropped = 0
            self.sent = 0
            self._task: asyncio.Task | None = None

        def from_thread(self, loop: asyncio.AbstractEventLoop, data: bytes) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the client is ending
                loop.call_soon_threadsafe(self._put, data)

        def _put(self, data: bytes) -> None:
            try:
                self.queue.put_nowait(data)
            except asyncio.QueueFull:
                self.dropped += 1

        async def process_frame(self, frame: Frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, StartFrame) and self._task is None:
                self._task = self.create_task(self._stream(), "alsa-mic-source")
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
            while True:
                chunk = await self.queue.get()
                await self.push_frame(OutputAudioRawFrame(chunk, MIC_RATE, 1))
                self.sent += 1

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

    loop = asyncio.get_running_loop()
    playback = PacedPlayback(args.speaker, args.bot_rate, CHUNK_MS, args.pacing, name="baseline-playback")
    mic: AlsaMicSource | None = None

    def from_capture(data: bytes) -> None:
        if mic is not None:
            mic.from_thread(loop, data)

    capture = PacedCapture(
        args.mic, MIC_RATE, CHUNK_MS, args.pacing, on_chunk=from_capture, name="baseline-capture"
    )
    mic = AlsaMicSource(capture)
    sink = BotAudioSink(playback)
    pipeline = Pipeline([transport.input(), sink, mic, transport.output()])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=args.bot_rate, audio_out_sample_rate=MIC_RATE),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    return worker, sink, mic


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

    worker, sink, mic = build(args)

    def stats() -> dict[str, Any]:
        return {
            "sent_chunks": mic.sent,
            "mic_chunks": mic.capture.chunks,
            "mic_dropped": mic.dropped,
            "overruns": mic.capture.overruns,
            "received_audio_bytes": sink.received_audio_bytes,
            "played_audio_bytes": sink.playback.audio_bytes_played,
            "playback_dropped": sink.playback.dropped,
        }

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: emit("stats", **stats()))
    sink.playback.start()
    mic.capture.start()
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
        mic.capture.stop()
        sink.playback.stop()
        emit("exit", **stats())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m voiceterm_devkit.baseline_client", description=__doc__)
    parser.add_argument("--url", required=True, help="the bot's ws:// URL")
    parser.add_argument("--mic", required=True, help="ALSA capture device (16 kHz)")
    parser.add_argument("--speaker", required=True, help="ALSA playback device (at --bot-rate)")
    parser.add_argument("--pacing", choices=("device", "wall-clock"), default="device")
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
