"""The terminal's brain: link state, button, mute, bot activity and audio faults in; commands and one
read-only state out. Pure — every input carries its time and returns the commands to carry out, in order — so
the whole push-to-talk behaviour is testable without a clock, a socket or a pin.

The app feeds it the panel's typed inputs (button edges and keys, `core/terminal_inputs.py`), link status, bot
events, audio faults and captured mic chunks; it carries out the commands (`core/terminal_commands.py`), sends
what `mic()` returns, calls `tick()` at `next_deadline()`, and reads what the brain knows from `state()`
(`core/terminal_state.py`) and nowhere else. What the bot is doing is `core/bot_activity.py`; the button's
debounce and what a press means in each mode are `core/buttons.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from voiceterm.config import Config, PushToTalkConfig
from voiceterm.core.bot_activity import BARGE_IN_HOLD_S, THINKING_TIMEOUT_S, BotActivity
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
from voiceterm.core.dispatch import Dispatch
from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.core.status import Conditions, resolve
from voiceterm.core.terminal_commands import (
    Command,
    Earcon,
    FlushPlayback,
    Quit,
    ReconnectNow,
    SendMessage,
    WakeLink,
)
from voiceterm.core.terminal_inputs import ButtonEdge, KeyPress, PanelInput
from voiceterm.core.terminal_state import TerminalState
from voiceterm.protocol.rtvi import push_to_talk

__all__ = ["BARGE_IN_HOLD_S", "TAIL_GRACE_S", "THINKING_TIMEOUT_S", "Terminal"]

# The silence tail normally ends after its last chunk; this bounds it when the mic delivers nothing (a fault).
TAIL_GRACE_S = 1.0

COUNTERS = (
    "presses_total",
    "long_presses_total",
    "turns_total",
    "barge_ins_total",
    "max_turn_ends_total",
    "mic_chunks_sent_total",
    "tail_chunks_sent_total",
    "stale_bot_audio_dropped_total",  # BotActivity's: audio held back after a barge-in
    "control_talks_total",
)


class Terminal:
    """The push-to-talk state machine and the status view derived from it."""

    def __init__(self, config: Config, now: float) -> None:
        self._config = config
        self._ptt: PushToTalkConfig = config.push_to_talk
        self._now = now
        self._tracker = ButtonTracker(config.gpio.debounce_ms / 1000, config.gpio.long_press_ms / 1000)
        self._machine = ModeMachine(self._ptt.mode, self._ptt.long_press_action, self._ptt.barge_in)
        self._bot = BotActivity()
        self._muted = self._ptt.start_muted
        self._link: LinkStatus | None = None  # None until the first status: "starting"
        self._turn = False
        self._turn_started = now
        self._turn_deadline: float | None = None
        self._tail_left = 0  # silence chunks still to send after a release
        self._tail_deadline: float | None = None
        self._faults: dict[str, str] = {}
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._state: TerminalState | None = None  # built on demand, dropped by every input

    # --- configuration ----------------------------------------------------------------------------

    def reconfigure(self, config: Config) -> list[Command]:
        """Apply a reloaded configuration's live parts ([push_to_talk], [earcons]). A mode change ends an
        open turn (the returned commands say so to the bot). GPIO timings need a restart, like the pins."""
        old_mode = self._ptt.mode
        self._state = None
        self._config = config
        self._ptt = config.push_to_talk
        # A new machine through its own constructor; a press in progress keeps its meaning.
        self._machine = self._machine.reconfigured(
            self._ptt.mode, self._ptt.long_press_action, self._ptt.barge_in
        )
        out: list[Command] = []
        if self._turn and self._ptt.mode != old_mode:
            out += self._end_turn(self._now, "release")
        if self._turn:
            self._turn_deadline = self._turn_started + self._ptt.max_turn_s
        return out

    # --- what it knows ------------------------------------------------------------------------------

    def state(self) -> TerminalState:
        """Everything the terminal knows, as one read-only value (the same object until the next input)."""
        if self._state is None:
            bot = self._bot
            conditions = Conditions(
                link=self._link,
                faults=tuple(sorted(self._faults.items())),
                muted=self._muted,
                listening=self._listening,
                bot_speaking=bot.audible,
                thinking=bot.thinking,
            )
            self._state = TerminalState(
                mode=self._ptt.mode,
                muted=self._muted,
                turn=self._turn,
                tail=self._tail_left > 0,
                bot_speaking=bot.speaking,
                playing=bot.playing,
                thinking=bot.thinking,
                user_speaking=bot.user_speaking,
                legacy_interruptions=bot.legacy_interruptions,
                button_pressed=self._tracker.pressed,
                faults=conditions.faults,
                link=self._link,
                view=resolve(conditions),
                cannot_talk=self._cannot_talk(),
                mic_wanted=self._mic_wanted(),
                bounces_total=self._tracker.bounces_total,
                counters={**self._counters, "stale_bot_audio_dropped_total": bot.stale_dropped_total},
            )
        return self._state

    def next_deadline(self) -> float | None:
        """When `tick` must run next; None when no timer is pending."""
        times = [
            self._tracker.next_deadline(),
            self._tail_deadline if self._tail_left else None,
            self._turn_deadline if self._turn else None,
            self._bot.next_deadline(),
        ]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    @property
    def _link_up(self) -> bool:
        return self._link is not None and self._link.state.is_up

    @property
    def _listening(self) -> bool:
        if self._turn:
            return True
        return self._ptt.mode == "always-on" and self._bot.user_speaking and not self._muted

    def _mic_wanted(self) -> bool:
        # Whether mic() sends anything now; while it would not, the mic thread hands no chunk over.
        if not self._link_up or self._muted:
            return False
        if self._config.audio.half_duplex and self._bot.audible:
            return False
        return self._turn or self._ptt.mode == "always-on" or self._tail_left > 0

    def _cannot_talk(self) -> str | None:
        if not self._link_up:
            return "not connected to the bot"
        if self._muted:
            return "muted"
        if self._bot.audible and not self._ptt.barge_in:
            return "the bot is speaking and push_to_talk.barge_in is off"
        return None

    # --- inputs -----------------------------------------------------------------------------------

    def panel(self, event: PanelInput) -> list[Command]:
        """A button edge or a key, timed by its own `at` (debounce and long presses run on the edge's time)."""
        handler = _PANEL.get(event)
        if handler is None:
            raise TypeError(f"not a panel input: {type(event).__name__}")
        self._clock(event.at)
        return self._timers(event.at) + handler(self, event)

    def _button(self, edge: ButtonEdge) -> list[Command]:
        out: list[Command] = []
        for gesture in self._tracker.edge(edge.pressed, edge.at):
            out += self._gesture(gesture, edge.at)
        return out

    def _key(self, press: KeyPress) -> list[Command]:
        # Terminals report no key release: space toggles a turn in every mode.
        key, now = press.key.lower(), press.at
        if key == " ":
            self._counters["presses_total"] += 1
            wake: list[Command] = [WakeLink()] if self._link_failed() else []
            return wake + self._intents(self._machine.toggle(self._ctx()), now)
        if key == "m":
            return self._toggle_mute(now)
        if key == "r":
            return [ReconnectNow()]
        if key == "q":
            return [Quit()]
        return []

    def talk(self, start: bool, now: float) -> list[Command]:
        """The on-screen talk button (the control socket): start or end a turn explicitly, whatever the mode.

        A start goes the way a press of the button in hold mode goes (it wakes a FAILED link, barges in on
        the bot when barge-in is on); the state's `cannot_talk` says why a start opened no turn. A stop ends
        the turn whichever input opened it.
        """
        self._clock(now)
        out = self._timers(now)
        if not start:
            if self._turn:
                out += self._end_turn(now, "release")
            return out
        self._counters["control_talks_total"] += 1
        if self._link_failed():
            out.append(WakeLink())
        if not self._turn and self._cannot_talk() is None:
            out += self._start_turn(now, barge_in=self._bot.audible)
        return out

    def set_mute(self, muted: bool | None, now: float) -> list[Command]:
        """Mute (True), unmute (False) or toggle (None), from the control socket."""
        self._clock(now)
        out = self._timers(now)
        if muted is None or muted != self._muted:
            out += self._toggle_mute(now)
        return out

    def tick(self, now: float) -> list[Command]:
        """Run the timers that are due: debounce settling, long press, tail end, turn limit, thinking."""
        self._clock(now)
        return self._timers(now)

    def link(self, status: LinkStatus, now: float) -> list[Command]:
        """A link status change."""
        self._clock(now)
        out = self._timers(now)
        prev = self._link
        was_up = prev is not None and prev.state.is_up
        self._link = status
        if was_up and not status.state.is_up:
            # The session is gone: whatever it was doing is over. A turn cannot continue into another
            # session (the new bot never saw its start), and its queued audio belongs to the old one.
            self._turn = False
            self._turn_deadline = None
            self._tail_left = 0
            self._bot.link_lost()
            out.append(FlushPlayback("link lost"))
            out += self._earcon("disconnected")
        if status.state is LinkState.READY and (prev is None or prev.state is not LinkState.READY):
            out += self._earcon("connected")
        return out

    def bot(self, event: object, now: float) -> list[Command]:
        """An event from the bot: RTVI speaking/interruption events and protocol interruptions matter here."""
        self._clock(now)
        always_on = self._ptt.mode == "always-on"
        return self._timers(now) + self._bot.event(event, now, always_on=always_on, link_up=self._link_up)

    def session_started(self, now: float) -> list[Command]:
        """A new bot session began: nothing of the old one may play or show."""
        self._clock(now)
        out = self._timers(now) + self._bot.session_started()
        if self._turn and self._ptt.send_messages:
            out.append(SendMessage(push_to_talk("start")))  # the new bot never saw this turn begin
        return out

    def audio_fault(self, device: str, fault: str | None, now: float) -> list[Command]:
        """An audio device (`"capture"` or `"playback"`) failed (`fault` says how) or recovered (None)."""
        self._clock(now)
        out = self._timers(now)
        if fault:
            new = device not in self._faults
            self._faults[device] = fault
            if new:
                out += self._earcon("error")
        else:
            self._faults.pop(device, None)
        return out

    def playback_active(self, playing: bool, now: float) -> list[Command]:
        """Bot audio is (not) audible on the local speaker."""
        self._clock(now)
        out = self._timers(now)
        self._bot.playback(playing)
        return out

    def accept_bot_audio(self, now: float) -> bool:
        """Whether a chunk of bot audio arriving now should be played.

        False just after a barge-in: chunks the bot sent before it heard the press would otherwise play on
        after the flush. True again once the server confirms the interruption (interruption frame,
        bot-interrupted, user-started-speaking, bot-stopped-speaking), at a new session, or after
        BARGE_IN_HOLD_S when the server never confirms.
        """
        self._clock(now)
        return self._bot.accept_audio(now)

    def mic(self, pcm: bytes, now: float) -> bytes | None:
        """The audio to send for one captured chunk, or None to send nothing.

        Never while muted or with the link down; never while the bot speaks in half-duplex; the chunk itself
        in a turn (or always, in always-on mode); zeros of the same length during the tail after a release.
        """
        self._clock(now)
        self._expire_tail(now)  # the turn limit is tick()'s: its commands cannot be returned from here
        if not self._mic_wanted():
            return None
        if self._turn or self._ptt.mode == "always-on":
            self._counters["mic_chunks_sent_total"] += 1
            return pcm
        self._tail_left -= 1  # wanted outside a turn: the silence tail
        self._counters["tail_chunks_sent_total"] += 1
        return bytes(len(pcm))

    # --- internals --------------------------------------------------------------------------------

    def _clock(self, now: float) -> None:
        self._now = max(self._now, now)  # the latest time seen, for reconfigure() which is given none
        self._state = None  # an input: what the terminal knows may change

    def _ctx(self) -> PressContext:
        return PressContext(
            can_talk=self._link_up and not self._muted, in_turn=self._turn, bot_audible=self._bot.audible
        )

    def _earcon(self, name: str) -> list[Command]:
        earcons = self._config.earcons
        return [Earcon(name)] if earcons.enabled and getattr(earcons, name, False) else []

    def _link_failed(self) -> bool:
        return self._link is not None and self._link.state is LinkState.FAILED

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
        if self._turn and self._turn_deadline is not None and now >= self._turn_deadline:
            # A stuck button or a forgotten toggle must not stream the room to the bot forever.
            self._counters["max_turn_ends_total"] += 1
            out += self._end_turn(now, "max-turn")
        self._bot.expire(now)
        return out

    def _gesture(self, gesture: Gesture, now: float) -> list[Command]:
        ctx = self._ctx()
        out: list[Command] = []
        if gesture.kind == "down":
            self._counters["presses_total"] += 1
            if self._link_failed():
                out.append(WakeLink())
        return out + self._intents(_GESTURES[gesture.kind](self._machine, ctx), now)

    def _intents(self, intents: list[Intent], now: float) -> list[Command]:
        out: list[Command] = []
        for intent in intents:
            out += _INTENTS[type(intent)](self, intent, now)
        return out

    def _start_intent(self, intent: StartTurn, now: float) -> list[Command]:
        return self._start_turn(now, barge_in=intent.barge_in)

    def _end_intent(self, intent: EndTurn, now: float) -> list[Command]:
        return self._end_turn(now, "release") if self._turn else []

    def _long_intent(self, intent: LongAction, now: float) -> list[Command]:
        self._counters["long_presses_total"] += 1
        action = self._ptt.long_press_action
        if action == "mute":
            return self._toggle_mute(now)
        if action == "reconnect":
            return [ReconnectNow()]
        return []

    def _start_turn(self, now: float, *, barge_in: bool) -> list[Command]:
        if self._turn:
            return []  # one turn at a time, whichever input opened it
        out: list[Command] = []
        if barge_in:
            # Cut the bot off locally at once; the push-to-talk start (and the user's audio) tells the server.
            self._counters["barge_ins_total"] += 1
            out += self._bot.barge_in(now)
        if self._ptt.send_messages:
            out.append(SendMessage(push_to_talk("start")))
        self._turn = True
        self._counters["turns_total"] += 1
        self._turn_started = now
        self._turn_deadline = now + self._ptt.max_turn_s
        self._tail_left = 0
        self._bot.turn_started()
        return out + self._earcon("press")

    def _end_turn(self, now: float, why: str) -> list[Command]:
        self._turn = False
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
        self._bot.turn_ended(now)
        if why != "mute":
            out += self._earcon("release")
        return out

    def _toggle_mute(self, now: float) -> list[Command]:
        self._muted = not self._muted
        out: list[Command] = []
        if self._muted:
            # Muted means nothing at all reaches the bot, not even the silence tail.
            if self._turn:
                out += self._end_turn(now, "mute")
            self._tail_left = 0
        return out


# The panel's inputs, what each gesture asks of the mode's machine, and what each intent does.
_PANEL: Dispatch[Callable[[Terminal, PanelInput], list[Command]]] = Dispatch(
    {ButtonEdge: Terminal._button, KeyPress: Terminal._key}  # type: ignore[dict-item]
)
_GESTURES: dict[str, Callable[[ModeMachine, PressContext], list[Intent]]] = {
    "down": ModeMachine.down,
    "long": ModeMachine.long,
    "up": ModeMachine.up,
}
_INTENTS: dict[type, Callable[[Terminal, Intent, float], list[Command]]] = {
    StartTurn: Terminal._start_intent,  # type: ignore[dict-item]
    EndTurn: Terminal._end_intent,  # type: ignore[dict-item]
    LongAction: Terminal._long_intent,  # type: ignore[dict-item]
}
