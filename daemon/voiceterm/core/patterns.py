"""LED patterns as plain data, and the pure functions that say how bright an LED is at a time into a pattern.

The panel's LED task and the tests share `level_at` / `next_change`, so what a test asserts is exactly what the
LED shows. Times are seconds since the pattern began (a pattern restarts whenever the status view changes, so a
new state is visible at once). A `binary` LED (plain on/off pin) gets a square-wave projection of each pattern.
"""

from __future__ import annotations

import math
from typing import Union

from voiceterm.record import record

__all__ = [
    "PULSE_MIN_STEP_S",
    "PULSE_STEPS",
    "Blink",
    "Color",
    "Flash",
    "Off",
    "On",
    "Pattern",
    "Pulse",
    "color_at",
    "describe",
    "level_at",
    "next_change",
    "period",
]

# A PWM pulse is rendered as a staircase of this many steps per period, but never faster than one step per
# PULSE_MIN_STEP_S: smooth to the eye, and at most ~40 LED writes a second on a Pi Zero.
PULSE_STEPS = 40
PULSE_MIN_STEP_S = 0.025

Color = tuple[float, float, float]


@record
class Off:
    """Dark."""


@record
class On:
    """Steady light at `level` (0..1]; a binary LED is simply on."""

    level: float = 1.0


@record
class Blink:
    """On for `on_ms`, off for `off_ms`, repeating; starts with the on phase."""

    on_ms: int
    off_ms: int
    level: float = 1.0


@record
class Pulse:
    """A smooth breathe between `low` and `high` over `period_ms`, starting bright.

    A binary LED shows it as a square wave: on for the first half of the period.
    """

    period_ms: int
    low: float = 0.0
    high: float = 1.0


@record
class Flash:
    """`n` flashes (`on_ms` on, `off_ms` off), then `gap_ms` dark, repeating."""

    n: int
    on_ms: int
    off_ms: int
    gap_ms: int
    level: float = 1.0


Pattern = Union[Off, On, Blink, Pulse, Flash]


def period(pattern: Pattern) -> float | None:
    """The pattern's repeat period in seconds; None for a constant pattern."""
    if isinstance(pattern, Blink):
        return (pattern.on_ms + pattern.off_ms) / 1000
    if isinstance(pattern, Pulse):
        return pattern.period_ms / 1000
    if isinstance(pattern, Flash):
        return (pattern.n * (pattern.on_ms + pattern.off_ms) + pattern.gap_ms) / 1000
    return None


def _segments(pattern: Blink | Flash) -> list[tuple[float, float]]:
    """(duration s, level) pieces of one period of a stepwise pattern."""
    if isinstance(pattern, Blink):
        return [(pattern.on_ms / 1000, pattern.level), (pattern.off_ms / 1000, 0.0)]
    segs: list[tuple[float, float]] = []
    for _ in range(pattern.n):
        segs += [(pattern.on_ms / 1000, pattern.level), (pattern.off_ms / 1000, 0.0)]
    segs.append((pattern.gap_ms / 1000, 0.0))
    return segs


def _pulse_step(pattern: Pulse) -> float:
    return max(pattern.period_ms / 1000 / PULSE_STEPS, PULSE_MIN_STEP_S)


def _phase(t: float, p: float) -> float:
    # Where in its period t falls. A time a hair short of a boundary (float rounding of `now - started`) counts
    # as on it, the same way in level_at and next_change, so the LED task never waits a whole step too long.
    cycles = math.floor(t / p + 1e-9)
    return max(t - cycles * p, 0.0)


def level_at(pattern: Pattern, t: float, *, binary: bool = False) -> float:
    """Brightness 0..1 at `t` seconds into the pattern (t < 0 counts as 0)."""
    t = max(t, 0.0)
    if isinstance(pattern, Off):
        return 0.0
    if isinstance(pattern, On):
        if binary:
            return 1.0 if pattern.level > 0 else 0.0
        return pattern.level
    p = period(pattern)
    if not p:  # a degenerate zero-length pattern: treat as dark rather than divide by zero
        return 0.0
    phase = _phase(t, p)
    if isinstance(pattern, Pulse):
        if binary:
            return 1.0 if phase < p / 2 else 0.0
        # Quantise to the render step so the value a test computes equals the one the LED task wrote.
        step = _pulse_step(pattern)
        phase = math.floor(phase / step + 1e-9) * step
        return pattern.low + (pattern.high - pattern.low) * (1 + math.cos(2 * math.pi * phase / p)) / 2
    acc = 0.0
    for duration, level in _segments(pattern):
        acc += duration
        if phase < acc - 1e-9:
            return (1.0 if level > 0 else 0.0) if binary else level
    return 0.0


def next_change(pattern: Pattern, t: float, *, binary: bool = False) -> float | None:
    """The time (seconds since the pattern began, > t) when the level may next change; None if never."""
    t = max(t, 0.0)
    if isinstance(pattern, (Off, On)):
        return None
    p = period(pattern)
    if not p:
        return None
    phase = _phase(t, p)
    base = t - phase
    if isinstance(pattern, Pulse):
        if binary:
            bounds = [p / 2, p]
        else:
            step = _pulse_step(pattern)
            return base + min((math.floor(phase / step + 1e-9) + 1) * step, p)
    else:
        bounds = []
        acc = 0.0
        for duration, _level in _segments(pattern):
            acc += duration
            bounds.append(acc)
    for b in bounds:
        if b > phase + 1e-9:
            return base + b
    return base + p + bounds[0]  # pragma: no cover - the last bound is the period, always > phase


def color_at(pattern: Pattern, color: Color, t: float, *, binary: bool = False) -> Color:
    """The RGB value at `t`: the state's colour scaled by the pattern's level (binary: each channel 0/1)."""
    level = level_at(pattern, t, binary=binary)
    if binary:
        return tuple(1.0 if (c > 0 and level > 0) else 0.0 for c in color)  # type: ignore[return-value]
    return tuple(round(c * level, 6) for c in color)  # type: ignore[return-value]


def describe(pattern: Pattern) -> str:
    """A short human name for logs: `blink 500/500ms`, `pulse 800ms`, `flash 2x`."""
    if isinstance(pattern, Off):
        return "off"
    if isinstance(pattern, On):
        return "on" if pattern.level >= 1 else f"on {pattern.level:g}"
    if isinstance(pattern, Blink):
        return f"blink {pattern.on_ms}/{pattern.off_ms}ms"
    if isinstance(pattern, Pulse):
        return f"pulse {pattern.period_ms}ms"
    return f"flash {pattern.n}x {pattern.on_ms}/{pattern.off_ms}ms gap {pattern.gap_ms}ms"
