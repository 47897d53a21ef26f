"""The bounded latency recorder (bucket geometry, percentile accuracy, exact counters, exported buckets) and
the speaker's recorders on a real alsa-lib file PCM (every stamped chunk timed, interruptions, the books)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from voiceterm.config import AudioConfig, EarconsConfig
from voiceterm.core.latency import (
    N_BUCKETS,
    SUB_BUCKETS,
    ChunkTimes,
    LatencyRecorder,
    bucket_difference,
    bucket_index,
    bucket_upper,
    summarize_buckets,
)
from voiceterm.io.link import ReceivedAudio
from voiceterm.io.speaker import Speaker
from voiceterm.protocol.events import AudioChunk
from voiceterm_devkit.alsa_files import AlsaFileConfig, noise

durations = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@given(st.floats(min_value=1e-6, max_value=200.0))
def test_a_value_lies_in_its_bucket_and_the_bucket_is_narrow(seconds: float) -> None:
    index = bucket_index(seconds)
    upper = bucket_upper(index)
    lower = bucket_upper(index - 1)
    assert lower <= seconds * (1 + 1e-12)
    assert seconds < upper * (1 + 1e-12)
    assert (upper - lower) / lower <= 1 / SUB_BUCKETS + 1e-12


def test_edges_grow_strictly_and_out_of_range_values_are_clamped() -> None:
    edges = [bucket_upper(i) for i in range(N_BUCKETS)]
    assert all(b > a for a, b in itertools.pairwise(edges))
    assert bucket_index(0.0) == 0
    assert bucket_index(-1.0) == 0
    assert bucket_index(float("nan")) == 0
    assert bucket_index(1e9) == N_BUCKETS - 1


@given(st.lists(durations, min_size=1, max_size=300))
def test_percentiles_are_within_a_bucket_of_the_exact_ones_and_never_above_max(values: list[float]) -> None:
    rec = LatencyRecorder()
    for v in values:
        rec.record(v)
    s = rec.summary()
    assert s.count == len(values)
    assert s.max == max(values)
    assert math.isclose(s.mean, sum(values) / len(values), rel_tol=1e-9, abs_tol=1e-12)
    for q, got in ((0.5, s.p50), (0.99, s.p99)):
        want = exact_quantile(values, q)
        assert got is not None
        assert got <= s.max
        assert want <= got * (1 + 1e-9) or want < 1e-6
        assert got <= max(want * (1 + 1 / SUB_BUCKETS) + 1e-12, 1e-6)


def test_known_distribution() -> None:
    rec = LatencyRecorder()
    for _ in range(990):
        rec.record(0.001)  # 1 ms
    for _ in range(10):
        rec.record(0.050)  # 50 ms
    s = rec.summary()
    assert s.count == 1000
    assert 0.001 <= s.p50 <= 0.001 * (1 + 1 / SUB_BUCKETS)
    assert 0.001 <= s.p99 <= 0.001 * (1 + 1 / SUB_BUCKETS)  # the 990th sample is still 1 ms
    assert s.max == 0.050
    assert rec.percentile(1.0) == 0.050
    d = rec.as_dict()
    assert d["samples_total"] == 1000
    assert d["max_ms"] == 50.0
    assert sum(n for _, n in d["buckets"]) == 1000


def test_empty_recorder_and_reset() -> None:
    rec = LatencyRecorder()
    assert rec.summary().p50 is None
    assert rec.as_dict() == {
        "samples_total": 0,
        "mean_ms": None,
        "p50_ms": None,
        "p99_ms": None,
        "max_ms": None,
        "buckets": [],
    }
    rec.record(0.002)
    rec.reset()
    assert rec.count == 0 and rec.max is None and rec.buckets() == []


def test_negative_durations_count_as_zero() -> None:
    rec = LatencyRecorder()
    rec.record(-0.5)
    assert rec.count == 1 and rec.max == 0.0 and rec.min == 0.0


def test_memory_is_bounded_whatever_the_number_of_samples() -> None:
    rec = LatencyRecorder()
    for i in range(200_000):
        rec.record((i % 5000) * 1e-6)
    assert rec.count == 200_000
    assert len(rec.buckets()) <= N_BUCKETS
    assert len(json.dumps(rec.as_dict())) < 20_000


@given(st.lists(durations, min_size=1, max_size=200))
def test_exported_buckets_summarize_like_the_recorder(values: list[float]) -> None:
    rec = LatencyRecorder()
    for v in values:
        rec.record(v)
    d = json.loads(json.dumps(rec.as_dict()))  # through JSON, as the status socket delivers it
    again = summarize_buckets(d["buckets"], max_s=rec.max)
    s = rec.summary()
    assert again.count == s.count
    assert again.p50 == s.p50
    assert again.p99 == s.p99


def test_difference_of_two_snapshots_is_what_was_recorded_in_between() -> None:
    rec = LatencyRecorder()
    for _ in range(100):
        rec.record(0.0005)
    first = rec.as_dict()["buckets"]
    for _ in range(50):
        rec.record(0.003)
    rec.record(0.0005)
    window = bucket_difference(rec.as_dict()["buckets"], first)
    s = summarize_buckets(window)
    assert s.count == 51
    assert 0.003 <= s.p50 <= 0.003 * (1 + 1 / SUB_BUCKETS)
    assert s.max >= 0.003


# --- the speaker's recorders, against a real alsa-lib file PCM ------------------------------------------

RATE = 24000
CHUNK = RATE * 40 // 1000  # the bot's 40 ms


def _speaker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **audio: Any) -> Speaker:
    pytest.importorskip("alsaaudio")
    alsa = AlsaFileConfig(tmp_path / "alsa")
    alsa.add_playback("spk", tmp_path / "out.raw").write()
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa.path))
    cfg = AudioConfig(playback_device="spk", pacing="wall-clock", player_sample_rate=RATE, **audio)
    return Speaker(cfg, EarconsConfig(enabled=False))


def _books_balance(spk: Speaker) -> bool:
    s = spk.stats()
    out = (
        s["frames_played_total"] + s["dropped_frames_total"] + s["flushed_frames_total"] + s["queued_frames"]
    )
    return s["frames_in_total"] == out


async def _until(predicate: Any, what: str, timeout: float = 5.0) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.005)
        return
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.alsa
async def test_speaker_times_every_stamped_chunk_and_one_interruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spk = _speaker(tmp_path, monkeypatch)
    pcm = noise(CHUNK * 10, seed=5)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            for i in range(10):  # at the bot's pace
                chunk = pcm[i * CHUNK : (i + 1) * CHUNK].tobytes()
                spk.enqueue(ReceivedAudio(chunk, RATE, received_at=trio.current_time()))
                await trio.sleep(0.040)
            spk.enqueue(AudioChunk(pcm[:CHUNK].tobytes(), RATE))  # no stamp: played, not timed
            await _until(lambda: spk.stats()["frames_played_total"] == 11 * CHUNK, "all of it played")

            # Every stamped chunk is timed at each stage, once. (How long each stage takes is a figure for
            # scripts/bench; here only what is causal: nothing is timed before it happened, and the first
            # chunk waited out the pre-roll.)
            lat = spk.latency
            assert lat["receive_to_playout"].count == 10
            assert lat["receive_to_playout"].min >= 0.0
            assert lat["receive_to_write"].count == 10
            assert lat["receive_to_write"].min >= 0.0
            # The first chunk waited out the 60 ms pre-roll: in the playout buffer, or (when it came as
            # the device was starting) behind the silence the pre-roll's pulls wrote ahead of it.
            assert lat["receive_to_audible"].count == 10
            assert lat["receive_to_audible"].max >= 0.055
            assert lat["receive_to_audible"].min >= lat["receive_to_write"].min
            assert lat["interruption"].count == 0

            # Interrupted while the bot is audible: timed once.
            for i in range(10):
                spk.enqueue(ReceivedAudio(pcm[i * CHUNK : (i + 1) * CHUNK].tobytes(), RATE, received_at=0.0))
            await _until(lambda: spk.playing, "the bot to be audible")
            spk.flush(since=trio.current_time())
            await _until(lambda: lat["interruption"].count == 1, "the interruption to be timed")
            assert lat["interruption"].min >= 0.0
            # A second flush finds nothing to silence: not an interruption to time.
            assert spk.flush(since=trio.current_time()) == 0
            assert not spk.playing and lat["interruption"].count == 1
            await _until(lambda: spk.stats()["queued_frames"] == 0, "the queue to be empty")
            assert _books_balance(spk)
            nursery.cancel_scope.cancel()


@pytest.mark.alsa
async def test_chunks_the_cap_dropped_are_not_timed_and_the_books_balance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spk = _speaker(tmp_path, monkeypatch, playout_cap_ms=100)  # 2400 frames: 2.5 chunks
    pcm = noise(CHUNK * 10, seed=6)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            now = trio.current_time()
            for i in range(10):  # a burst far over the cap
                spk.enqueue(ReceivedAudio(pcm[i * CHUNK : (i + 1) * CHUNK].tobytes(), RATE, received_at=now))
            await _until(lambda: spk.stats()["queued_frames"] == 0, "the queue to drain")
            stats = spk.stats()
            assert stats["dropped_frames_total"] >= 10 * CHUNK - 2400 - 2 * CHUNK
            assert stats["frames_played_total"] + stats["dropped_frames_total"] == 10 * CHUNK
            assert 1 <= spk.latency["receive_to_write"].count < 10
            assert spk.latency["receive_to_playout"].count == 10
            assert _books_balance(spk)
            nursery.cancel_scope.cancel()


def test_chunk_times_times_each_chunk_at_its_first_written_frame_and_skips_dropped_ones() -> None:
    written, audible = LatencyRecorder(), LatencyRecorder()
    times = ChunkTimes(1000, 3, written, audible)  # 1000 frames a second: a frame is a millisecond
    times.add(0, 10.0)  # a chunk whose first frame is stream position 0, received at t = 10 s
    times.add(100, 10.05)
    times.add(200, 10.1)
    times.add(300, 10.2)  # over the limit: goes untimed
    # Frames 150..250 written at 10.3 s behind 20 ms of audio: the chunk at 0 and 100 were dropped by the cap.
    times.written(150, 100, 10.3, 0.02)
    assert written.summary().count == 1 and audible.summary().count == 1
    assert written.summary().max == pytest.approx(0.2, abs=0.01)  # 10.1 -> 10.3
    # The chunk at 200 leaves the device 20 ms (ahead) + 50 frames (50 ms) after the write.
    assert audible.summary().max == pytest.approx(0.27, abs=0.02)
    times.add(400, 11.0)
    times.clear()  # flushed: nothing waiting is timed
    times.written(400, 100, 11.5, 0.0)
    assert written.summary().count == 1
