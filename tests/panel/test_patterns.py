"""LED patterns as data: the level at every time, the next change, binary and RGB projections."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceterm.core.patterns import (
    PULSE_MIN_STEP_S,
    Blink,
    Flash,
    Off,
    On,
    Pulse,
    color_at,
    describe,
    level_at,
    next_change,
    period,
)


def test_constant_patterns_never_change() -> None:
    assert level_at(Off(), 5.0) == 0.0
    assert level_at(On(), 5.0) == 1.0
    assert level_at(On(0.2), 5.0) == 0.2
    assert level_at(On(0.2), 5.0, binary=True) == 1.0  # a plain LED cannot dim: on is on
    for p in (Off(), On(), On(0.2)):
        assert next_change(p, 3.0) is None
        assert period(p) is None


def test_blink_phases_and_boundaries() -> None:
    b = Blink(100, 300)
    assert period(b) == pytest.approx(0.4)
    assert [level_at(b, t) for t in (0.0, 0.05, 0.099, 0.1, 0.2, 0.399, 0.4, 0.45)] == [
        1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0,
    ]  # fmt: skip
    assert next_change(b, 0.0) == pytest.approx(0.1)
    assert next_change(b, 0.1) == pytest.approx(0.4)
    assert next_change(b, 0.25) == pytest.approx(0.4)
    assert next_change(b, 0.4) == pytest.approx(0.5)
    assert next_change(b, 10.05) == pytest.approx(10.1)


def test_flash_gives_n_flashes_then_a_gap() -> None:
    f = Flash(3, 100, 100, 1000)
    assert period(f) == pytest.approx(1.6)
    samples = [level_at(f, k * 0.1 + 0.05) for k in range(16)]
    assert samples == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0] + [0.0] * 10
    # the changes are at every flash edge, then the period end
    t, changes = 0.0, []
    while t < 1.6 - 1e-9:
        t = next_change(f, t)
        changes.append(round(t, 3))
    assert changes == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.6]


def test_pulse_breathes_from_bright_and_quantises_to_its_render_step() -> None:
    p = Pulse(800)
    step = max(0.8 / 40, PULSE_MIN_STEP_S)
    assert level_at(p, 0.0) == pytest.approx(1.0)
    assert level_at(p, 0.4) == pytest.approx(0.0)
    assert level_at(p, 0.8) == pytest.approx(1.0)
    # constant within a step, so the task's writes at step boundaries are the whole story
    assert level_at(p, 0.2) == level_at(p, 0.2 + step * 0.9)
    assert next_change(p, 0.0) == pytest.approx(step)
    assert next_change(p, 0.79) == pytest.approx(0.8)
    # binary: a square wave, on for the first half
    assert level_at(p, 0.1, binary=True) == 1.0
    assert level_at(p, 0.5, binary=True) == 0.0
    assert next_change(p, 0.1, binary=True) == pytest.approx(0.4)
    assert next_change(p, 0.5, binary=True) == pytest.approx(0.8)


def test_colour_scales_with_the_level_and_binary_rgb_is_all_or_nothing() -> None:
    assert color_at(On(0.5), (1.0, 0.4, 0.0), 0.0) == (0.5, 0.2, 0.0)
    assert color_at(On(0.5), (1.0, 0.4, 0.0), 0.0, binary=True) == (1.0, 1.0, 0.0)
    assert color_at(Blink(100, 100), (0.0, 1.0, 0.0), 0.15) == (0.0, 0.0, 0.0)


def test_describe_names_each_pattern() -> None:
    assert describe(Off()) == "off"
    assert describe(On()) == "on"
    assert describe(Blink(500, 500)) == "blink 500/500ms"
    assert describe(Pulse(800)) == "pulse 800ms"
    assert describe(Flash(2, 80, 120, 1800)).startswith("flash 2x")


patterns = st.one_of(
    st.builds(Blink, st.integers(10, 2000), st.integers(10, 2000)),
    st.builds(Pulse, st.integers(100, 5000)),
    st.builds(Flash, st.integers(1, 5), st.integers(10, 500), st.integers(10, 500), st.integers(0, 3000)),
)


@given(patterns, st.floats(0, 100), st.booleans(), st.floats(0.0, 1.0))
def test_level_is_constant_until_next_change(pattern, t, binary, frac) -> None:
    """The LED task sleeps until next_change: nothing may happen in between, and next_change is in the future
    by at most one period."""
    nxt = next_change(pattern, t, binary=binary)
    assert nxt is not None
    assert t < nxt <= t + period(pattern) + 1e-6
    mid = t + (nxt - t) * frac * 0.999
    assert level_at(pattern, mid, binary=binary) == pytest.approx(level_at(pattern, t, binary=binary))


@given(patterns, st.floats(0, 100), st.booleans())
def test_levels_are_in_range_and_periodic(pattern, t, binary) -> None:
    p = period(pattern)
    mid = (t + next_change(pattern, t, binary=binary)) / 2  # inside a constant stretch, away from any edge
    level = level_at(pattern, mid, binary=binary)
    assert 0.0 <= level <= 1.0
    assert level_at(pattern, mid + p, binary=binary) == pytest.approx(level)
    assert level_at(pattern, mid + 7 * p, binary=binary) == pytest.approx(level)
