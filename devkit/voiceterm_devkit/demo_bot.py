"""A keyless local Pipecat bot for the demo: it answers each user turn by replaying what it heard, pitched up.

A real pipecat pipeline (single-client WebSocket server transport, protobuf frames, RTVI, Silero VAD, pipecat's
user-turn processor) whose only "service" is `ReplayProcessor`. A turn follows the push-to-talk convention
(RTVI client-message `{"t": "push_to_talk", "d": {"state": "start" | "stop"}}`) once a client sends it —
through voiceterm's helper for bot authors, `voiceterm.pipecat_ptt` — and Silero VAD otherwise. What happened is written as JSON lines (`--events-file` or stdout) so the demo, the tests
and a person can follow it:

    python -m voiceterm_devkit.demo_bot --host 127.0.0.1 --port 8765 --events-file events.jsonl

Needs the `bot` extra (pipecat-ai); nothing here needs an API key or the network beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import IO, Any

import numpy as np
import soxr
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ClientConnectedFrame,
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_processor import UserTurnProcessor
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from voiceterm.pipecat_ptt import PushToTalk

PITCH_FACTOR = 1.25  # a major third up (and 20% faster): unmistakably the bot, still intelligible
BEEP_HZ = (880.0, 1320.0)  # a two-note prefix so even a silent turn's reply is audible as "the bot"
BEEP_S = 0.08  # length of each note
REPLY_CHUNK_S = 0.04  # bot audio goes out in 40 ms frames, like a TTS service's
MIN_TURN_S = 0.1  # shorter turns (a tap of the button) get no reply
MAX_TURN_S = 60.0  # a turn's recording is capped here; audio beyond it is dropped and counted
VAD_PREROLL_S = 0.5  # VAD confirms speech after start_secs: keep that much audio from before the start
VAD_USER_SPEECH_TIMEOUT_S = 0.3  # after VAD stop, how long the user may pause before the turn ends


class EventLog:
    """Writes one JSON object per line. `t` is time.monotonic(): CLOCK_MONOTONIC is system-wide on Linux, so the
    demo lines bot events up with its own clock (and the launcher's, see voiceterm_devkit.bot)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "t": round(time.monotonic(), 6), **fields}
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def beep(rate: int) -> np.ndarray:
    """The reply's prefix: two short notes with 5 ms ramps (no clicks), as float32 in [-1, 1]."""
    n = int(rate * BEEP_S)
    t = np.arange(n) / rate
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * rate))
    notes = [0.3 * np.sin(2 * np.pi * hz * t) * ramp for hz in BEEP_HZ]
    gap = np.zeros(int(rate * 0.04))
    return np.concatenate([notes[0], notes[1], gap]).astype(np.float32)


def make_reply(pcm: bytes, in_rate: int, out_rate: int, pitch: float = PITCH_FACTOR) -> bytes:
    """What the bot says back: a beep, then the turn's audio pitched up by `pitch`, as S16_LE at `out_rate`.

    The resampling trick: convert to `out_rate / pitch` and play at `out_rate`, which raises every frequency by
    `pitch` and shortens the audio by the same factor.
    """
    heard = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    shifted = soxr.resample(heard, in_rate, out_rate / pitch) if heard.size else heard
    audio = np.concatenate([beep(out_rate), shifted.astype(np.float32)])
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class ReplayProcessor(FrameProcessor):
    """Records each user turn and answers it with `make_reply`, as TTS frames the output transport paces.

    Turn boundaries come from pipecat's UserStarted/StoppedSpeakingFrame (the turn processor upstream decides
    them); BotStarted/StoppedSpeakingFrame coming back from the output transport mark when the reply really
    started and finished going out.
    """

    def __init__(
        self,
        ptt: PushToTalk,
        events: EventLog,
        out_rate: int,
        close_client: Callable[[], Awaitable[None]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._ptt = ptt  # `active`: the session's turns come from the button
        self._close_client = close_client
        self._events = events
        self._out_rate = out_rate
        self._in_rate = 16000
        self._recording = False
        self._turn = bytearray()
        self._turn_dropped = 0  # bytes beyond MAX_TURN_S in the current turn
        self._preroll: deque[bytes] = deque()
        self._preroll_bytes = 0
        self._turns = 0
        self._replying = False
        self._reply_turn = 0  # the turn the reply now queued or playing answers

    def _keep_preroll(self, audio: bytes) -> None:
        self._preroll.append(audio)
        self._preroll_bytes += len(audio)
        limit = int(VAD_PREROLL_S * self._in_rate) * 2
        while self._preroll and self._preroll_bytes - len(self._preroll[0]) >= limit:
            self._preroll_bytes -= len(self._preroll.popleft())

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            # Mic audio stops here: the output transport has no use for it.
            self._in_rate = frame.sample_rate
            if not self._recording:
                self._keep_preroll(frame.audio)
            elif len(self._turn) < int(MAX_TURN_S * self._in_rate) * 2:
                self._turn.extend(frame.audio)
            else:
                self._turn_dropped += len(frame.audio)
            return
        if isinstance(frame, UserStartedSpeakingFrame) and direction == FrameDirection.DOWNSTREAM:
            self._start_turn()
        elif isinstance(frame, UserStoppedSpeakingFrame) and direction == FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
            await self._end_turn()
            return
        elif isinstance(frame, InterruptionFrame) and self._replying:
            self._replying = False
            self._events.emit("reply_interrupted", turn=self._reply_turn)
        elif isinstance(frame, BotStartedSpeakingFrame) and direction == FrameDirection.UPSTREAM:
            self._replying = True
            self._events.emit("reply_started", turn=self._reply_turn)
        elif isinstance(frame, BotStoppedSpeakingFrame) and direction == FrameDirection.UPSTREAM:
            if self._replying:
                self._events.emit("reply_ended", turn=self._reply_turn)
            self._replying = False
        elif isinstance(frame, ClientConnectedFrame):
            self._recording = False
            self._turn.clear()
        elif isinstance(frame, EndWorkerFrame):
            # RTVI disconnect-bot: end this client's session (close 1000) but keep serving, as a bot that runs
            # one pipeline per connection would; letting the frame through would end the whole process.
            self._events.emit("disconnect_bot")
            # In a task of its own: the close handshake (up to the server's 10 s close timeout when a client
            # is slow to drop its TCP end) must not hold up this processor's frames.
            self.create_task(self._close_client(), "close-client")
            return
        await self.push_frame(frame, direction)

    def _start_turn(self) -> None:
        self._turns += 1
        self._recording = True
        self._turn_dropped = 0
        # VAD confirms speech start_secs after it began; push-to-talk starts exactly at the press.
        self._turn = bytearray(b"".join(self._preroll)) if not self._ptt.active else bytearray()
        self._preroll.clear()
        self._preroll_bytes = 0
        how = "push-to-talk" if self._ptt.active else "vad"
        self._events.emit("turn_started", turn=self._turns, by=how)

    async def _end_turn(self) -> None:
        if not self._recording:
            return
        self._recording = False
        pcm = bytes(self._turn)
        self._turn.clear()
        seconds = len(pcm) / 2 / self._in_rate
        self._events.emit(
            "turn_ended",
            turn=self._turns,
            by="push-to-talk" if self._ptt.active else "vad",
            bytes=len(pcm),
            seconds=round(seconds, 3),
            sample_rate=self._in_rate,
            dropped_bytes=self._turn_dropped,
        )
        if seconds < MIN_TURN_S:
            self._events.emit("reply_skipped", turn=self._turns, reason="turn too short")
            return
        reply = make_reply(pcm, self._in_rate, self._out_rate)
        self._reply_turn = self._turns
        self._events.emit(
            "reply_queued",
            turn=self._turns,
            seconds=round(len(reply) / 2 / self._out_rate, 3),
            sample_rate=self._out_rate,
        )
        context_id = f"replay-{self._turns}"
        await self.push_frame(TTSStartedFrame(context_id=context_id))
        step = int(REPLY_CHUNK_S * self._out_rate) * 2
        for i in range(0, len(reply), step):
            chunk = reply[i : i + step]
            await self.push_frame(TTSAudioRawFrame(chunk, self._out_rate, 1, context_id=context_id))
        await self.push_frame(TTSStoppedFrame(context_id=context_id))


def build_worker(
    host: str, port: int, events: EventLog, in_rate: int = 16000, out_rate: int = 24000
) -> PipelineWorker:
    """The bot's pipeline: transport in → push-to-talk → VAD → turn processor → replayer → transport out."""
    # The button's turns (voiceterm's helper), and Silero VAD with a short speech timeout for a session that
    # sends no push_to_talk message (no STT here: nothing to wait for).
    ptt = PushToTalk(
        fallback=UserTurnStrategies(
            start=[VADUserTurnStartStrategy()],
            stop=[
                SpeechTimeoutUserTurnStopStrategy(
                    user_speech_timeout=VAD_USER_SPEECH_TIMEOUT_S, wait_for_transcript=False
                )
            ],
        )
    )
    client: dict[str, Any] = {}  # the connected WebSocket, for closing a session on disconnect-bot

    async def close_client() -> None:
        websocket = client.get("ws")
        if websocket is not None:
            await websocket.close(code=1000)

    transport = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            serializer=ProtobufFrameSerializer(),
            audio_in_enabled=True,
            audio_out_enabled=True,
            # No goodbye silence at the end: the demo reads the speaker's output for replies only.
            audio_out_end_silence_secs=0,
            allowed_origins=[],
        ),
        host=host,
        port=port,
    )
    turns = UserTurnProcessor(
        user_turn_strategies=ptt.strategies(wait_for_transcript=False),
        # The watchdog would end a push-to-talk turn held in silence; the daemon has its own stuck-button guard.
        user_turn_stop_timeout=MAX_TURN_S,
    )
    pipeline = Pipeline(
        [
            transport.input(),
            ptt.processor(),
            VADProcessor(vad_analyzer=SileroVADAnalyzer()),
            turns,
            ReplayProcessor(ptt, events, out_rate, close_client),
            transport.output(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=in_rate, audio_out_sample_rate=out_rate),
        # The bot lives until it is stopped: the tests and the demo decide its lifetime, not an idle timer.
        idle_timeout_secs=None,
        enable_turn_tracking=False,
    )

    @transport.event_handler("on_websocket_ready")
    async def _on_ready(_transport: Any) -> None:
        events.emit("listening", host=host, port=port, in_rate=in_rate, out_rate=out_rate)

    @transport.event_handler("on_client_connected")
    async def _on_connected(_transport: Any, websocket: Any) -> None:
        client["ws"] = websocket
        events.emit("client_connected", peer=_peer(websocket))

    @transport.event_handler("on_client_disconnected")
    async def _on_disconnected(_transport: Any, websocket: Any) -> None:
        if client.get("ws") is websocket:
            client.pop("ws")
        events.emit("client_disconnected", peer=_peer(websocket))

    return worker


def _peer(websocket: Any) -> str:
    address = getattr(websocket, "remote_address", None)
    return f"{address[0]}:{address[1]}" if address else "?"


async def serve(host: str, port: int, events: EventLog, in_rate: int, out_rate: int) -> None:
    """Run the bot until SIGINT or SIGTERM."""
    worker = build_worker(host, port, events, in_rate, out_rate)
    runner = WorkerRunner(handle_sigint=True, handle_sigterm=True)
    await runner.add_workers(worker)
    await runner.run()
    events.emit("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voiceterm_devkit.demo_bot",
        description="Keyless Pipecat bot that replies with what it heard, pitched up.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--events-file", metavar="PATH", default="-", help="JSON-lines events; - = stdout")
    parser.add_argument("--in-rate", type=int, default=16000, help="sample rate the client sends")
    parser.add_argument("--out-rate", type=int, default=24000, help="sample rate of the bot's voice")
    parser.add_argument("--log-level", default="WARNING", help="pipecat's log level on stderr")
    args = parser.parse_args(argv)

    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    stream: IO[str] = (
        sys.stdout if args.events_file == "-" else open(args.events_file, "a", encoding="utf-8")  # noqa: SIM115
    )
    try:
        asyncio.run(serve(args.host, args.port, EventLog(stream), args.in_rate, args.out_rate))
    except KeyboardInterrupt:
        pass
    finally:
        if stream is not sys.stdout:
            stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
