"""A real Pipecat bot for the simulated room: Silero VAD and interruptions on, speaking when told to.

    python -m voiceterm_devkit.room_bot --port 8765 --events-file events.jsonl --record heard.raw

The pipeline is what a voice bot runs in always-on mode: transport in -> VADProcessor (Silero, the model
inside pipecat) -> UserTurnProcessor (a VAD start strategy that interrupts the bot, a speech-timeout stop)
-> `RoomBrain` -> transport out. The brain speaks a sentence (espeak-ng, voiceterm_devkit.voices) whenever a
line `say N` arrives on stdin, as TTS frames the output transport paces at real time, and writes what the
bot hears (every mic frame, as received) to `--record`. There is no STT or LLM: a user turn only
interrupts, it is not answered.

Events (JSON lines, `t` = time.monotonic(), `heard` = mic samples received so far, i.e. the position in
the recording): listening, client_connected, client_disconnected, say, reply_started, reply_ended,
reply_interrupted, vad_started, vad_stopped, user_started (the bot's UserStartedSpeakingFrame: its own turn
logic decided the user is speaking; `bot_speaking` says whether a reply was playing), user_stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from typing import IO, Any

REPLY_CHUNK_S = 0.04  # bot audio goes out in 40 ms frames, like a TTS service's
USER_SPEECH_TIMEOUT_S = 0.3
START_TIMEOUT_S = 20.0


class EventLog:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": round(time.monotonic(), 6), **fields}, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _brain_class():
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        Frame,
        InputAudioRawFrame,
        InterruptionFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

    from voiceterm_devkit import voices

    class RoomBrain(FrameProcessor):
        """Speaks on command, records what it hears, reports its turn logic's decisions."""

        def __init__(self, events: EventLog, out_rate: int, record: IO[bytes] | None) -> None:
            super().__init__()
            self._events = events
            self._out_rate = out_rate
            self._record = record
            self.heard = 0  # mic samples received
            self.in_rate = 16000
            self._replying = False
            self._reply = -1  # the sentence now queued or playing

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                self.in_rate = frame.sample_rate
                if self._record is not None:
                    self._record.write(frame.audio)
                self.heard += len(frame.audio) // 2
                return  # mic audio stops here
            here = {"heard": self.heard}
            if isinstance(frame, VADUserStartedSpeakingFrame):
                self._events.emit("vad_started", bot_speaking=self._replying, reply=self._reply, **here)
            elif isinstance(frame, VADUserStoppedSpeakingFrame):
                self._events.emit("vad_stopped", **here)
            elif isinstance(frame, UserStartedSpeakingFrame) and direction == FrameDirection.DOWNSTREAM:
                self._events.emit("user_started", bot_speaking=self._replying, reply=self._reply, **here)
            elif isinstance(frame, UserStoppedSpeakingFrame) and direction == FrameDirection.DOWNSTREAM:
                self._events.emit("user_stopped", **here)
            elif isinstance(frame, InterruptionFrame) and self._replying:
                self._replying = False
                self._events.emit("reply_interrupted", reply=self._reply, **here)
            elif isinstance(frame, BotStartedSpeakingFrame) and direction == FrameDirection.UPSTREAM:
                self._replying = True
                self._events.emit("reply_started", reply=self._reply, **here)
            elif isinstance(frame, BotStoppedSpeakingFrame) and direction == FrameDirection.UPSTREAM:
                if self._replying:
                    self._events.emit("reply_ended", reply=self._reply, **here)
                self._replying = False
            await self.push_frame(frame, direction)

        async def say(self, index: int) -> None:
            audio = voices.bot_line(index, self._out_rate).tobytes()
            self._reply = index
            self._events.emit(
                "say", reply=index, seconds=round(len(audio) / 2 / self._out_rate, 3), heard=self.heard
            )
            context = f"room-{index}"
            await self.push_frame(TTSStartedFrame(context_id=context))
            step = int(REPLY_CHUNK_S * self._out_rate) * 2
            for i in range(0, len(audio), step):
                await self.push_frame(
                    TTSAudioRawFrame(audio[i : i + step], self._out_rate, 1, context_id=context)
                )
            await self.push_frame(TTSStoppedFrame(context_id=context))

    return RoomBrain


def build_worker(args: argparse.Namespace, events: EventLog, record: IO[bytes] | None):
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.serializers.protobuf import ProtobufFrameSerializer
    from pipecat.transports.websocket.server import (
        SingleClientWebsocketServerParams,
        SingleClientWebsocketServerTransport,
    )
    from pipecat.turns.user_start import VADUserTurnStartStrategy
    from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
    from pipecat.turns.user_turn_processor import UserTurnProcessor
    from pipecat.turns.user_turn_strategies import UserTurnStrategies

    transport = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            serializer=ProtobufFrameSerializer(),
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_end_silence_secs=0,
            allowed_origins=[],
        ),
        host=args.host,
        port=args.port,
    )
    brain = _brain_class()(events, args.out_rate, record)
    turns = UserTurnProcessor(
        user_turn_strategies=UserTurnStrategies(
            start=[VADUserTurnStartStrategy()],  # interrupts the bot: enable_interruptions defaults to True
            stop=[
                SpeechTimeoutUserTurnStopStrategy(
                    user_speech_timeout=USER_SPEECH_TIMEOUT_S, wait_for_transcript=False
                )
            ],
        ),
    )
    pipeline = Pipeline(
        [transport.input(), VADProcessor(vad_analyzer=SileroVADAnalyzer()), turns, brain, transport.output()]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=args.in_rate, audio_out_sample_rate=args.out_rate),
        idle_timeout_secs=None,
        enable_turn_tracking=False,
    )

    @transport.event_handler("on_websocket_ready")
    async def _on_ready(_transport: Any) -> None:
        events.emit("listening", host=args.host, port=args.port)

    @transport.event_handler("on_client_connected")
    async def _on_connected(_transport: Any, _websocket: Any) -> None:
        events.emit("client_connected")

    @transport.event_handler("on_client_disconnected")
    async def _on_disconnected(_transport: Any, _websocket: Any) -> None:
        events.emit("client_disconnected")

    return worker, brain


async def serve(args: argparse.Namespace, events: EventLog, record: IO[bytes] | None) -> None:
    from pipecat.workers.runner import WorkerRunner

    worker, brain = build_worker(args, events, record)
    runner = WorkerRunner(handle_sigint=True, handle_sigterm=True)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue(maxsize=64)

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())

    threading.Thread(target=read_stdin, name="room-bot-stdin", daemon=True).start()

    async def obey() -> None:
        while True:
            words = (await commands.get()).split()
            if len(words) == 2 and words[0] == "say" and words[1].isdigit():
                await brain.say(int(words[1]))
            elif words:
                events.emit("bad_command", line=" ".join(words)[:80])

    task = asyncio.create_task(obey())
    await runner.add_workers(worker)
    try:
        await runner.run()
    finally:
        task.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceterm_devkit.room_bot", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--in-rate", type=int, default=16000)
    parser.add_argument("--out-rate", type=int, default=24000)
    parser.add_argument("--events-file", default="-", help="JSON-lines events; - = stdout")
    parser.add_argument("--record", default="", help="raw S16_LE file of every mic frame the bot received")
    parser.add_argument("--log-level", default="WARNING", help="pipecat's log level on stderr")
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    stream: IO[str] = (
        sys.stdout if args.events_file == "-" else open(args.events_file, "a", encoding="utf-8")  # noqa: SIM115
    )
    # Unbuffered: a reader may analyse the recording while the bot runs.
    record = open(args.record, "wb", buffering=0) if args.record else None  # noqa: SIM115
    try:
        asyncio.run(serve(args, EventLog(stream), record))
    except KeyboardInterrupt:
        pass
    finally:
        if record is not None:
            record.close()
        EventLog(stream).emit("exit")
        if stream is not sys.stdout:
            stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
