"""Earcons: the short tones the terminal plays for its own events, generated with numpy (no audio files).

Each earcon is a few sine notes with raised-cosine edges (no clicks). Rising notes mean "start/up",
falling notes "stop/down", a low triple beep "something is wrong".
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# name -> notes of (frequency Hz, duration s, gap after s)
_NOTES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "press": ((880.0, 0.06, 0.0),),
    "release": ((660.0, 0.06, 0.0),),
    "connected": ((523.25, 0.08, 0.02), (783.99, 0.10, 0.0)),
    "disconnected": ((783.99, 0.08, 0.02), (523.25, 0.10, 0.0)),
    "error": ((330.0, 0.07, 0.05), (330.0, 0.07, 0.05), (330.0, 0.07, 0.0)),
}

NAMES: tuple[str, ...] = tuple(_NOTES)

_FADE_S = 0.006
# Full volume (100 %) peaks at half scale: tones must not be louder than speech.
_FULL_SCALE_PEAK = 0.5 * 32767


def duration_s(name: str) -> float:
    """Length of an earcon in seconds."""
    return sum(d + g for _, d, g in _notes(name))


def render(name: str, sample_rate: int, volume_percent: int) -> np.ndarray:
    """The earcon as mono int16 samples at `sample_rate`; read-only and cached."""
    return _render(name, sample_rate, max(0, min(100, int(volume_percent))))


def _notes(name: str) -> tuple[tuple[float, float, float], ...]:
    try:
        return _NOTES[name]
    except KeyError:
        raise ValueError(f"unknown earcon {name!r}; known: {', '.join(NAMES)}") from None


@lru_cache(maxsize=64)
def _render(name: str, sample_rate: int, volume_percent: int) -> np.ndarray:
    amplitude = _FULL_SCALE_PEAK * volume_percent / 100.0
    parts: list[np.ndarray] = []
    for freq, dur, gap in _notes(name):
        n = round(dur * sample_rate)
        t = np.arange(n) / sample_rate
        tone = np.sin(2 * np.pi * freq * t)
        fade = min(round(_FADE_S * sample_rate), n // 2)
        if fade:
            ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
            tone[:fade] *= ramp
            tone[n - fade :] *= ramp[::-1]
        parts.append(tone * amplitude)
        parts.append(np.zeros(round(gap * sample_rate)))
    out = np.round(np.concatenate(parts)).astype(np.int16)
    out.setflags(write=False)
    return out
