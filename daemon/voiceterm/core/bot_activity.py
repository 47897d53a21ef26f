"""What the bot is doing, as the terminal's brain knows it: speaking (RTVI says so), audible (its audio plays
on the local speaker), the user's speech as the bot's turn logic hears it, "thinking" (a turn ended and no
answer has started), whether the server is one whose only interruption is user-started-speaking, and the
hold on stale bot audio right after a barge-in.

Pure, part of `core/terminal.py`'s `Terminal`: every method takes the time it happened at and returns the
commands to carry out. The bot's events are handled through one table (`BotActivity.event`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from voiceterm.core.dispatch import Dispatch
from voiceterm.core.terminal_commands import Command, FlushPlayback
from voiceterm.protocol.events import Interruption
from voiceterm.protocol.rtvi import interrupts_on_user_speech

if TYPE_CHECKING:
    from voiceterm.protocol.rtvi_events import BotReady

__all__ = ["BARGE_IN_HOLD_S", "THINKING_TIMEOUT_S", "BotActivity"]

# "thinking" (turn over, no answer yet) gives up after this long: a bot that never answers must not leave the
# LED claiming it is about to.
THINKING_TIMEOUT_S = 10.0
# After a barge-in, bot audio already in flight (sent before the server acted on the press) is dropped until
# the server confirms the interruption, or for at most this long when it never does.
BARGE_IN_HOLD_S = 1.0


class BotActivity:
    """The bot's side of the conversation, from its RTVI events, protocol interruptions and local playback."""

    def __init__(self) -> None:
        self.speaking = False  # from RTVI bot-started/stopped-speaking
        self.playing = False  # local playback audible (the fallback when the server sends no RTVI)
        self.user_speaking = False  # from RTVI user-started/stopped-speaking (always-on mode shows it)
        # A pre-1.3 server's only interruption signal is user-started-speaking; bot-ready tells (False before
        # it: an unknown server must not have its words thrown away).
        self.legacy_interruptions = False
        self.thinking_since: float | None = None
        self.barge_hold_until: float | None = None  # bot audio is stale until then (or a confirmation)
        self.stale_dropped_total = 0  # chunks of bot audio dropped by the barge-in hold

    @property
    def audible(self) -> bool:
        """The bot speaks (RTVI) or its audio plays: a press now is a barge-in."""
        return self.speaking or self.playing

    @property
    def thinking(self) -> bool:
        return self.thinking_since is not None

    # --- the bot's events -------------------------------------------------------------------------------

    def event(self, event: object, now: float, *, always_on: bool, link_up: bool) -> list[Command]:
        """One event decoded from the bot; those without a handler change nothing here."""
        handler = _HANDLERS.get(event)
        if handler is None:
            return []
        return handler(self, event, now, always_on, link_up)

    def _bot_started_speaking(
        self, event: object, now: float, always_on: bool, link_up: bool
    ) -> list[Command]:
        self.speaking = True
        self.thinking_since = None
        return []

    def _bot_stopped_speaking(
        self, event: object, now: float, always_on: bool, link_up: bool
    ) -> list[Command]:
        self.speaking = False
        self.barge_hold_until = None
        return []

    def _interrupted(self, reason: str) -> list[Command]:
        self.speaking = False
        self.barge_hold_until = None
        self.legacy_interruptions = False  # it has real interruptions after all
        return [FlushPlayback(reason)]

    def _bot_interrupted(self, event: object, now: float, always_on: bool, link_up: bool) -> list[Command]:
        return self._interrupted("bot-interrupted")

    def _interruption(self, event: object, now: float, always_on: bool, link_up: bool) -> list[Command]:
        return self._interrupted("interruption")

    def _bot_ready(self, event: BotReady, now: float, always_on: bool, link_up: bool) -> list[Command]:
        self.legacy_interruptions = interrupts_on_user_speech(event.version, event.about)
        return []

    def _user_started_speaking(
        self, event: object, now: float, always_on: bool, link_up: bool
    ) -> list[Command]:
        # Not an interruption by itself: with interruptions off the bot talks on, and flushing here would
        # throw its words away. Only a server too old to send anything else interrupts with it.
        self.user_speaking = True
        self.barge_hold_until = None
        if always_on:
            self.thinking_since = None
        return [FlushPlayback("user-started-speaking")] if self.legacy_interruptions else []

    def _user_stopped_speaking(
        self, event: object, now: float, always_on: bool, link_up: bool
    ) -> list[Command]:
        self.user_speaking = False
        # In hold/toggle modes the release marks the end of the turn; with an open mic only the bot's turn
        # detection knows, so "thinking" starts here.
        if always_on and link_up:
            self.thinking_since = now
        return []

    # --- the session, the speaker and the user's turns -------------------------------------------------

    def session_started(self) -> list[Command]:
        """A new bot session: nothing of the old one may play or show; bot-ready will say what it is."""
        self.speaking = False
        self.user_speaking = False
        self.legacy_interruptions = False
        self.thinking_since = None
        self.barge_hold_until = None
        return [FlushPlayback("new session")]

    def link_lost(self) -> None:
        """The session is gone: whatever the bot was doing is over."""
        self.speaking = False
        self.user_speaking = False
        self.thinking_since = None

    def playback(self, playing: bool) -> None:
        """Bot audio is (not) audible on the local speaker."""
        self.playing = playing
        if playing:
            self.thinking_since = None  # the answer has started, with or without RTVI telling us

    def barge_in(self, now: float) -> list[Command]:
        """The user cut the bot off: silence it locally at once and hold back audio already in flight."""
        self.speaking = False
        self.playing = False
        self.barge_hold_until = now + BARGE_IN_HOLD_S
        return [FlushPlayback("barge-in")]

    def turn_started(self) -> None:
        self.thinking_since = None

    def turn_ended(self, now: float) -> None:
        # "thinking" waits for the answer; a bot already audible at the release is answering (or echoing).
        self.thinking_since = None if self.audible else now

    def accept_audio(self, now: float) -> bool:
        """Whether a chunk of bot audio arriving now should be played: not while the barge-in hold lasts."""
        if self.barge_hold_until is None:
            return True
        if now >= self.barge_hold_until:
            self.barge_hold_until = None
            return True
        self.stale_dropped_total += 1
        return False

    # --- timers ------------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self.thinking_since + THINKING_TIMEOUT_S if self.thinking_since is not None else None

    def expire(self, now: float) -> None:
        if self.thinking_since is not None and now >= self.thinking_since + THINKING_TIMEOUT_S:
            self.thinking_since = None


_Handler = Callable[[BotActivity, object, float, bool, bool], list[Command]]


def _handlers() -> dict[type, _Handler]:
    """The bot events that change what the terminal knows of the bot; every other event passes by."""
    from voiceterm.protocol import rtvi_events as rtvi  # by the first bot event (core/dispatch.py)

    return {
        rtvi.BotStartedSpeaking: BotActivity._bot_started_speaking,
        rtvi.BotStoppedSpeaking: BotActivity._bot_stopped_speaking,
        rtvi.BotInterrupted: BotActivity._bot_interrupted,
        Interruption: BotActivity._interruption,
        rtvi.BotReady: BotActivity._bot_ready,
        rtvi.UserStartedSpeaking: BotActivity._user_started_speaking,
        rtvi.UserStoppedSpeaking: BotActivity._user_stopped_speaking,
    }


_HANDLERS: Dispatch[_Handler] = Dispatch(_handlers)
