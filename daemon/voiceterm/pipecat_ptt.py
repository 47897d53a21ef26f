"""Push-to-talk for Pipecat bots that voiceterm devices talk to: the button, not a voice detector or a turn
model, says when the user's turn starts and ends. For bot authors; needs ``pip install 'voiceterm[pipecat]'``
(pipecat-ai 1.14 or later). The voiceterm daemon itself never imports this module.

In hold and toggle modes voiceterm sends the RTVI client-message ``{"t": "push_to_talk", "d": {"state":
"start"}}`` on the press and ``"stop"`` on the release. A stock bot ignores them and waits for its VAD and turn
analyzer, which may judge a sentence "incomplete" and hold the turn for seconds after the release. With this
module the press starts the user's turn (interrupting the bot) and the release ends it, at once:

    from voiceterm.pipecat_ptt import PushToTalk

    ptt = PushToTalk()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(),
            user_turn_strategies=ptt.strategies(),
            user_turn_stop_timeout=120,  # a held button may be silent for a while
        ),
    )
    pipeline = Pipeline([transport.input(), ptt.processor(), stt, user_aggregator, llm, tts,
                         transport.output(), assistant_aggregator])

How: `processor()` turns the messages into the frames pipecat's turn machinery understands — on the press an
interruption and a ``UserStartedSpeakingFrame``, on the release a ``UserStoppedSpeakingFrame`` — and
`strategies()` makes the aggregator adopt them (pipecat's ``ExternalUserTurnStartStrategy`` and
``ExternalUserTurnStopStrategy``, its strategies for turns decided elsewhere). The release ends the turn the
client sees at once; with ``wait_for_transcript`` (the default, right for a bot with an STT) the aggregator
still waits for the transcript of the last words before it asks the LLM, as pipecat's external stop strategy
does. A bot without an STT (speech to speech, or a replay bot) passes ``wait_for_transcript=False``.

A session that sends no push_to_talk message (an always-on voiceterm, a browser) uses `fallback` — for
example ``UserTurnStrategies()``, pipecat's VAD and smart-turn defaults — until its first push_to_talk message;
from then on the fallback sees no frames and its decisions are dropped, so a voice detector that still hears
the user cannot hold a released turn open. Without a fallback, only the button makes turns.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import (
    ClientConnectedFrame,
    Frame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup
from pipecat.processors.frameworks.rtvi.frames import RTVIClientMessageFrame
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_start import BaseUserTurnStartStrategy, ExternalUserTurnStartStrategy
from pipecat.turns.user_stop import BaseUserTurnStopStrategy, ExternalUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

PUSH_TO_TALK = "push_to_talk"  # the client-message type voiceterm (and pipecat's push-to-talk example) sends


def push_to_talk_state(frame: Frame) -> str | None:
    """ "start" or "stop" for a push_to_talk client-message, None for any other frame."""
    if not isinstance(frame, RTVIClientMessageFrame) or frame.type != PUSH_TO_TALK:
        return None
    state = frame.data.get("state") if isinstance(frame.data, dict) else None
    return state if state in ("start", "stop") else None


@dataclass(slots=True)
class _Session:
    """What the processor and the strategies of one pipeline share about the current client."""

    push_to_talk: bool = False  # it sent a push_to_talk message: the button delimits its turns
    held: bool = False  # between a start and its stop
    turn_open: bool = False  # a user turn is open, whoever opened it (the turn frames seen pass by)


class PushToTalkProcessor(FrameProcessor):
    """Turns push_to_talk client-messages into turn frames. Put it right after ``transport.input()``."""

    def __init__(self, session: _Session, *, interrupt: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session = session
        self._interrupt = interrupt

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        session = self._session
        if isinstance(frame, ClientConnectedFrame):
            # A new connection is a new session: VAD (the fallback) until it says otherwise.
            session.push_to_talk = session.held = session.turn_open = False
        elif isinstance(frame, UserStartedSpeakingFrame):
            session.turn_open = True  # the turn processor's own announcement, on its way upstream
        elif isinstance(frame, UserStoppedSpeakingFrame):
            session.turn_open = False
        await self.push_frame(frame, direction)
        state = push_to_talk_state(frame)
        if state is None:
            return
        session.push_to_talk = True
        if state == "start" and not session.held:
            session.held = True
            if session.turn_open:
                return  # the voice detector opened this turn a moment ago: the press joins it
            session.turn_open = True
            if self._interrupt:
                await self.broadcast_interruption()  # the press cuts the bot off, as a barge-in does
            await self.broadcast_frame(UserStartedSpeakingFrame)
        elif state == "stop" and session.held:
            session.held = False
            if session.turn_open:
                session.turn_open = False
                await self.broadcast_frame(UserStoppedSpeakingFrame)


class _GateMixin:
    """Wraps a turn strategy so that it sees frames, and its decisions count, only while `_open()` says so:
    the button's strategies while the session uses push-to-talk, the fallback's while it does not. Event
    subscriptions go to the wrapped strategy through the gate; turn starts and stops always reach it (they
    reset its per-turn state)."""

    _inner: Any
    _open: Callable[[], bool]
    _gated: dict[tuple[str, Callable[..., Any]], Callable[..., Any]]

    def _wrap(self, inner: Any, is_open: Callable[[], bool]) -> None:
        self._inner, self._open, self._gated = inner, is_open, {}

    def add_event_handler(self, event_name: str, handler: Callable[..., Any]) -> None:
        is_open = self._open

        async def gated(emitter: Any, *args: Any, **kwargs: Any) -> None:
            if not is_open():
                return
            result = handler(emitter, *args, **kwargs)
            if inspect.isawaitable(result):
                await result

        self._gated[(event_name, handler)] = gated
        self._inner.add_event_handler(event_name, gated)

    def remove_event_handler(self, event_name: str, handler: Callable[..., Any]) -> None:
        gated = self._gated.pop((event_name, handler), None)
        if gated is not None:
            self._inner.remove_event_handler(event_name, gated)

    @property
    def resolves_proposed_turn_start_frames(self) -> bool:
        return bool(getattr(self._inner, "resolves_proposed_turn_start_frames", False))

    @property
    def resolves_proposed_turn_stop_frames(self) -> bool:
        return bool(getattr(self._inner, "resolves_proposed_turn_stop_frames", False))

    @property
    def wait_for_transcript(self) -> bool:
        return bool(getattr(self._inner, "wait_for_transcript", False))

    @wait_for_transcript.setter
    def wait_for_transcript(self, value: bool) -> None:
        # LLMContextAggregatorPair turns it off for speech-to-speech services: pass it on.
        if hasattr(self._inner, "wait_for_transcript"):
            self._inner.wait_for_transcript = value

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await super().setup(setup)  # type: ignore[misc]
        await self._inner.setup(setup)

    async def cleanup(self) -> None:
        await super().cleanup()  # type: ignore[misc]
        await self._inner.cleanup()

    async def handle_user_turn_started(self) -> None:
        await self._inner.handle_user_turn_started()

    async def handle_user_turn_stopped(self) -> None:
        await self._inner.handle_user_turn_stopped()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult | None:
        if not self._open():
            return ProcessFrameResult.CONTINUE
        return await self._inner.process_frame(frame)


class _GatedStart(_GateMixin, BaseUserTurnStartStrategy):
    def __init__(self, inner: BaseUserTurnStartStrategy, is_open: Callable[[], bool]) -> None:
        super().__init__()
        self._wrap(inner, is_open)


class _GatedStop(_GateMixin, BaseUserTurnStopStrategy):
    def __init__(self, inner: BaseUserTurnStopStrategy, is_open: Callable[[], bool]) -> None:
        super().__init__()
        self._wrap(inner, is_open)


class PushToTalk:
    """One pipeline's push-to-talk: its `processor()` and its user-turn `strategies()`, which share the state
    of the current session."""

    def __init__(self, *, fallback: UserTurnStrategies | None = None, interrupt: bool = True) -> None:
        """`fallback`: the turn strategies of a session that never sends push_to_talk (None: no turns then).
        `interrupt`: whether a press interrupts the bot."""
        self._session = _Session()
        self._fallback = fallback
        self._processor = PushToTalkProcessor(self._session, interrupt=interrupt)

    @property
    def active(self) -> bool:
        """Whether the current session uses push-to-talk."""
        return self._session.push_to_talk

    def processor(self) -> PushToTalkProcessor:
        """The processor to put right after ``transport.input()`` (the same one each call)."""
        return self._processor

    def strategies(self, *, wait_for_transcript: bool = True) -> UserTurnStrategies:
        """User-turn strategies for the user aggregator (or a UserTurnProcessor): the button's turns, then the
        fallback's while the session has not used push-to-talk. `wait_for_transcript`: after the release, the
        aggregator waits for the transcript before it asks the LLM (False for a bot without an STT)."""

        def button() -> bool:
            return self._session.push_to_talk

        def voice() -> bool:
            return not self._session.push_to_talk

        start: list[BaseUserTurnStartStrategy] = [_GatedStart(ExternalUserTurnStartStrategy(), button)]
        stop: list[BaseUserTurnStopStrategy] = [
            _GatedStop(ExternalUserTurnStopStrategy(wait_for_transcript=wait_for_transcript), button)
        ]
        if self._fallback is not None:
            start += [_GatedStart(s, voice) for s in self._fallback.start or []]
            stop += [_GatedStop(s, voice) for s in self._fallback.stop or []]
        return UserTurnStrategies(start=start, stop=stop)


__all__ = ["PUSH_TO_TALK", "PushToTalk", "PushToTalkProcessor", "push_to_talk_state"]
