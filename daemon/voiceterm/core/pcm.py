"""PCM helpers on signed 16-bit little-endian audio: gain, level in dBFS, silence.

Pure numpy, no ``audioop`` (removed in Python 3.13). G.711 μ-law, a wire codec, is in
``voiceterm.protocol.mulaw``.
"""

from __future__ import annotations

import math

import numpy as np

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
_LE_I16 = np.dtype("<i2")


def _samples(pcm16: bytes, what: str) -> np.ndarray:
    if len(pcm16) % 2:
        raise ValueError(f"{what}: PCM16 needs an even byte count, got {len(pcm16)}")
    return np.frombuffer(pcm16, dtype=_LE_I16)


def scale(pcm16: bytes, factor: float) -> bytes:
    """Multiply every sample by ``factor``, rounding to nearest and saturating at the int16 limits.
    A factor of exactly 1.0 returns the input object itself."""
    if factor == 1.0:
        return pcm16
    if not math.isfinite(factor):
        raise ValueError(f"scale: factor must be finite, got {factor!r}")
    x = _samples(pcm16, "scale")
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
    x = _samples(pcm16, "level_dbfs")
    if x.size == 0:
        return DBFS_FLOOR, DBFS_FLOOR
    xf = x.astype(np.float64)
    mean_square = float(np.dot(xf, xf)) / x.size
    peak = float(np.max(np.abs(xf)))
    return _to_dbfs(math.sqrt(mean_square)), _to_dbfs(peak)


def _to_dbfs(amplitude: float) -> float:
    if amplitude <= 0.0:
        return DBFS_FLOOR
    return max(DBFS_FLOOR, 20.0 * math.log10(amplitude / _FULL_SCALE))


def silence(n_frames: int, num_channels: int = 1) -> bytes:
    """``n_frames`` frames of digital silence."""
    if n_frames < 0 or num_channels < 1:
        raise ValueError(f"silence: need n_frames >= 0 and num_channels >= 1, got {n_frames}, {num_channels}")
    return bytes(2 * n_frames * num_channels)
