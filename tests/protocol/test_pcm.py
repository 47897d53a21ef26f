"""protocol.mulaw: G.711 μ-law exact for every input; core.pcm: saturating gain, levels in dBFS, silence."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceterm.core.pcm import (
    DBFS_FLOOR,
    apply_gain_db,
    level_dbfs,
    scale,
    silence,
)
from voiceterm.protocol.mulaw import mulaw_decode, mulaw_encode

ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2")
ALL_CODES = bytes(range(256))

# ---------------------------------------------------------------------------------------------------
# Reference 1: ITU-T G.711 Table 2a, built from its decision values. Magnitudes are in the 14-bit
# units of the table (0 ... 8159); segment 0 has 16 intervals of width 2 (the first one [0, 1)), and
# segments 1..7 start at 31, 95, 223, 479, 991, 2015, 4063 with steps 4 ... 256, 16 intervals each.
SEGMENT_STARTS = [31, 95, 223, 479, 991, 2015, 4063]
DECISIONS = [1 + 2 * j for j in range(15)] + [
    start + (4 << k) * j for k, start in enumerate(SEGMENT_STARTS) for j in range(16)
]
assert len(DECISIONS) == 127 and sorted(DECISIONS) == DECISIONS
UPPER = [*DECISIONS, 8159]  # the top decision value: overload beyond it


def table_magnitude_and_sign(x: int) -> tuple[int, bool]:
    """16-bit two's complement -> (14-bit magnitude, negative), G.191's one's-complement folding."""
    return ((~x) >> 2, True) if x < 0 else (x >> 2, False)


def table_encode(x: int) -> int:
    magnitude, negative = table_magnitude_and_sign(x)
    n = bisect.bisect_right(DECISIONS, magnitude)  # interval index 0..127
    return (0x7F - n) if negative else (0xFF - n)


def table_decode(code: int) -> int:
    n = 0x7F - (code & 0x7F)
    if n == 0:
        value = 0  # Table 2a: the first interval decodes to 0
    else:
        low, high = DECISIONS[n - 1], UPPER[n]
        value = 4 * (low + high) // 2  # midpoint, back in 16-bit units
    return value if code & 0x80 else -value


# Reference 2: the ITU-T G.191 (STL) ulaw_compress / ulaw_expand loops, transcribed bit by bit.
def g191_compress(x: int) -> int:
    absno = (((~x) >> 2) + 33) if x < 0 else ((x >> 2) + 33)
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    code = (high_nibble << 4) | low_nibble
    return code | 0x0080 if x >= 0 else code


def g191_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code & 0xFF
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def test_mulaw_encode_matches_g711_table_and_g191_for_all_65536_samples():
    ours = mulaw_encode(ALL_SAMPLES.tobytes())
    assert len(ours) == 65536
    table = bytes(table_encode(int(x)) for x in ALL_SAMPLES)
    g191 = bytes(g191_compress(int(x)) for x in ALL_SAMPLES)
    assert table == g191  # the two references agree with each other ...
    mismatches = [int(x) for x, a, b in zip(ALL_SAMPLES, ours, table, strict=True) if a != b]
    assert mismatches == []  # ... and with us


def test_mulaw_decode_matches_g711_table_and_g191_for_all_256_codes():
    ours = np.frombuffer(mulaw_decode(ALL_CODES), dtype="<i2").tolist()
    assert ours == [table_decode(c) for c in range(256)]
    assert ours == [g191_expand(c) for c in range(256)]


def test_mulaw_anchor_values():
    # Well-known G.711 points: zero, the largest codes, and both zeros.
    assert mulaw_encode(np.array([0, 32767, -32768, -1], "<i2").tobytes()) == bytes([0xFF, 0x80, 0x00, 0x7F])
    assert np.frombuffer(mulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00])), "<i2").tolist() == [
        0,
        0,
        32124,
        -32124,
    ]


def test_mulaw_round_trip_error_is_within_half_a_step():
    decoded = np.frombuffer(mulaw_decode(mulaw_encode(ALL_SAMPLES.tobytes())), "<i2").astype(np.int64)
    x = ALL_SAMPLES.astype(np.int64)
    inside = np.abs(x) <= 4 * 8159  # beyond that G.711 overloads (clips)
    err = np.abs(decoded[inside] - x[inside])
    # Half the widest step (256 * 4 / 2 = 512) plus the 14-bit truncation (up to 4).
    assert err.max() <= 516
    # And relative to the signal, μ-law keeps error near 1/32 of the magnitude once out of segment 0.
    big = np.abs(x) >= 1024
    assert np.max(np.abs(decoded[big] - x[big]) / np.abs(x[big])) < 0.07
    # Encoding is monotonic in the sample value.
    assert np.all(np.diff(decoded) >= 0)


def test_mulaw_rejects_odd_byte_count_and_handles_empty():
    with pytest.raises(ValueError, match="even byte count"):
        mulaw_encode(b"\x00\x01\x02")
    assert mulaw_encode(b"") == b""
    assert mulaw_decode(b"") == b""


def samples(*values: int) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def values(pcm: bytes) -> list[int]:
    return np.frombuffer(pcm, "<i2").tolist()


def test_scale_by_one_returns_the_same_object():
    pcm = samples(1, -2, 3)
    assert scale(pcm, 1.0) is pcm
    assert apply_gain_db(pcm, 0.0) is pcm


def test_scale_rounds_and_saturates():
    assert values(scale(samples(100, -100, 3, 20000, -20000), 2.0)) == [200, -200, 6, 32767, -32768]
    assert values(scale(samples(3, -3, 5), 0.5)) == [2, -2, 2]  # round half to even, like np.rint
    assert values(scale(samples(-32768, 32767), -1.0)) == [32767, -32767]
    assert values(scale(samples(1234, -1234), 0.0)) == [0, 0]


def test_apply_gain_db():
    assert values(apply_gain_db(samples(1000, -1000), 20.0)) == [10000, -10000]
    assert values(apply_gain_db(samples(10000, -10000), -20.0)) == [1000, -1000]
    assert values(apply_gain_db(samples(20000, -20000), 6.0)) == [32767, -32768]
    assert values(apply_gain_db(samples(16384), 6.020599913279624)) == [32767]  # 2x saturates


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_gain_and_scale_refuse_non_finite(bad):
    with pytest.raises(ValueError, match="finite"):
        scale(samples(1), bad)
    with pytest.raises(ValueError, match="finite"):
        apply_gain_db(samples(1), bad)


def test_scale_rejects_odd_byte_count():
    with pytest.raises(ValueError, match="even byte count"):
        scale(b"\x01", 2.0)


@given(st.lists(st.integers(-32768, 32767), max_size=200), st.floats(-8.0, 8.0, allow_nan=False))
def test_scale_matches_exact_arithmetic(xs, factor):
    out = values(scale(samples(*xs), factor))
    if factor == 1.0:
        assert out == xs
        return
    expected = [max(-32768, min(32767, round(x * factor))) for x in xs]
    # Python's round() is half-to-even like np.rint; the float64 product is exact enough to agree.
    assert out == expected


def test_level_dbfs_reference_signals():
    assert level_dbfs(b"") == (DBFS_FLOOR, DBFS_FLOOR)
    assert level_dbfs(silence(480)) == (DBFS_FLOOR, DBFS_FLOOR)
    rms, peak = level_dbfs(samples(*([32767, -32768] * 100)))  # full-scale square
    assert rms == pytest.approx(0.0, abs=1e-3)
    assert peak == 0.0
    rms, peak = level_dbfs(samples(*([16384, -16384] * 100)))  # half scale
    assert rms == pytest.approx(-6.0206, abs=1e-3)
    assert peak == pytest.approx(-6.0206, abs=1e-3)
    t = np.arange(48000)
    sine = np.round(np.sin(2 * np.pi * 1000 * t / 48000) * 32767).astype("<i2").tobytes()
    rms, peak = level_dbfs(sine)
    assert rms == pytest.approx(-3.0103, abs=1e-3)  # a full-scale sine is 3 dB below the square
    assert peak == pytest.approx(0.0, abs=1e-3)
    rms, peak = level_dbfs(samples(1, *([0] * 99)))
    assert peak == pytest.approx(-90.309, abs=1e-3)  # one LSB
    assert rms == pytest.approx(-110.309, abs=1e-3)
    one_in_a_million = np.zeros(10**6, "<i2")
    one_in_a_million[0] = 1
    # RMS of -150 dBFS is clamped to the floor; the peak is still one LSB.
    assert level_dbfs(one_in_a_million.tobytes()) == (DBFS_FLOOR, pytest.approx(-90.309, abs=1e-3))


def test_level_dbfs_rejects_odd_byte_count():
    with pytest.raises(ValueError, match="even byte count"):
        level_dbfs(b"\x00")


def test_silence():
    assert silence(0) == b""
    assert silence(160) == bytes(320)
    assert silence(10, num_channels=2) == bytes(40)
    with pytest.raises(ValueError):
        silence(-1)
