"""Earcons: the short tones the terminal plays for its own events, generated here (no audio files, and no
numpy: a daemon that plays bot audio as it comes never needs it).

Each earcon is a few sine notes with raised-cosine edges (no clicks). Rising notes mean "start/up",
falling notes "stop/down", a low triple beep "something is wrong".
"""

from __future__ import annotations

import math
import sys
from array import array
from functools import lru_cache
from typing import Any

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


def render(name: str, sample_rate: int, volume_percent: int) -> Any:
    """The earcon as a read-only numpy array of int16 samples at `sample_rate` (for tools and tests)."""
    import numpy as np

    out = np.frombuffer(render_pcm(name, sample_rate, volume_percent), dtype="<i2")
    out.setflags(write=False)
    return out


def render_pcm(name: str, sample_rate: int, volume_percent: int) -> bytes:
    """The earcon as S16_LE mono at `sample_rate`; cached."""
    return _render(name, sample_rate, max(0, min(100, int(volume_percent))))


def _notes(name: str) -> tuple[tuple[float, float, float], ...]:
    try:
        return _NOTES[name]
    except KeyError:
        raise ValueError(f"unknown earcon {name!r}; known: {', '.join(NAMES)}") from None


@lru_cache(maxsize=64)
def _render(name: str, sample_rate: int, volume_percent: int) -> bytes:
    amplitude = _FULL_SCALE_PEAK * volume_percent / 100.0
    out = array("h")
    for freq, dur, gap in _notes(name):
        n = round(dur * sample_rate)
        w = 2 * math.pi * freq
        tone = [math.sin(w * (i / sample_rate)) for i in range(n)]
        fade = min(round(_FADE_S * sample_rate), n // 2)
        for i in range(fade):
            ramp = 0.5 - 0.5 * math.cos(math.pi * i / fade)
            tone[i] *= ramp
            tone[n - 1 - i] *= ramp
        out.extend(round(x * amplitude) for x in tone)
        out.extend([0] * round(gap * sample_rate))
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()
