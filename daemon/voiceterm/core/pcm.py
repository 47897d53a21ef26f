"""PCM helpers on signed 16-bit little-endian audio: G.711 μ-law, gain, level in dBFS, silence.

No ``audioop`` (removed in Python 3.13). numpy is imported by the functions that need it, on first use:
levels and silence are plain Python (a meter reads a chunk's level a few times a second), so a daemon that
applies no gain and speaks no μ-law never loads it. μ-law follows the ITU-T G.191 reference
implementation of G.711 bit for bit: the 16-bit sample is taken as a left-justified 14-bit value and
negative samples are folded with the one's complement (so -1 encodes like 0, as a sign-magnitude
code). CPython's old ``audioop.lin2ulaw`` rounds negative samples the other way, and so lands one code
away for some negative inputs; decoding is identical.
"""

from __future__ import annotations

import math
import operator
import sys
from array import array
from functools import lru_cache
from typing import Any

__all__ = [
    "DBFS_FLOOR",
    "apply_gain_db",
    "level_dbfs",
    "mulaw_decode",
    "mulaw_encode",
    "scale",
    "silence",
]

DBFS_FLOOR = -120.0
"""The level reported for digital silence (and anything quieter): well below one LSB (-90.3 dBFS)."""

_FULL_SCALE = 32768.0
_LE_I16 = "<i2"
_LE_U16 = "<u2"


def _np() -> Any:
    import numpy

    return numpy


def _build_encode_table() -> Any:
    """The μ-law code of every 16-bit sample, indexed by the sample's bit pattern (as uint16)."""
    np = _np()
    x = np.arange(65536, dtype=np.int32)
    x = np.where(x >= 32768, x - 65536, x)  # bit pattern -> signed sample
    negative = x < 0
    # G.191 ulaw_compress: 14-bit magnitude (one's complement for negatives) plus the bias 33.
    absno = np.where(negative, (~x) >> 2, x >> 2) + 33
    absno = np.minimum(absno, 0x1FFF)
    # segno = 1 + bit length of (absno >> 6): the segment, 1..8.
    segno = np.ones_like(absno)
    i = absno >> 6
    while np.any(i):
        segno += i != 0
        i >>= 1
    high = 8 - segno
    low = 15 - ((absno >> segno) & 0xF)
    code = (high << 4) | low
    code = np.where(negative, code, code | 0x80)
    return code.astype(np.uint8)


def _build_decode_table() -> Any:
    """The 16-bit sample of every μ-law code (G.191 ulaw_expand)."""
    np = _np()
    codes = np.arange(256, dtype=np.int32)
    sign = np.where(codes < 0x80, -1, 1)
    mantissa = ~codes & 0xFF  # one's complement of the code
    exponent = (mantissa >> 4) & 0x7
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return (sign * magnitude).astype(_LE_I16)


@lru_cache(maxsize=1)
def _tables() -> tuple[Any, Any]:
    # Built on first use (about a millisecond): only Twilio mode needs them.
    return _build_encode_table(), _build_decode_table()


def _samples(pcm16: bytes, what: str) -> Any:
    if len(pcm16) % 2:
        raise ValueError(f"{what}: PCM16 needs an even byte count, got {len(pcm16)}")
    return _np().frombuffer(pcm16, dtype=_LE_I16)


def mulaw_encode(pcm16: bytes) -> bytes:
    """G.711 μ-law: one code byte per 16-bit sample."""
    if len(pcm16) % 2:
        raise ValueError(f"mulaw_encode: PCM16 needs an even byte count, got {len(pcm16)}")
    table, _ = _tables()
    return table[_np().frombuffer(pcm16, dtype=_LE_U16)].tobytes()


def mulaw_decode(ulaw: bytes) -> bytes:
    """G.711 μ-law codes to 16-bit little-endian samples."""
    _, table = _tables()
    np = _np()
    return table[np.frombuffer(ulaw, dtype=np.uint8)].tobytes()


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
