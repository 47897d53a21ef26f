"""The button, as pure logic with explicit times: debounce, long-press detection, and what a press means in
each push-to-talk mode.

`ButtonTracker` turns raw pin edges into clean gestures (down, up, long). A level counts only once it has held
for the debounce time, so a glitch or bounce shorter than that produces nothing (gpiozero's own `bounce_time`
is off by default and its mock ignores it, so debounce lives here). `ModeMachine` turns gestures into intents
(start a turn, end a turn, run the long-press action) given what the terminal can do at that moment.
"""

from __future__ import annotations

import math
from typing import Literal, Union

from voiceterm.record import record

__all__ = [
    "ButtonTracker",
    "EndTurn",
    "Gesture",
    "Intent",
    "LongAction",
    "ModeMachine",
    "PressContext",
    "StartTurn",
]


@record
class Gesture:
    """A debounced button event. `at` is when it really happened (the first edge of the stable level), so
    the debounce delay does not skew press lengths; `held_s` is how long the button had been down."""

    kind: Literal["down", "up", "long"]
    at: float
    held_s: float = 0.0


class ButtonTracker:
    """Debounce raw edges and detect long presses; every method takes the current time explicitly."""

    def __init__(self, debounce_s: float, long_press_s: float) -> None:
        self.debounce_s = max(0.0, debounce_s)
        self.long_press_s = long_press_s
        self.pressed = False  # the debounced level
        self.bounces_total = 0  # raw changes that reverted before the debounce time: glitches and bounce
        self._raw = False
        self._raw_since: float | None = None  # the raw level has differed from `pressed` since then
        self._down_at: float | None = None
        self._long_due: float | None = None
        self._last_now = -math.inf

    def next_deadline(self) -> float | None:
        """When `poll` has something to do next (a level settling, a long press falling due)."""
        times = []
        if self._raw_since is not None:
            times.append(self._raw_since + self.debounce_s)
        elif self._long_due is not None:
            # While a release is settling the long press waits for its verdict, so it is no deadline then.
            times.append(self._long_due)
        return min(times) if times else None

    def poll(self, now: float) -> list[Gesture]:
        """Gestures that have become due by `now`, in time order."""
        now = self._clock(now)
        out: list[Gesture] = []
        while True:
            settle = self._raw_since + self.debounce_s if self._raw_since is not None else math.inf
            long_due = (
                self._long_due if (self._long_due is not None and self._raw_since is None) else math.inf
            )
            if min(settle, long_due) > now:
                return out
            if long_due <= settle:
                assert self._down_at is not None
                self._long_due = None
                out.append(Gesture("long", long_due, long_due - self._down_at))
                continue
            at = self._raw_since
            assert at is not None
            self._raw_since = None
            self.pressed = self._raw
            if self.pressed:
                self._down_at = at
                self._long_due = at + self.long_press_s
                out.append(Gesture("down", at))
            else:
                down_at = self._down_at if self._down_at is not None else at
                if self._long_due is not None and at >= self._long_due:
                    # Released after the long-press time, but the release was still settling when it fell due.
                    out.append(Gesture("long", self._long_due, self._long_due - down_at))
                self._long_due = None
                self._down_at = None
                out.append(Gesture("up", at, at - down_at))

    def edge(self, pressed: bool, now: float) -> list[Gesture]:
        """A raw pin edge (True = pressed) at `now`; returns gestures due up to and including it."""
        now = self._clock(now)
        out = self.poll(now)
        if pressed == self._raw:
            return out  # a repeated level carries no news
        self._raw = pressed
        if pressed == self.pressed:
            # Back to the settled level before the other one held long enough: that was bounce.
            self._raw_since = None
            self.bounces_total += 1
        else:
            self._raw_since = now
        out += self.poll(now)  # with no debounce the change settles at once
        return out

    def _clock(self, now: float) -> float:
        # Edges and ticks come from different tasks; never let a slightly older timestamp run time backwards.
        self._last_now = max(self._last_now, now)
        return self._last_now


# --- what a press means -----------------------------------------------------------------------------


@record
class StartTurn:
    """Open the mic for a user turn; `barge_in` when the bot is audible and must be cut off first."""

    barge_in: bool = False


@record
class EndTurn:
    """Close the user turn (the terminal ignores it when no turn is open)."""


@record
class LongAction:
    """Run the configured long-press action."""


Intent = Union[StartTurn, EndTurn, LongAction]


@record
class PressContext:
    """What the terminal can do at the moment of a gesture."""

    can_talk: bool  # not muted and the link is up
    in_turn: bool
    bot_audible: bool  # the bot is speaking (RTVI) or its audio is playing


class ModeMachine:
    """Per-press state for one push-to-talk mode.

    - hold: a press that can start a turn is a turn, however long it is held (talking for more than a second
      is normal), and its release ends the turn. A press that cannot start a turn (muted, link down, the bot
      speaking with barge-in off) may be a long press instead — this is how a muted hold-to-talk device is
      unmuted from its only button.
    - toggle: a tap starts or ends a turn. Ending, and barging in on the bot, act on the press itself; starting
      acts on the release when a long press could mean something else (else on the press).
    - always-on: the mic is open without the button. A press while the bot speaks barges in (a turn that lasts
      while held, so a push-to-talk server hears it); any other press may be a long press.
    """

    def __init__(
        self,
        mode: Literal["hold", "toggle", "always-on"],
        long_press_action: Literal["mute", "reconnect", "none"],
        barge_in: bool,
        *,
        press: str | None = None,
    ) -> None:
        self.mode = mode
        self.long_press_action = long_press_action
        self.barge_in = barge_in
        # What the current press is: "turn" (its release ends the turn), "pending" (toggle: tap or long?),
        # "armed" (only a long press does something), "consumed" (nothing more to do), None (up).
        self.press: str | None = press

    def reconfigured(
        self,
        mode: Literal["hold", "toggle", "always-on"],
        long_press_action: Literal["mute", "reconnect", "none"],
        barge_in: bool,
    ) -> ModeMachine:
        """The machine for new settings (a reload). A press in progress keeps its meaning when the mode stays
        (its release still ends the turn it opened); a new mode starts from no press."""
        return ModeMachine(mode, long_press_action, barge_in, press=self.press if mode == self.mode else None)

    def _can_start(self, ctx: PressContext) -> bool:
        return ctx.can_talk and (self.barge_in or not ctx.bot_audible)

    @property
    def _long_means_something(self) -> bool:
        return self.long_press_action != "none"

    def down(self, ctx: PressContext) -> list[Intent]:
        if self.mode in ("hold", "always-on") and ctx.in_turn:
            # A turn is already open (the keyboard's, say): this press joins it, and its release ends it.
            self.press = "turn"
            return []
        if self.mode == "hold":
            if self._can_start(ctx):
                self.press = "turn"
                return [StartTurn(barge_in=ctx.bot_audible)]
            self.press = "armed"
            return []
        if self.mode == "toggle":
            if ctx.in_turn:
                self.press = "consumed"
                return [EndTurn()]
            if ctx.can_talk and ctx.bot_audible:
                if self.barge_in:
                    self.press = "consumed"
                    return [StartTurn(barge_in=True)]
                self.press = "armed"
                return []
            if ctx.can_talk:
                if self._long_means_something:
                    self.press = "pending"
                    return []
                self.press = "consumed"
                return [StartTurn()]
            self.press = "armed"
            return []
        # always-on
        if ctx.can_talk and ctx.bot_audible and self.barge_in:
            self.press = "turn"
            return [StartTurn(barge_in=True)]
        self.press = "armed"
        return []

    def long(self, ctx: PressContext) -> list[Intent]:
        if self.press in ("pending", "armed") and self._long_means_something:
            self.press = "consumed"
            return [LongAction()]
        return []

    def up(self, ctx: PressContext) -> list[Intent]:
        press, self.press = self.press, None
        if press == "turn":
            return [EndTurn()]
        if press == "pending" and self._can_start(ctx):
            return [StartTurn(barge_in=ctx.bot_audible)]
        return []

    def toggle(self, ctx: PressContext) -> list[Intent]:
        """The keyboard's talk key: terminals report no key release, so it toggles a turn in every mode."""
        if ctx.in_turn:
            return [EndTurn()]
        if self._can_start(ctx):
            return [StartTurn(barge_in=ctx.bot_audible)]
        return []
