"""The echo reference's timeline (core/echo_reference.py): the ring that never hands out a sample twice nor keeps
one that came too late, the stream clocks that ignore timing jitter, and the aligners that keep blocks
contiguous and move only when they must."""

from __future__ import annotations

import numpy as np
import pytest

from voiceterm.core.echo_reference import (
    CaptureAligner,
    PlaybackAligner,
    ReferenceRing,
    StreamAnchor,
    StreamClock,
)


def ramp(start: int, n: int) -> np.ndarray:
    return (np.arange(start, start + n) % 30000 + 1).astype(np.int16)


def test_the_ring_hands_out_what_was_written_where_it_was_written() -> None:
    ring = ReferenceRing(1000)
    ring.write(100, ramp(100, 300))
    assert ring.read(0, 100).tolist() == [0] * 100  # never written: silence
    assert np.array_equal(ring.read(100, 200), ramp(100, 200))
    assert np.array_equal(ring.read(300, 150), np.concatenate((ramp(300, 100), np.zeros(50, np.int16))))
    assert ring.unread_from == 450


def test_a_read_consumes_so_a_position_is_never_read_twice() -> None:
    ring = ReferenceRing(1000)
    ring.write(0, ramp(0, 200))
    ring.read(0, 200)
    assert not ring.read(0, 200).any()  # a reader going back gets silence, not the old samples again


def test_sound_written_after_its_slot_was_read_is_late_counted_and_dropped() -> None:
    ring = ReferenceRing(1000)
    ring.read(0, 320)
    ring.write(200, ramp(200, 240))  # 120 samples late, 120 in time
    assert ring.counters.late_samples == 120
    assert np.array_equal(ring.read(320, 120), ramp(320, 120))
    ring.write(400, np.zeros(100, np.int16))  # silence that comes late missed nothing
    assert ring.counters.late_samples == 120
    assert ring.counters.late_silence == 40


def test_a_stalled_reader_loses_the_oldest_unread_samples_and_they_are_counted() -> None:
    ring = ReferenceRing(1000)
    ring.read(0, 10)
    ring.write(10, ramp(10, 1500))  # 500 more than fit
    assert ring.counters.overflow_samples == 500
    assert np.array_equal(ring.read(510, 1000), ramp(510, 1000))


def test_before_the_first_read_the_ring_keeps_the_newest_samples_without_counting_drops() -> None:
    ring = ReferenceRing(1000)
    ring.write(0, ramp(0, 2500))
    assert ring.counters.overflow_samples == 0
    assert np.array_equal(ring.read(1500, 1000), ramp(1500, 1000))


def test_a_flush_silences_everything_planned_after_it_and_wraps_around() -> None:
    ring = ReferenceRing(1000)
    ring.read(0, 900)
    ring.write(900, ramp(900, 900))  # wraps around the end of the storage
    ring.clear_from(1300)
    out = ring.read(900, 900)
    assert np.array_equal(out[:400], ramp(900, 400))
    assert not out[400:].any()


def test_silence_costs_nothing_past_the_last_sound_and_overwrites_sound_before_it() -> None:
    ring = ReferenceRing(1000)
    ring.read(0, 100)
    ring.write(100, ramp(100, 200))
    assert ring.sound_end == 300
    ring.write_silence(300, 400)  # past the last sound: nothing to store
    assert ring.sound_end == 300 and ring.counters.written_samples == 600
    ring.write_silence(250, 20)  # over sound (a stream that moved): the slots are silenced
    out = ring.read(100, 600)
    assert np.array_equal(out[:150], ramp(100, 150)) and not out[150:170].any()
    assert np.array_equal(out[170:200], ramp(270, 30)) and not out[200:].any()
    silent = ring.read(700, 100)  # nothing but silence ahead: a shared zero array, never a copy
    assert not silent.any() and not silent.flags.writeable
    ring.write_silence(600, 50)  # late silence missed nothing
    assert ring.counters.late_silence == 50 and ring.counters.late_samples == 0


def test_silence_past_a_stalled_reader_pushes_the_oldest_out_and_counts_it() -> None:
    ring = ReferenceRing(1000)
    ring.read(0, 10)
    ring.write(10, ramp(10, 500))
    ring.write_silence(510, 1000)
    assert ring.counters.overflow_samples == 500
    assert not ring.read(510, 1000).any()  # the sound pushed out is gone from the storage too
    ring.write(1510, ramp(0, 10))
    assert np.array_equal(ring.read(1510, 10), ramp(0, 10))


def test_a_reader_that_paused_starts_afresh_without_late_or_overflow_counts() -> None:
    ring = ReferenceRing(1000)
    ring.read(0, 100)
    ring.restart_reader()
    ring.write(5000, ramp(5000, 1500))  # far ahead: no one was reading
    ring.write(4000, ramp(4000, 10))
    assert ring.counters.overflow_samples == 0 and ring.counters.late_samples == 0
    assert np.array_equal(ring.read(5600, 100), ramp(5600, 100))


def test_a_flush_moves_the_last_sound_back() -> None:
    ring = ReferenceRing(1000)
    ring.read(0, 100)
    ring.write(100, ramp(100, 500))
    ring.clear_from(300)
    assert ring.sound_end == 300
    assert np.array_equal(ring.read(100, 500)[:200], ramp(100, 200))


def test_the_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReferenceRing(0)


def test_the_stream_clock_takes_the_earliest_observation_and_forgets_it_after_the_window() -> None:
    clock = StreamClock(1000)
    rng = np.random.default_rng(1)
    start = 10.0
    estimates = []
    for k in range(1, 200):  # reads of 20 samples (20 ms) return 0.5-6 ms after their data
        estimates.append(clock.observe(20 * k, start + 0.02 * k + rng.uniform(0.0005, 0.006)))
    assert start < estimates[-1] < start + 0.001
    # One early outlier wins until its block leaves the window ...
    assert clock.observe(20 * 200, start + 4.0 - 0.003) == pytest.approx(start - 0.003)
    window_s = StreamClock.BLOCK_S * (StreamClock.BLOCKS + 1)
    for k in range(201, 200 + round(window_s / 0.02) + 1):
        last = clock.observe(20 * k, start + 0.02 * k + 0.002)
    assert last == pytest.approx(start + 0.002)  # ... and no longer


def test_an_anchor_holds_still_inside_its_band_and_moves_out_of_it() -> None:
    anchor = StreamAnchor(1000, late_sign=-1, unsafe=0.004, excess=0.025, settle=100)
    anchor.update(0, 5.0)
    anchor.update(50, 5.05 - 0.001)  # still settling: follows the estimate
    assert anchor.start == pytest.approx(4.999)
    assert anchor.moves == 0
    anchor.update(200, 5.2 + 0.003)  # later by 4 ms: the safe side, within the band
    assert anchor.start == pytest.approx(4.999)
    anchor.update(300, 5.3 - 0.006)  # earlier by 5 ms: the unsafe side, beyond 4 ms: moves at once
    assert anchor.start == pytest.approx(4.994)
    assert anchor.moves == 1


def test_capture_chunks_are_contiguous_despite_jittery_stamps() -> None:
    aligner = CaptureAligner(epoch=0.0, rate=16000, unsafe_s=0.004, excess_s=0.008, settle_s=0.5)
    rng = np.random.default_rng(2)
    positions = []
    for k in range(1, 500):
        pos, _ = aligner.locate(320, 1.0 + 0.02 * k + rng.uniform(0.0005, 0.003))
        positions.append(pos)
    steady = np.diff(positions[100:])
    assert set(steady.tolist()) == {320}
    assert aligner.realigns == 0
    # The first sample sits at 1.0 s (16000), found within the stamps' smallest lag.
    assert 16000 <= positions[-1] - 320 * 498 <= 16000 + 0.001 * 16000


def test_capture_realigns_when_periods_were_lost_and_it_is_told() -> None:
    aligner = CaptureAligner(epoch=0.0, rate=16000, unsafe_s=0.004, excess_s=0.008, settle_s=0.5)
    for k in range(1, 100):
        pos, _ = aligner.locate(320, 0.02 * k + 0.001)
    aligner.reset()  # an overrun: 5 periods gone
    pos, _ = aligner.locate(320, 0.02 * 105 + 0.001)
    assert pos == 320 * 104 + 16  # the stamp came 1 ms after the data: the reference leads by that


def test_playback_blocks_are_placed_early_by_the_margin_and_stay_contiguous() -> None:
    aligner = PlaybackAligner(
        epoch=0.0, mic_rate=16000, device_rate=24000, margin=160, unsafe_s=0.004, excess_s=0.025, settle_s=0.5
    )
    rng = np.random.default_rng(3)
    placed = []
    for k in range(300):  # block k truly plays at 2 s + 20 ms k; the fill over-reports by 0-8 ms
        pos, _ = aligner.place(480, 2.0 + 0.02 * k + rng.uniform(0.0, 0.008))
        placed.append(pos)
    steady = np.diff(placed[50:])
    assert set(steady.tolist()) <= {319, 320, 321}
    assert aligner.reanchors == 0
    # Never later than the truth minus the margin plus the smallest over-report seen.
    for k in range(50, 300):
        assert placed[k] <= (2.0 + 0.02 * k) * 16000 - 160 + 0.001 * 16000


def test_playback_restarts_from_the_new_clock_after_a_drop() -> None:
    aligner = PlaybackAligner(
        epoch=0.0, mic_rate=16000, device_rate=24000, margin=0, unsafe_s=0.004, excess_s=0.025, settle_s=0.5
    )
    for k in range(100):
        aligner.place(480, 1.0 + 0.02 * k)
    aligner.reset()
    pos, anchored = aligner.place(480, 10.0)
    assert anchored and pos == 160000


def test_a_move_that_only_trims_the_lead_waits_for_a_quiet_far_end_and_a_late_one_never_waits() -> None:
    anchor = StreamAnchor(1000, late_sign=+1, unsafe=0.010, excess=0.025, settle=100)

    def read(samples: int, lag: float, quiet: bool) -> bool:  # a read of `samples` returned `lag` late
        return anchor.update(samples, 1.0 + samples / 1000 + lag, quiet=quiet)

    read(20, 0.030, True)  # settling on reads that came 30 ms after their data
    read(200, 0.030, False)
    # A prompt read: the estimate is 28 ms earlier, beyond `excess`. The bot is speaking: held, counted.
    assert read(300, 0.002, False) is False
    assert anchor.start == pytest.approx(1.030) and anchor.deferred == 1 and anchor.moves == 0
    assert read(400, 0.002, True) is True  # in the next pause it moves
    assert anchor.start == pytest.approx(1.002) and anchor.moves == 1
    # A move toward a late reference is made at once, speech or not.
    anchor.clock.reset()  # (the window has forgotten the prompt reads)
    assert read(600, 0.015, False) is True
    assert anchor.start == pytest.approx(1.015) and anchor.moves == 2


def test_capture_and_playback_hold_their_positions_while_the_far_end_sounds() -> None:
    capture = CaptureAligner(epoch=0.0, rate=16000, unsafe_s=0.010, excess_s=0.025, settle_s=0.5)
    for k in range(1, 60):  # settled on reads that returned 30 ms late
        last, _ = capture.locate(320, 0.02 * k + 0.030)
    pos, moved = capture.locate(320, 0.02 * 60 + 0.001, quiet=False)
    assert not moved and pos == last + 320 and capture.deferred == 1
    playback = PlaybackAligner(
        epoch=0.0, mic_rate=16000, device_rate=24000, margin=0, unsafe_s=0.004, excess_s=0.025, settle_s=0.5
    )
    for k in range(60):
        first, _ = playback.place(480, 1.0 + 0.02 * k)
    # The device's latency grows by 30 ms while the bot speaks; once the clock's window has forgotten the
    # earlier blocks, the estimate says the reference leads by 30 ms more than it needs: the blocks stay put.
    blocks = 60 + round((StreamClock.BLOCK_S * (StreamClock.BLOCKS + 2)) / 0.02)
    for k in range(60, blocks):
        pos, moved = playback.place(480, 1.0 + 0.02 * k + 0.030, quiet=False)
        assert not moved and abs(pos - (first + 320 * (k - 59))) <= 1  # contiguous (floored)
    assert playback.deferred > 0 and playback.reanchors == 0
    pos, moved = playback.place(480, 1.0 + 0.02 * blocks + 0.030, quiet=True)  # a pause: it moves now
    assert moved and playback.reanchors == 1
