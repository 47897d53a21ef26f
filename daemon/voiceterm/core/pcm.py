"""PCM helpers on signed 16-bit little-endian audio: gain, level in dBFS, silence.

No ``audioop`` (removed in Python 3.13). numpy is imported by the functions that need it, on first use:
levels and silence are plain Python (a meter reads a chunk's level a few times a second), so a daemon that
applies no gain never loads it. G.711 μ-law, a wire codec, is in ``voiceterm.protocol.mulaw``.
"""

from __future__ import annotations

import math
import operator
import sys
from array import array
from typing import Any

__all__ = [
    "DBFS_FLOOR",
    "apply_gain_db",
    "level_dbfs",
    "scale",
    "silence",
]

DBFS_FLOOR = -120.0
"""The level reported for digital silence (and anything quieter): well below one LSB (-90.3 dBFS)."""

_FULL_SCALE = 32768.0
_LE_I16 = "<i2"


def _np() -> Any:
    import numpy

    return numpy


def _samples(pcm16: bytes, what: str) -> Any:
    if len(pcm16) % 2:
        raise ValueError(f"{what}: PCM16 needs an even byte count, got {len(pcm16)}")
    return _np().frombuffer(pcm16, dtype=_LE_I16)


def scale(pcm16: bytes, factor: float) -> bytes:
    """Multiply every sample by ``factor``, rounding to nearest and saturating at the int16 limits.
    A factor of exactly 1.0 returns the input object itself."""
    if factor == 1.0:
        return pcm16
    if not math.isfinite(factor):
        raise ValueError(f"scale: factor must be finite, got {factor!r}")
    x = _samples(pcm16, "scale")
    np = _np()
    # float64: exact for every int16 times any factor up to rounding of the product itself.
    y = np.rint(x * float(factor))
    np.clip(y, -32768, 32767, out=y)
    return y.astype(_LE_I16).tobytes()


def apply_gain_db(pcm16: bytes, gain_db: float) -> bytes:
    """Apply a gain in decibels (saturating). 0 dB returns the input unchanged."""
    if not math.isfinite(gain_db):
        raise ValueError(f"apply_gain_db: gain must be finite, got {gain_db!r}")
    if gain_db == 0:
        return pcm16
    return scale(pcm16, 10.0 ** (gain_db / 20.0))


def level_dbfs(pcm16: bytes) -> tuple[float, float]:
    """(RMS, peak) level in dBFS, full scale = 32768, so a full-scale square wave reads 0 dBFS.
    Digital silence and empty input read ``DBFS_FLOOR``."""
    if len(pcm16) % 2:
        raise ValueError(f"level_dbfs: PCM16 needs an even byte count, got {len(pcm16)}")
    if not pcm16:
        return DBFS_FLOOR, DBFS_FLOOR
    x = array("h", pcm16)
    if sys.byteorder != "little":
        x.byteswap()
    mean_square = sum(map(operator.mul, x, x)) / len(x)  # an exact integer sum
    high, low = max(x), min(x)
    peak = high if high >= -low else -low
    return _to_dbfs(math.sqrt(mean_square)), _to_dbfs(float(peak))


def _to_dbfs(amplitude: float) -> float:
    if amplitude <= 0.0:
        return DBFS_FLOOR
    return max(DBFS_FLOOR, 20.0 * math.log10(amplitude / _FULL_SCALE))


def silence(n_frames: int, num_channels: int = 1) -> bytes:
    """``n_frames`` frames of digital silence."""
    if n_frames < 0 or num_channels < 1:
        raise ValueError(f"silence: need n_frames >= 0 and num_channels >= 1, got {n_frames}, {num_channels}")
    return bytes(2 * n_frames * num_channels)
