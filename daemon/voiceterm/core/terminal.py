"""The terminal's brain: link state, button, mute, bot speaking and audio faults in; commands and a status
view out. Pure — every input carries its time and returns the commands to carry out, in order — so the whole
push-to-talk behaviour is testable without a clock, a socket or a pin.

The app feeds it button edges, keys, link status, bot events, audio faults and captured mic chunks; it carries
out the commands (send a message, flush playback, play an earcon, reconnect, wake the link, quit), sends what
`mic()` returns, and calls `tick()` at `next_deadline()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

from voiceterm.config import Config, PushToTalkConfig
from voiceterm.core.buttons import (
    ButtonTracker,
    EndTurn,
    Gesture,
    Intent,
    LongAction,
    ModeMachine,
    PressContext,
    StartTurn,
)
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.status import Conditions, StatusView, resolve
from voiceterm.protocol.events import Interruption
from voiceterm.protocol.rtvi import (
    BotInterrupted,
    BotReady,
    BotStartedSpeaking,
    BotStoppedSpeaking,
    UserStartedSpeaking,
    UserStoppedSpeaking,
    interrupts_on_user_speech,
    push_to_talk,
)

__all__ = [
    "BARGE_IN_HOLD_S",
    "THINKING_TIMEOUT_S",
    "Command",
    "Earcon",
    "FlushPlayback",
    "Quit",
    "ReconnectNow",
    "SendMessage",
    "Terminal",
    "WakeLink",
]

# "thinking" (turn over, no answer yet) gives up after this long: a bot that never answers must not leave the
# LED claiming it is about to.
THINKING_TIMEOUT_S = 10.0
# The silence tail normally ends after its last chunk; this bounds it when the mic delivers nothing (a fault).
TAIL_GRACE_S = 1.0
# After a barge-in, bot audio already in flight (sent before the server acted on the press) is dropped until
# the server confirms the interruption, or for at most this long when it never does.
BARGE_IN_HOLD_S = 1.0


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send this RTVI message to the bot."""

    message: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class FlushPlayback:
    """Drop all queued bot audio now."""

    reason: str


@dataclass(frozen=True, slots=True)
class Earcon:
    """Play a short tone: "press", "release", "connected", "disconnected" or "error"."""

    name: str


@dataclass(frozen=True, slots=True)
class ReconnectNow:
    """Drop the session (if any) and connect again without waiting."""


@dataclass(frozen=True, slots=True)
class WakeLink:
    """The link gave up (FAILED); start trying again."""


@dataclass(frozen=True, slots=True)
class Quit:
    """Stop the daemon."""


Command = Union[SendMessage, FlushPlayback, Earcon, ReconnectNow, WakeLink, Quit]


class Terminal:
    """The push-to-talk state machine and the status view derived from it."""

    def __init__(self, config: Config, now: float) -> None:
        self._config = config
        self._ptt: PushToTalkConfig = config.push_to_talk
        self._now = now
        self._tracker = ButtonTracker(config.gpio.debounce_ms / 1000, config.gpio.long_press_ms / 1000)
        self._machine = self._make_machine()
        self.muted = self._ptt.start_muted
        self.link_status: LinkStatus | None = None  # None until the first status: "starting"
        self.turn = False
        self._turn_started = now
        self._turn_deadline: float | None = None
        self._tail_left = 0  # silence chunks still to send after a release
        self._tail_deadline: float | None = None
        self.bot_speaking = False  # from RTVI bot-started/stopped-speaking
        self.playing = False  # local playback audible (the fallback when the server sends no RTVI)
        self.user_speaking = False  # from RTVI user-started/stopped-speaking (always-on mode shows it)
        # A pre-1.3 server's only interruption signal is user-started-speaking; bot-ready tells (False before
        # it: an unknown server must not have its words thrown away).
        self.legacy_interruptions = False
        self._thinking_since: float | None = None
        self._barge_hold_until: float | None = None  # bot audio is stale until then (or a confirmation)
        self.faults: dict[str, str] = {}
        self.counters: dict[str, int] = {
            "presses_total": 0,
            "long_presses_total": 0,
            "turns_total": 0,
            "barge_ins_total": 0,
            "max_turn_ends_total": 0,
            "mic_chunks_sent_total": 0,
            "tail_chunks_sent_total": 0,
            "stale_bot_audio_dropped_total": 0,
            "control_talks_total": 0,
        }

    # --- configuration ----------------------------------------------------------------------------

    def _make_machine(self) -> ModeMachine:
        return ModeMachine(self._ptt.mode, self._ptt.long_press_action, self._ptt.barge_in)

    def reconfigure(self, config: Config) -> list[Command]:
        """Apply a reloaded configuration's live parts ([push_to_talk], [earcons]). A mode change ends an
        open turn (the returned commands say so to the bot). GPIO timings need a restart, like the pins."""
        old_mode = self._ptt.mode
        self._config = config
        self._ptt = config.push_to_talk
        self._machine = self._make_machine()
        out: list[Command] = []
        if self.turn and self._ptt.mode != old_mode:
            out += self._end_turn(self._now, "release")
        if self.turn:
            self._turn_deadline = self._turn_started + self._ptt.max_turn_s
        return out

    # --- derived conditions -----------------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        return self.link_status is not None and self.link_status.state.is_up

    @property
    def button_pressed(self) -> bool:
        """The debounced level of the button."""
        return self._tracker.pressed

    @property
    def bot_audible(self) -> bool:
        return self.bot_speaking or self.playing

    @property
    def thinking(self) -> bool:
        return self._thinking_since is not None

    @property
    def in_tail(self) -> bool:
        return self._tail_left > 0

    @property
    def listening(self) -> bool:
        if self.turn:
            return True
        return self._ptt.mode == "always-on" and self.user_speaking and not self.muted

    def _ctx(self) -> PressContext:
        return PressContext(
            can_talk=self.link_up and not self.muted, in_turn=self.turn, bot_audible=self.bot_audible
        )

    def _earcon(self, name: str) -> list[Command]:
        earcons = self._config.earcons
        return [Earcon(name)] if earcons.enabled and getattr(earcons, name, False) else []

    def _clock(self, now: float) -> None:
        self._now = max(self._now, now)  # the latest time seen, for reconfigure() which is given none

    # --- inputs -----------------------------------------------------------------------------------

    def button(self, pressed: bool, now: float) -> list[Command]:
        """A raw edge from the GPIO button (True = pressed). Debounce happens here."""
        self._clock(now)
        out = self._timers(now)
        for gesture in self._tracker.edge(pressed, now):
            out += self._gesture(gesture, now)
        return out

    def key(self, key: str, now: float) -> list[Command]:
        """A key from the terminal stand-in: " " talk toggle, "m" mute toggle, "r" reconnect, "q" quit."""
        self._clock(now)
        out = self._timers(now)
        key = key.lower()
        if key == " ":
            self.counters["presses_total"] += 1
            if self._link_failed():
                out.append(WakeLink())
            out += self._intents(self._machine.toggle(self._ctx()), now)
        elif key == "m":
            out += self._toggle_mute(now)
        elif key == "r":
            out.append(ReconnectNow())
        elif key == "q":
            out.append(Quit())
        return out

    def talk(self, start: bool, now: float) -> list[Command]:
        """The on-screen talk button (the control socket): start or end a turn explicitly, whatever the mode.

        A start goes the way a press of the button in hold mode goes (it wakes a FAILED link, barges in on
        the bot when barge-in is on); `cannot_talk()` says why a start opened no turn. A stop ends the turn
        whichever input opened it.
        """
        self._clock(now)
        out = self._timers(now)
        if not start:
            if self.turn:
                out += self._end_turn(now, "release")
            return out
        self.counters["control_talks_total"] += 1
        if self._link_failed():
            out.append(WakeLink())
        if not self.turn and self.cannot_talk() is None:
            out += self._start_turn(now, barge_in=self.bot_audible)
        return out

    def cannot_talk(self) -> str | None:
        """Why a turn cannot start now (one line), or None when it can."""
        if not self.link_up:
            return "not connected to the bot"
        if self.muted:
            return "muted"
        if self.bot_audible and not self._ptt.barge_in:
            return "the bot is speaking and push_to_talk.barge_in is off"
        return None

    def set_mute(self, muted: bool | None, now: float) -> list[Command]:
        """Mute (True), unmute (False) or toggle (None), from the control socket."""
        self._clock(now)
        out = self._timers(now)
        if muted is None or muted != self.muted:
            out += self._toggle_mute(now)
        return out

    def tick(self, now: float) -> list[Command]:
        """Run the timers that are due: debounce settling, long press, tail end, turn limit, thinking."""
        self._clock(now)
        return self._timers(now)

    def next_deadline(self) -> float | None:
        """When `tick` must run next; None when no timer is pending."""
        times = [
            self._tracker.next_deadline(),
            self._tail_deadline if self._tail_left else None,
            self._turn_deadline if self.turn else None,
            self._thinking_since + THINKING_TIMEOUT_S if self._thinking_since is not None else None,
        ]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def link(self, status: LinkStatus, now: float) -> list[Command]:
        """A link status change."""
        self._clock(now)
        out = self._timers(now)
        prev = self.link_status
        was_up = prev is not None and prev.state.is_up
        self.link_status = status
        if was_up and not status.state.is_up:
            # The session is gone: whatever it was doing is over. A turn cannot continue into another
            # session (the new bot never saw its start), and its queued audio belongs to the old one.
            self.turn = False
            self._turn_deadline = None
            self._tail_left = 0
            self.bot_speaking = False
            self.user_speaking = False
            self._thinking_since = None
            out.append(FlushPlayback("link lost"))
            out += self._earcon("disconnected")
        if status.state is LinkState.READY and (prev is None or prev.state is not LinkState.READY):
            out += self._earcon("connected")
        return out

    def bot(self, event: object, now: float) -> list[Command]:
        """An event from the bot: RTVI speaking/interruption events and protocol interruptions matter here."""
        self._clock(now)
        out = self._timers(now)
        if isinstance(event, BotStartedSpeaking):
            self.bot_speaking = True
            self._thinking_since = None
        elif isinstance(event, BotStoppedSpeaking):
            self.bot_speaking = False
            self._barge_hold_until = None
        elif isinstance(event, BotInterrupted):
            self.bot_speaking = False
            self._barge_hold_until = None
            self.legacy_interruptions = False  # it has real interruptions after all
            out.append(FlushPlayback("bot-interrupted"))
        elif isinstance(event, Interruption):
            self.bot_speaking = False
            self._barge_hold_until = None
            self.legacy_interruptions = False
            out.append(FlushPlayback("interruption"))
        elif isinstance(event, BotReady):
            self.legacy_interruptions = interrupts_on_user_speech(event.version, event.about)
        elif isinstance(event, UserStartedSpeaking):
            # Not an interruption by itself: with interruptions off the bot talks on, and flushing here
            # would throw its words away. Only a server too old to send anything else interrupts with it.
            self.user_speaking = True
            self._barge_hold_until = None
            if self.legacy_interruptions:
                out.append(FlushPlayback("user-started-speaking"))
            if self._ptt.mode == "always-on":
                self._thinking_since = None
        elif isinstance(event, UserStoppedSpeaking):
            self.user_speaking = False
            # In hold/toggle modes the release marks the end of the turn; with an open mic only the bot's
            # turn detection knows, so "thinking" starts here.
            if self._ptt.mode == "always-on" and self.link_up:
                self._thinking_since = now
        return out

    def session_started(self, now: float) -> list[Command]:
        """A new bot session began: nothing of the old one may play or show."""
        self._clock(now)
        out = self._timers(now)
        self.bot_speaking = False
        self.user_speaking = False
        self.legacy_interruptions = False  # a new session may be a different server: bot-ready will tell
        self._thinking_since = None
        self._barge_hold_until = None
        out.append(FlushPlayback("new session"))
        if self.turn and self._ptt.send_messages:
            out.append(SendMessage(push_to_talk("start")))  # the new bot never saw this turn begin
        return out

    def audio_fault(self, device: str, fault: str | None, now: float) -> list[Command]:
        """An audio device (`"capture"` or `"playback"`) failed (`fault` says how) or recovered (None)."""
        self._clock(now)
        out = self._timers(now)
        if fault:
            new = device not in self.faults
            self.faults[device] = fault
            if new:
                out += self._earcon("error")
        else:
            self.faults.pop(device, None)
        return out

    def playback_active(self, playing: bool, now: float) -> list[Command]:
        """Bot audio is (not) audible on the local speaker."""
        self._clock(now)
        out = self._timers(now)
        self.playing = playing
        if playing:
            self._thinking_since = None  # the answer has started, with or without RTVI telling us
        return out

    def accept_bot_audio(self, now: float) -> bool:
        """Whether a chunk of bot audio arriving now should be played.

        False just after a barge-in: chunks the bot sent before it heard the press would otherwise play on
        after the flush. True again once the server confirms the interruption (interruption frame,
        bot-interrupted, user-started-speaking, bot-stopped-speaking), at a new session, or after
        BARGE_IN_HOLD_S when the server never confirms.
        """
        self._clock(now)
        if self._barge_hold_until is None:
            return True
        if now >= self._barge_hold_until:
            self._barge_hold_until = None
            return True
        self.counters["stale_bot_audio_dropped_total"] += 1
        return False

    def mic(self, pcm: bytes, now: float) -> bytes | None:
        """The audio to send for one captured chunk, or None to send nothing.

        Never while muted or with the link down; never while the bot speaks in half-duplex; the chunk itself
        in a turn (or always, in always-on mode); zeros of the same length during the tail after a release.
        """
        self._clock(now)
        self._expire_tail(now)  # the turn limit is tick()'s: its commands cannot be returned from here
        if not self.link_up or self.muted:
            return None
        if self._config.audio.half_duplex and self.bot_audible:
            return None
        if self.turn or self._ptt.mode == "always-on":
            self.counters["mic_chunks_sent_total"] += 1
            return pcm
        if self._tail_left:
            self._tail_left -= 1
            self.counters["tail_chunks_sent_total"] += 1
            return bytes(len(pcm))
        return None

    @property
    def mic_wanted(self) -> bool:
        """Whether `mic()` would send anything now: while it would not, the mic need not hand chunks over."""
        if not self.link_up or self.muted:
            return False
        if self._config.audio.half_duplex and self.bot_audible:
            return False
        return self.turn or self._ptt.mode == "always-on" or self._tail_left > 0

    # --- outputs ----------------------------------------------------------------------------------

    def conditions(self) -> Conditions:
        """The inputs of the status view."""
        return Conditions(
            link=self.link_status,
            faults=tuple(sorted(self.faults.items())),
            muted=self.muted,
            listening=self.listening,
            bot_speaking=self.bot_audible,
            thinking=self.thinking,
        )

    def view(self) -> StatusView:
        """The priority-resolved status view (LED pattern, colour, STATUS text)."""
        return resolve(self.conditions())

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state for the status socket and metrics."""
        link = self.link_status
        return {
            "mode": self._ptt.mode,
            "muted": self.muted,
            "turn": self.turn,
            "tail": self.in_tail,
            "bot_speaking": self.bot_speaking,
            "playing": self.playing,
            "thinking": self.thinking,
            "user_speaking": self.user_speaking,
            "legacy_interruptions": self.legacy_interruptions,
            "button_pressed": self._tracker.pressed,
            "faults": dict(self.faults),
            "link_state": link.state.value if link else None,
            "status": self.view().name,
            "bounces_total": self._tracker.bounces_total,
            **self.counters,
        }

    # --- internals --------------------------------------------------------------------------------

    def _link_failed(self) -> bool:
        return self.link_status is not None and self.link_status.state is LinkState.FAILED

    def _timers(self, now: float) -> list[Command]:
        out: list[Command] = []
        for gesture in self._tracker.poll(now):
            out += self._gesture(gesture, now)
        out += self._expire(now)
        return out

    def _expire_tail(self, now: float) -> None:
        if self._tail_left and self._tail_deadline is not None and now >= self._tail_deadline:
            self._tail_left = 0

    def _expire(self, now: float) -> list[Command]:
        out: list[Command] = []
        self._expire_tail(now)
        if self.turn and self._turn_deadline is not None and now >= self._turn_deadline:
            # A stuck button or a forgotten toggle must not stream the room to the bot forever.
            self.counters["max_turn_ends_total"] += 1
            out += self._end_turn(now, "max-turn")
        if self._thinking_since is not None and now >= self._thinking_since + THINKING_TIMEOUT_S:
            self._thinking_since = None
        return out

    def _gesture(self, gesture: Gesture, now: float) -> list[Command]:
        ctx = self._ctx()
        out: list[Command] = []
        if gesture.kind == "down":
            self.counters["presses_total"] += 1
            if self._link_failed():
                out.append(WakeLink())
            intents = self._machine.down(ctx)
        elif gesture.kind == "long":
            intents = self._machine.long(ctx)
        else:
            intents = self._machine.up(ctx)
        return out + self._intents(intents, now)

    def _intents(self, intents: list[Intent], now: float) -> list[Command]:
        out: list[Command] = []
        for intent in intents:
            if isinstance(intent, StartTurn):
                out += self._start_turn(now, barge_in=intent.barge_in)
            elif isinstance(intent, EndTurn):
                if self.turn:
                    out += self._end_turn(now, "release")
            elif isinstance(intent, LongAction):
                self.counters["long_presses_total"] += 1
                action = self._ptt.long_press_action
                if action == "mute":
                    out += self._toggle_mute(now)
                elif action == "reconnect":
                    out.append(ReconnectNow())
        return out

    def _start_turn(self, now: float, *, barge_in: bool) -> list[Command]:
        out: list[Command] = []
        if self.turn:
            return out  # one turn at a time, whichever input opened it
        if barge_in:
            # Cut the bot off locally at once; the push-to-talk start (and the user's audio) tells the server.
            self.counters["barge_ins_total"] += 1
            self.bot_speaking = False
            self.playing = False
            self._barge_hold_until = now + BARGE_IN_HOLD_S
            out.append(FlushPlayback("barge-in"))
        if self._ptt.send_messages:
            out.append(SendMessage(push_to_talk("start")))
        self.turn = True
        self.counters["turns_total"] += 1
        self._turn_started = now
        self._turn_deadline = now + self._ptt.max_turn_s
        self._tail_left = 0
        self._thinking_since = None
        out += self._earcon("press")
        return out

    def _end_turn(self, now: float, why: str) -> list[Command]:
        self.turn = False
        self._turn_deadline = None
        out: list[Command] = []
        if self._ptt.send_messages:
            out.append(SendMessage(push_to_talk("stop")))
        if why != "mute" and self._ptt.mode != "always-on" and self._ptt.tail_ms > 0:
            # A VAD-only server ends the user's turn after hearing silence; stream it rather than go quiet.
            audio = self._config.audio
            chunk_ms = audio.chunk_ms or audio.period_ms  # one mic chunk per capture period
            self._tail_left = math.ceil(self._ptt.tail_ms / chunk_ms)
            self._tail_deadline = now + self._ptt.tail_ms / 1000 + TAIL_GRACE_S
        # "thinking" waits for the answer; a bot already audible at the release is answering (or echoing).
        self._thinking_since = None if self.bot_audible else now
        if why != "mute":
            out += self._earcon("release")
        return out

    def _toggle_mute(self, now: float) -> list[Command]:
        self.muted = not self.muted
        out: list[Command] = []
        if self.muted:
            # Muted means nothing at all reaches the bot, not even the silence tail.
            if self.turn:
                out += self._end_turn(now, "mute")
            self._tail_left = 0
        return out
