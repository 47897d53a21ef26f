"""A stock Pipecat bot's turn stack, with or without voiceterm's push-to-talk helper, for the turn-end
measurement (`voiceterm_devkit.ptt_turns`): `python -m voiceterm_devkit.turn_bot --port 8765 [--helper]`.

The pipeline is what a pipecat 1.14 bot is built of, minus the paid services: pipecat's single-client
WebSocket transport (protobuf, RTVI), an STT stand-in, the LLM user aggregator with Silero VAD and the default
user-turn strategies (VAD start; smart-turn v3 stop, which waits for the transcript), and a sink where the LLM
would be. The STT stand-in is the fastest an STT can be: a finalized transcript the moment VAD reports the
end of speech. With ``--helper``, `voiceterm.pipecat_ptt.PushToTalk` goes in, its processor right after the
transport's input and its strategies (with the stock ones as the fallback) in the aggregator.

Events (JSON lines, ``t`` = time.monotonic()): listening, push_to_talk (state), user_started, user_stopped (the
first push of each UserStarted/StoppedSpeakingFrame), vad (started/stopped), transcript, context (the
aggregator asked the LLM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from voiceterm_devkit.echo_bot import EventLog


def build_worker(args: argparse.Namespace, log: EventLog) -> Any:
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import (
        EndWorkerFrame,
        LLMContextFrame,
        TranscriptionFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.observers.base_observer import BaseObserver
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMUserAggregator,
        LLMUserAggregatorParams,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.serializers.protobuf import ProtobufFrameSerializer
    from pipecat.transports.websocket.server import (
        SingleClientWebsocketServerParams,
        SingleClientWebsocketServerTransport,
    )
    from pipecat.turns.user_turn_strategies import UserTurnStrategies
    from pipecat.utils.time import time_now_iso8601

    from voiceterm.pipecat_ptt import PushToTalk, push_to_talk_state

    class InstantSTT(FrameProcessor):
        """A finalized transcript the moment VAD says the user stopped (the upstream copy passes here)."""

        async def process_frame(self, frame, direction) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, VADUserStoppedSpeakingFrame):
                log.emit("transcript")
                await self.push_frame(TranscriptionFrame("words", "user", time_now_iso8601(), finalized=True))

    client: dict[str, Any] = {}  # the connected WebSocket

    class Sink(FrameProcessor):
        """Where the LLM would be: notes that the aggregator asked it, passes nothing of it on. RTVI
        disconnect-bot ends the client's session, not the bot (the next measurement connects again)."""

        async def process_frame(self, frame, direction) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, LLMContextFrame):
                log.emit("context")
                return
            if isinstance(frame, EndWorkerFrame):
                websocket = client.get("ws")
                if websocket is not None:
                    self.create_task(websocket.close(code=1000), "close-client")
                return
            await self.push_frame(frame, direction)

    class TurnLog(BaseObserver):
        async def on_push_frame(self, data) -> None:
            frame = data.frame
            if not data.first_push or data.direction != FrameDirection.DOWNSTREAM:
                return  # a broadcast frame is logged once, by its downstream copy
            if isinstance(frame, UserStartedSpeakingFrame):
                log.emit("user_started")
            elif isinstance(frame, UserStoppedSpeakingFrame):
                log.emit("user_stopped")
            elif isinstance(frame, (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)):
                log.emit(
                    "vad", state="started" if isinstance(frame, VADUserStartedSpeakingFrame) else "stopped"
                )
            elif (state := push_to_talk_state(frame)) is not None:
                log.emit("push_to_talk", state=state)

    transport = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            serializer=ProtobufFrameSerializer(),
            audio_in_enabled=True,
            audio_out_enabled=True,
            allowed_origins=[],
        ),
        host=args.host,
        port=args.port,
    )
    head: list[Any] = []
    if args.helper:
        ptt = PushToTalk(fallback=UserTurnStrategies())
        head = [ptt.processor()]
        strategies = ptt.strategies()
    else:
        strategies = UserTurnStrategies()  # pipecat's defaults: VAD start, smart-turn v3 stop
    aggregator = LLMUserAggregator(
        LLMContext(),
        params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer(), user_turn_strategies=strategies),
    )
    pipeline = Pipeline([transport.input(), *head, InstantSTT(), aggregator, Sink(), transport.output()])

    @transport.event_handler("on_client_connected")
    async def on_connected(_transport, websocket) -> None:
        client["ws"] = websocket

    @transport.event_handler("on_websocket_ready")
    async def on_ready(_transport) -> None:
        log.emit("listening", host=args.host, port=args.port, helper=args.helper)

    return PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=24000),
        idle_timeout_secs=None,
        observers=[TurnLog()],
    )


async def serve(args: argparse.Namespace, log: EventLog) -> None:
    from pipecat.workers.runner import WorkerRunner

    runner = WorkerRunner(handle_sigint=True, handle_sigterm=True)
    await runner.add_workers(build_worker(args, log))
    await runner.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceterm_devkit.turn_bot", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--helper", action="store_true", help="with voiceterm.pipecat_ptt.PushToTalk")
    parser.add_argument("--log-level", default="WARNING", help="pipecat (loguru) log level on stderr")
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args, EventLog(sys.stdout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
