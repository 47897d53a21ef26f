"""G.711 μ-law, the Twilio media stream's audio codec, on signed 16-bit little-endian PCM.

No ``audioop`` (removed in Python 3.13). It follows the ITU-T G.191 reference implementation of G.711 bit
for bit: the 16-bit sample is taken as a left-justified 14-bit value and negative samples are folded with
the one's complement (so -1 encodes like 0, as a sign-magnitude code). CPython's old ``audioop.lin2ulaw``
rounds negative samples the other way, and so lands one code away for some negative inputs; decoding is
identical. It lives in ``protocol/`` because it is part of a wire format: the protocol layer imports nothing
above it. numpy is imported on first use (the tables are numpy arrays), so a daemon that never speaks
μ-law never loads it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["mulaw_decode", "mulaw_encode"]

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
