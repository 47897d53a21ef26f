"""A real Pipecat bot for tests, the demo and the benchmarks: `python -m voiceterm_devkit.echo_bot`.

It runs a pipecat pipeline behind pipecat's own single-client WebSocket server transport, with RTVI on
(the worker adds the RTVI processor and observer), and writes one JSON line per thing it saw to stdout or
`--events-file`, so a test can check what reached the bot. Sessions are served one after another by the
same pipeline; RTVI `disconnect-bot` ends the session (closes the socket with 1000) instead of the bot.

Behaviour common to every mode: the client-message ``{"t": "say", "d": {"ms": N}}`` makes the bot speak a
tone of N ms at real time (as a TTS service would, so pipecat emits bot-started/stopped-speaking; with
``"signal": "noise", "seed": S`` a deterministic noise with no zero sample, `noise_signal`), and a
``push_to_talk`` start while it speaks interrupts it (pipecat interruption: the output transport clears
its queue and sends the InterruptionFrame to the client). The client-message ``ping`` is answered with a
server-response ``{"pong": d}``, ``refuse`` with an error-response, ``ignore`` not at all; DTMF keys (RTVI
``dtmf`` or Twilio ``dtmf`` events) and RTVI ``ui-event``s are logged. Modes decide what the bot does with mic
audio; `echo` sends every input frame back at the output rate. Add a mode with a factory that takes the
`BotBrain` base class and returns a subclass overriding `on_user_audio` (see `_echo_mode`), registered
in `MODES` under its `--mode` name; a brain class may put processors ahead of itself with a
`head_processors()` classmethod (`echo_bot_modes`).

Events: listening, client_connected, client_disconnected, client_ready, message (every RTVI message, its
``data``), audio_in (aggregated every 200 ms: bytes, rate, session total), say, interrupted,
disconnect_bot, twilio_start (with the runner's ``call_data``), dtmf, ui_event, turn (`conversation` mode),
and those of `echo_bot_modes`. Every line has ``t`` (time.monotonic(), comparable across processes on
Linux) and ``event``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import IO, Any

AUDIO_IN_REPORT_SECS = 0.2
START_TIMEOUT_SECS = 15.0


class EventLog:
    """JSON lines, flushed one by one, so a reader sees each event the moment it happens."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        record = {"t": time.monotonic(), "event": event, **fields}
        self._stream.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self._stream.flush()


def _tone(ms: int, rate: int, freq: float = 440.0, amplitude: float = 0.3) -> bytes:
    import numpy as np

    n = int(rate * ms / 1000)
    t = np.arange(n, dtype=np.float64) / rate
    samples = (np.sin(2 * math.pi * freq * t) * amplitude * 32767).astype("<i2")
    return samples.tobytes()


def noise_signal(ms: int, rate: int, seed: int = 1) -> bytes:
    """Deterministic noise with no zero sample (magnitudes 1000-8000): whatever silence a player adds around
    it or inside it, the non-zero samples of its output are this signal's, in order, when nothing was lost."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(rate * ms / 1000)
    magnitude = rng.integers(1000, 8000, n)
    sign = np.where(rng.integers(0, 2, n) == 1, 1, -1)
    return (magnitude * sign).astype("<i2").tobytes()


def _build_brain_classes():
    # pipecat is imported here, not at module level, so `--help` and the launcher stay light.
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        EndWorkerFrame,
        Frame,
        InputAudioRawFrame,
        InputDTMFFrame,
        InputTransportMessageFrame,
        InterruptionFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        TTSTextFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.processors.frameworks.rtvi.frames import (
        RTVIClientMessageFrame,
        RTVIServerResponseFrame,
        RTVIUIEventFrame,
    )

    class BotBrain(FrameProcessor):
        """What every mode shares: event logging, `say`, push-to-talk barge-in, session end."""

        def __init__(self, *, log: EventLog, out_rate: int, closer) -> None:
            super().__init__()
            self.log = log
            self.out_rate = out_rate
            self._closer = closer  # async callable closing the current client's socket
            self._speaking = False
            self._audio_pending = 0
            self._audio_total = 0
            self._audio_rate = 0
            self._audio_reported_at = 0.0

        def session_started(self) -> None:
            self._flush_audio_report()
            self._audio_total = 0
            self._speaking = False

        def session_ended(self) -> None:
            self._flush_audio_report()
            self._speaking = False

        async def process_frame(self, frame: Frame, direction: FrameDirection):
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                self._count_audio(frame)
                await self.on_user_audio(frame)
                return  # mic audio is consumed here; the output transport must not see it
            if isinstance(frame, InputTransportMessageFrame):
                message = frame.message if isinstance(frame.message, dict) else {}
                self.log.emit("message", type=message.get("type"), data=message.get("data"))
            elif isinstance(frame, RTVIClientMessageFrame):
                await self._answer_request(frame)
                await self.on_client_message(frame.type, frame.data)
            elif isinstance(frame, InputDTMFFrame):
                self.log.emit("dtmf", key=str(frame.button.value))
            elif isinstance(frame, RTVIUIEventFrame):
                self.log.emit("ui_event", name=frame.event, payload=frame.payload, id=frame.msg_id)
            elif isinstance(frame, BotStartedSpeakingFrame):
                self._speaking = True
            elif isinstance(frame, (BotStoppedSpeakingFrame, InterruptionFrame)):
                self._speaking = False
            elif isinstance(frame, EndWorkerFrame):
                # disconnect-bot: end this client's session, keep the bot serving the next one.
                self.log.emit("disconnect_bot")
                await self._closer()
                return
            await self.push_frame(frame, direction)

        async def on_user_audio(self, frame: InputAudioRawFrame) -> None:
            """Mode hook: what to do with one frame of mic audio."""

        @classmethod
        def head_processors(cls) -> list:
            """Mode hook: processors between the transport's input and the brain (VAD, turn logic)."""
            return []

        async def _answer_request(self, frame: RTVIClientMessageFrame) -> None:
            # A client request (sendClientRequest): answered with the message's id, or refused, or left alone.
            if frame.type == "ping":
                self.log.emit("request", id=frame.msg_id, data=frame.data)
                await self.push_frame(RTVIServerResponseFrame(client_msg=frame, data={"pong": frame.data}))
            elif frame.type == "refuse":
                self.log.emit("request", id=frame.msg_id, data=frame.data)
                await self.push_frame(RTVIServerResponseFrame(client_msg=frame, error="refused on purpose"))

        async def on_client_message(self, kind: str, data: Any) -> None:
            if kind == "say":
                ms = data.get("ms", 1000) if isinstance(data, dict) else 1000
                if not isinstance(ms, (int, float)) or isinstance(ms, bool):
                    ms = 1000
                noise = isinstance(data, dict) and data.get("signal") == "noise"
                seed = data.get("seed", 1) if noise and isinstance(data.get("seed"), int) else 1
                await self.say(max(1, min(int(ms), 60_000)), noise_seed=seed if noise else None)
            elif kind == "push_to_talk":
                state = data.get("state") if isinstance(data, dict) else None
                if state == "start" and self._speaking:
                    self.log.emit("interrupted")
                    self._speaking = False
                    await self.broadcast_interruption()

        async def say(self, ms: int, text: str | None = None, noise_seed: int | None = None) -> None:
            """Speak a tone (or `noise_signal` of `noise_seed`) of `ms` milliseconds the way a TTS service
            delivers speech; with `text`, also the TTS text frame pipecat's RTVI observer turns into bot-output
            and bot-tts-text."""
            if noise_seed is None:
                audio = _tone(ms, self.out_rate)
            else:
                audio = noise_signal(ms, self.out_rate, noise_seed)
            self.log.emit("say", ms=ms, samples=len(audio) // 2, seed=noise_seed)
            self._speaking = True
            await self.push_frame(TTSStartedFrame())
            await self.push_frame(TTSAudioRawFrame(audio, self.out_rate, 1))
            if text:
                await self.push_frame(TTSTextFrame(text, text_type="sentence"))
            await self.push_frame(TTSStoppedFrame())

        def _count_audio(self, frame: InputAudioRawFrame) -> None:
            self._audio_pending += len(frame.audio)
            self._audio_total += len(frame.audio)
            self._audio_rate = frame.sample_rate
            now = time.monotonic()
            if now - self._audio_reported_at >= AUDIO_IN_REPORT_SECS:
                self._flush_audio_report(now)

        def flush_audio_report(self) -> None:
            if time.monotonic() - self._audio_reported_at >= AUDIO_IN_REPORT_SECS:
                self._flush_audio_report()

        def _flush_audio_report(self, now: float | None = None) -> None:
            if self._audio_pending:
                self.log.emit(
                    "audio_in", bytes=self._audio_pending, rate=self._audio_rate, total=self._audio_total
                )
                self._audio_pending = 0
            self._audio_reported_at = now if now is not None else time.monotonic()

    return BotBrain


def _echo_mode(base: type) -> type:
    from pipecat.audio.utils import create_stream_resampler
    from pipecat.frames.frames import OutputAudioRawFrame

    class EchoBrain(base):
        """Every mic frame comes back as bot audio at the output rate."""

        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self._resampler = create_stream_resampler()

        async def on_user_audio(self, frame) -> None:
            audio = frame.audio
            if frame.sample_rate != self.out_rate:
                audio = await self._resampler.resample(audio, frame.sample_rate, self.out_rate)
            if audio:
                await self.push_frame(OutputAudioRawFrame(audio, self.out_rate, 1))

    return EchoBrain


BENCH_ANSWER_MS = 3000  # `bench` mode: the answer spoken after each push-to-talk turn
BENCH_INTERRUPT_AFTER_S = 1.0  # ... and how long into it the bot interrupts itself


def _bench_mode(base: type) -> type:
    import asyncio

    echo = _echo_mode(base)

    class BenchBrain(echo):
        """Echo, plus after each push-to-talk turn a 3 s answer that the bot interrupts itself 1 s in (as
        its VAD would when the user speaks over it), so the client sees the protocol interruption frame
        without having pressed anything: the benchmark times the client's flush from that frame."""

        async def on_client_message(self, kind: str, data: Any) -> None:
            await super().on_client_message(kind, data)
            if kind == "push_to_talk" and isinstance(data, dict) and data.get("state") == "stop":
                await self.say(BENCH_ANSWER_MS)
                self.create_task(self._interrupt_later(), "bench-self-interrupt")

        async def _interrupt_later(self) -> None:
            await asyncio.sleep(BENCH_INTERRUPT_AFTER_S)
            if self._speaking:
                self.log.emit("interrupted", by="bot")
                self._speaking = False
                await self.broadcast_interruption()

    return BenchBrain


CONVERSATION_ANSWER_MS = 600  # `conversation` mode: the spoken answer after each push-to-talk turn


def _conversation_mode(base: type) -> type:
    from pipecat.frames.frames import TranscriptionFrame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame
    from pipecat.processors.frameworks.rtvi.frames import RTVIServerMessageFrame
    from pipecat.utils.time import time_now_iso8601

    class ConversationBrain(base):
        """A conversation a screen can show, without an STT or LLM service: at the end of each push-to-talk
        turn (reported as the user's speech, started and stopped, as a push-to-talk turn strategy does) the
        bot transcribes the user as "I spoke for N.N seconds" (a real TranscriptionFrame, which
        pipecat's RTVI observer sends as user-transcription), sends a server-message with the turn number,
        and answers with a 600 ms tone carrying the text "You spoke for N.N seconds." (bot-output)."""

        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self._turn_bytes = 0
            self._turn_rate = 16000
            self._turns = 0

        async def on_user_audio(self, frame) -> None:
            self._turn_bytes += len(frame.audio)
            self._turn_rate = frame.sample_rate

        async def on_client_message(self, kind: str, data: Any) -> None:
            await super().on_client_message(kind, data)
            state = data.get("state") if isinstance(data, dict) else None
            if kind != "push_to_talk":
                return
            # The user's turn as a push-to-talk turn strategy reports it (pipecat's RTVI observer sends
            # user-started/stopped-speaking for these frames).
            if state == "start":
                self._turn_bytes = 0
                await self.push_frame(UserStartedSpeakingFrame())
                return
            if state != "stop":
                return
            await self.push_frame(UserStoppedSpeakingFrame())
            self._turns += 1
            seconds = self._turn_bytes / (2 * self._turn_rate)
            self.log.emit("turn", n=self._turns, seconds=round(seconds, 2))
            await self.push_frame(
                TranscriptionFrame(f"I spoke for {seconds:.1f} seconds", "user", time_now_iso8601())
            )
            await self.push_frame(RTVIServerMessageFrame(data={"turn": self._turns}))
            await self.say(CONVERSATION_ANSWER_MS, f"You spoke for {seconds:.1f} seconds.")

    return ConversationBrain


# Mode name -> factory(BotBrain) -> brain class. Factories import pipecat lazily, like the base does.
MODES: dict[str, Callable[[type], type]] = {
    "echo": _echo_mode,
    "bench": _bench_mode,
    "conversation": _conversation_mode,
}


def _register_more_modes() -> None:
    from voiceterm_devkit.echo_bot_modes import MODES as MORE

    MODES.update(MORE)


_register_more_modes()


def _twilio_serializer(log: EventLog):
    from pipecat.serializers.twilio import TwilioFrameSerializer

    from voiceterm_devkit.echo_bot_modes import runner_call_data

    class LearningTwilioSerializer(TwilioFrameSerializer):
        """Takes the call from the client's `connected` and `start` events the way pipecat's runner does per
        call (its own parse_telephony_websocket reads them): the stream SID for what it sends, and the
        runner's `call_data` (custom parameters as `body`) logged with `twilio_start`."""

        _opening: list[str] | None = None

        async def deserialize(self, data):
            try:
                message = json.loads(data)
            except (TypeError, ValueError):
                message = None
            if isinstance(message, dict) and message.get("event") in ("connected", "start"):
                opening = self._opening = [*(self._opening or []), data]
                if message["event"] == "connected":
                    return None
                self._opening = None
                transport, call_data = await runner_call_data(opening)
                sid = call_data.get("stream_id")
                if sid:
                    self._stream_sid = sid
                log.emit("twilio_start", streamSid=sid, transport=transport, call_data=call_data)
                return None
            return await super().deserialize(data)

    return LearningTwilioSerializer(
        stream_sid="pending", params=TwilioFrameSerializer.InputParams(auto_hang_up=False)
    )


class Bot:
    """Builds and runs the pipeline; one instance per process."""

    def __init__(self, args: argparse.Namespace, log: EventLog) -> None:
        self.args = args
        self.log = log
        self._client = None
        self.failed: str | None = None

    async def _close_client(self) -> None:
        client = self._client
        if client is not None:
            await client.close(code=1000)

    async def run(self) -> None:
        from pipecat.pipeline.pipeline import Pipeline
        from pipecat.pipeline.worker import PipelineParams, PipelineWorker
        from pipecat.serializers.protobuf import ProtobufFrameSerializer
        from pipecat.transports.websocket.server import (
            SingleClientWebsocketServerParams,
            SingleClientWebsocketServerTransport,
        )
        from pipecat.workers.runner import WorkerRunner

        args = self.args
        serializer = (
            ProtobufFrameSerializer() if args.serializer == "protobuf" else _twilio_serializer(self.log)
        )
        transport = SingleClientWebsocketServerTransport(
            params=SingleClientWebsocketServerParams(
                serializer=serializer,
                audio_in_enabled=True,
                audio_out_enabled=True,
                audio_in_sample_rate=args.in_rate,
                audio_out_sample_rate=args.out_rate,
                allowed_origins=[],
            ),
            host=args.host,
            port=args.port,
        )
        brain_class = MODES[args.mode](_build_brain_classes())
        brain = brain_class(log=self.log, out_rate=args.out_rate, closer=self._close_client)
        from pipecat.processors.frameworks.rtvi import RTVIObserverParams
        from pipecat.processors.frameworks.rtvi.observer import RTVIFunctionCallReportLevel

        listening = asyncio.Event()

        @transport.event_handler("on_websocket_ready")
        async def on_ready(_transport):
            listening.set()
            self.log.emit("listening", host=args.host, port=args.port, pid=os.getpid(), mode=args.mode)

        @transport.event_handler("on_client_connected")
        async def on_connected(_transport, websocket):
            self._client = websocket
            brain.session_started()
            self.log.emit("client_connected")

        @transport.event_handler("on_client_disconnected")
        async def on_disconnected(_transport, websocket):
            if self._client is websocket:
                self._client = None
            brain.session_ended()
            self.log.emit("client_disconnected")

        worker = PipelineWorker(
            Pipeline([transport.input(), *brain_class.head_processors(), brain, transport.output()]),
            params=PipelineParams(audio_in_sample_rate=args.in_rate, audio_out_sample_rate=args.out_rate),
            idle_timeout_secs=None,
            # Function calls are reported with their names and arguments: the client answers some of them.
            rtvi_observer_params=RTVIObserverParams(
                function_call_report_level={"*": RTVIFunctionCallReportLevel.FULL}
            ),
        )

        @worker.rtvi.event_handler("on_client_ready")
        async def on_client_ready(_rtvi):
            self.log.emit("client_ready")

        async def report_audio_in():
            # Mic audio is reported every AUDIO_IN_REPORT_SECS even when it stops arriving, so a reader
            # waiting for the total of a finished burst does not wait for the session to end.
            while True:
                await asyncio.sleep(AUDIO_IN_REPORT_SECS)
                brain.flush_audio_report()

        runner = WorkerRunner(handle_sigint=True, handle_sigterm=True)

        async def watchdog():
            # pipecat logs a server that failed to start and carries on; a test bot must exit instead.
            try:
                await asyncio.wait_for(listening.wait(), START_TIMEOUT_SECS)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                self.failed = f"not listening after {START_TIMEOUT_SECS} s"
                await runner.cancel(self.failed)

        reporter = asyncio.create_task(report_audio_in())
        guard = asyncio.create_task(watchdog())
        await runner.add_workers(worker)
        try:
            await runner.run()
        finally:
            reporter.cancel()
            guard.cancel()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m voiceterm_devkit.echo_bot", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--serializer", choices=("protobuf", "twilio"), default="protobuf")
    parser.add_argument("--in-rate", type=int, default=16000, help="pipeline input rate (Hz)")
    parser.add_argument("--out-rate", type=int, default=24000, help="pipeline output rate (Hz)")
    parser.add_argument("--mode", choices=sorted(MODES), default="echo")
    parser.add_argument("--events-file", default="-", help="JSON-lines event log; - = stdout")
    parser.add_argument("--log-level", default="WARNING", help="pipecat (loguru) log level on stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    stream: IO[str] = (
        sys.stdout if args.events_file == "-" else open(args.events_file, "a", encoding="utf-8")  # noqa: SIM115
    )
    log = EventLog(stream)
    try:
        # Checked up front because pipecat only logs a failed bind and keeps running without a server.
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as e:
        print(f"echo_bot: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        log.emit("start_failed", reason=e.strerror)
        return 2
    bot = Bot(args, log)
    try:
        asyncio.run(bot.run())
    except KeyboardInterrupt:
        pass
    finally:
        log.emit("exit")
        if stream is not sys.stdout:
            stream.close()
    if bot.failed:
        print(f"echo_bot: {bot.failed}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
