"""The playout buffer: pre-roll, cap, underrun, flush, and that audio comes out exactly as it went in."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceterm.core.playout import PlayoutBuffer, PlayoutState


def ramp(start: int, n: int) -> np.ndarray:
    """Frames whose values are their own index (mod int16), so order and loss are visible."""
    return ((np.arange(start, start + n) % 30000) + 1).astype(np.int16)


class Samples:
    """The buffer's bytes (S16_LE) seen as int16 arrays, so the assertions read as samples."""

    def __init__(self, buf: PlayoutBuffer) -> None:
        self.buf = buf

    def push(self, frames: np.ndarray) -> int:
        return self.buf.push(frames.astype("<i2").tobytes())

    def pull(self, n: int) -> tuple[np.ndarray, int]:
        frames, bot = self.buf.pull(n)
        assert isinstance(frames, bytes) and len(frames) == 2 * n
        return np.frombuffer(frames, dtype="<i2"), bot

    def __getattr__(self, name: str) -> Any:
        return getattr(self.buf, name)


def make(preroll: int = 100, cap: int = 10_000, window: int = 500) -> Any:
    return Samples(PlayoutBuffer(preroll_frames=preroll, cap_frames=cap, underrun_window_frames=window))


def test_idle_pull_is_silence() -> None:
    buf = make()
    frames, bot = buf.pull(50)
    assert bot == 0
    assert frames.shape == (50,) and not frames.any()
    assert buf.state is PlayoutState.IDLE


def test_preroll_holds_audio_until_enough_is_queued() -> None:
    buf = make(preroll=100)
    buf.push(ramp(0, 60))
    assert buf.state is PlayoutState.PREROLLING
    assert buf.available() == 0
    frames, bot = buf.pull(20)
    assert bot == 0 and not frames.any()
    buf.push(ramp(60, 40))  # 100 queued: pre-roll reached
    assert buf.available() == 100
    frames, bot = buf.pull(30)
    assert bot == 30
    np.testing.assert_array_equal(frames, ramp(0, 30))
    assert buf.state is PlayoutState.PLAYING


def test_preroll_gives_up_waiting_for_a_short_last_utterance() -> None:
    buf = make(preroll=100)
    buf.push(ramp(0, 30))  # less than the pre-roll, and nothing more will come
    waited = 0
    while buf.available() == 0:
        frames, bot = buf.pull(20)
        assert bot == 0
        waited += 20
        assert waited <= 100
    assert waited == 100  # it waited exactly one pre-roll of device time
    frames, bot = buf.pull(40)
    assert bot == 30
    np.testing.assert_array_equal(frames[:30], ramp(0, 30))
    assert not frames[30:].any()


def test_zero_preroll_plays_at_once() -> None:
    buf = make(preroll=0)
    buf.push(ramp(0, 10))
    frames, bot = buf.pull(10)
    assert bot == 10
    np.testing.assert_array_equal(frames, ramp(0, 10))


def test_cap_drops_oldest_and_counts() -> None:
    buf = make(preroll=0, cap=100)
    assert buf.push(ramp(0, 80)) == 0
    assert buf.push(ramp(80, 50)) == 30
    assert buf.buffered_frames == 100
    frames, bot = buf.pull(100)
    assert bot == 100
    np.testing.assert_array_equal(frames, ramp(30, 100))  # the newest 100 frames survived
    assert buf.stats().dropped_frames == 30


def test_cap_drops_across_chunk_boundaries() -> None:
    buf = make(preroll=0, cap=25)
    for i in range(10):
        buf.push(ramp(i * 10, 10))
    frames, bot = buf.pull(25)
    assert bot == 25
    np.testing.assert_array_equal(frames, ramp(75, 25))
    assert buf.stats().dropped_frames == 75


def test_underrun_pads_with_silence_counts_and_prerolls_again() -> None:
    buf = make(preroll=40, window=500)
    buf.push(ramp(0, 50))
    frames, bot = buf.pull(30)
    assert bot == 30
    frames, bot = buf.pull(30)  # only 20 left: 10 frames of silence
    assert bot == 20
    np.testing.assert_array_equal(frames[:20], ramp(30, 20))
    assert not frames[20:].any()
    assert buf.state is PlayoutState.STARVED
    buf.pull(30)  # still dry
    buf.push(ramp(50, 20))  # audio is back within the window: that was an underrun
    assert buf.stats().underruns == 1
    assert buf.state is PlayoutState.PREROLLING
    assert buf.available() == 0  # re-pre-roll: 20 < 40
    buf.push(ramp(70, 20))
    assert buf.available() == 40
    frames, bot = buf.pull(40)
    np.testing.assert_array_equal(frames, ramp(50, 40))


def test_a_long_gap_is_the_end_of_an_utterance_not_an_underrun() -> None:
    buf = make(preroll=0, window=100)
    buf.push(ramp(0, 10))
    buf.pull(20)
    for _ in range(5):
        buf.pull(20)
    assert buf.state is PlayoutState.IDLE
    buf.push(ramp(10, 10))
    assert buf.stats().underruns == 0


def test_exactly_drained_is_not_an_underrun() -> None:
    buf = make(preroll=0)
    buf.push(ramp(0, 40))
    buf.pull(20)
    buf.pull(20)
    assert buf.state is PlayoutState.PLAYING
    buf.push(ramp(40, 20))
    frames, bot = buf.pull(20)
    assert bot == 20
    np.testing.assert_array_equal(frames, ramp(40, 20))
    assert buf.stats().underruns == 0


def test_flush_drops_everything_at_once() -> None:
    buf = make(preroll=0)
    buf.push(ramp(0, 70))
    buf.pull(20)
    assert buf.flush() == 50
    assert buf.state is PlayoutState.IDLE
    assert buf.buffered_frames == 0
    frames, bot = buf.pull(20)
    assert bot == 0 and not frames.any()
    assert buf.stats().flushed_frames == 50
    buf.push(ramp(1000, 10))
    assert buf.stats().underruns == 0  # a flush is not an underrun


def test_push_rejects_what_is_not_whole_16_bit_frames() -> None:
    buf = PlayoutBuffer(preroll_frames=100, cap_frames=10_000, underrun_window_frames=500)
    with pytest.raises(ValueError):
        buf.push(b"\x00\x01\x02")  # half a frame at the end
    with pytest.raises(ValueError):
        buf.push(np.zeros(4, dtype=np.int16))  # type: ignore[arg-type]  # an array, not bytes
    assert buf.push(b"") == 0
    assert buf.state is PlayoutState.IDLE


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(0, 300)),
            st.tuples(st.just("pull"), st.integers(1, 300)),
        ),
        max_size=60,
    ),
    preroll=st.integers(0, 200),
    cap=st.integers(1, 600),
)
def test_audio_comes_out_in_order_minus_what_the_cap_dropped(
    ops: list[tuple[str, int]], preroll: int, cap: int
) -> None:
    buf = Samples(PlayoutBuffer(preroll_frames=preroll, cap_frames=cap, underrun_window_frames=100))
    sent = 0
    kept: list[np.ndarray] = []  # what should still come out, in order
    out: list[np.ndarray] = []
    for op, n in ops:
        if op == "push":
            chunk = ramp(sent, n)
            sent += n
            kept.append(chunk)
            dropped = buf.push(chunk)
            if dropped:
                flat = np.concatenate(kept)[dropped:]
                kept = [flat]
        else:
            frames, bot = buf.pull(n)
            assert frames.shape == (n,)
            assert not frames[bot:].any()
            out.append(frames[:bot])
            if bot:
                flat = np.concatenate(kept)
                np.testing.assert_array_equal(frames[:bot], flat[:bot])
                kept = [flat[bot:]]
        assert buf.buffered_frames == sum(k.shape[0] for k in kept)
        assert buf.buffered_frames <= cap
    s = buf.stats()
    assert s.frames_played + s.dropped_frames + s.buffered_frames == sent
