"""The wall-clock pacers that stand in for a device clock on unclocked PCMs, and the unclocked detector."""

from __future__ import annotations

import pytest

from voiceterm.io.alsa_pacing import CapturePacer, PlaybackPacer, UnclockedDetector


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_playback_pacer_drains_at_the_rate() -> None:
    now = FakeTime()
    p = PlaybackPacer(1000, now=now)
    assert p.fill() == 0
    p.wrote(100)
    assert p.fill() == 100
    now.t += 0.030
    assert p.fill() == 70
    p.wrote(50)
    assert p.fill() == 120
    now.t += 0.119
    assert p.fill() == 1
    assert p.underruns == 0


def test_playback_pacer_underruns_when_the_writer_is_late() -> None:
    now = FakeTime()
    p = PlaybackPacer(1000, now=now)
    p.wrote(100)
    now.t += 0.5
    assert p.fill() == 0
    assert p.underruns == 1
    # The emulated device restarts from empty: the next write starts a new clock.
    p.wrote(40)
    assert p.fill() == 40
    now.t += 0.010
    assert p.fill() == 30


def test_playback_pacer_reset_is_a_drop() -> None:
    now = FakeTime()
    p = PlaybackPacer(8000, now=now)
    p.wrote(800)
    p.reset()
    assert p.fill() == 0
    assert p.underruns == 0


def test_capture_pacer_releases_one_period_per_period() -> None:
    now = FakeTime()
    c = CapturePacer(0.02, now=now)
    assert c.delay() == pytest.approx(0.02)
    now.t += 0.02
    assert c.delay() == 0
    c.consumed()
    assert c.delay() == pytest.approx(0.02)
    now.t += 0.005
    assert c.delay() == pytest.approx(0.015)
    # A reader that is late catches up without waiting ...
    now.t += 0.1
    c.consumed()
    assert c.delay() == 0
    c.consumed()
    assert c.delay() == 0


def test_capture_pacer_resynchronises_after_a_long_stall() -> None:
    now = FakeTime()
    c = CapturePacer(0.02, max_lag_periods=4, now=now)
    c.delay()
    now.t += 0.02
    c.consumed()
    now.t += 10.0  # the reader stalled for 10 s
    assert c.delay() == 0
    c.consumed()
    assert c.delay() == pytest.approx(0.02)  # back to real time, not 500 periods of catching up


def test_unclocked_detector_needs_consecutive_fast_operations() -> None:
    d = UnclockedDetector(3)
    assert not d.observe(True)
    assert not d.observe(True)
    assert not d.observe(False)  # a clocked read resets the streak
    assert not d.observe(True)
    assert not d.observe(True)
    assert d.observe(True)
    assert d.tripped
    assert not d.observe(True)  # reports once
