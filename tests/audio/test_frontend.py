"""The audio front-end (io/frontend.py) with the real WebRTC canceller, on a simulated device timeline: a speaker
that writes blocks ahead of when they play (as deep as its ALSA buffer) and reports their play time with a
pointer that lags, a microphone whose reads return a little after their data, and an echo path between them.
No threads and no clock: every call carries its time, so the result does not depend on the machine's load.

The reference-lateness property is proved both ways: with the playback buffer at its largest setting the
canceller converges and no reference comes late; told that the audio plays later than it really does (a
reference arriving after its echo), it does not.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from voiceterm.config import AudioConfig, FrontendConfig
from voiceterm.io.frontend import AEC_IDLE_S, MARGIN_S, FrontEnd, make_frontend, reference_of

pytest.importorskip("pywebrtc_audio")

MIC = 16000
SPK = 24000
PERIOD_S = 0.02
MAX_BUFFER_PERIODS = dataclasses.fields(AudioConfig)[[f.name for f in dataclasses.fields(AudioConfig)].index("buffer_periods")].metadata["max"]  # fmt: skip


def babble(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Noise below 6 kHz (a voice's band) under an irregular syllable envelope: broadband like speech,
    without a period a delay estimate could lock onto twice."""
    import soxr

    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    syll = round(0.1 * rate)
    levels = rng.uniform(0.0, 1.0, size=n // syll + 2) ** 2
    envelope = np.interp(np.arange(n), np.arange(levels.size) * syll, levels)
    noise = soxr.resample(rng.standard_normal(n // 2 + 1), 12000, 24000)[:n]
    return (noise * envelope * 5000).astype(np.int16)


@dataclasses.dataclass
class Timeline:
    """One simulated run: the speaker's device stream and what the microphone captured."""

    frontend: FrontEnd
    out: np.ndarray  # what the front-end handed on, per mic sample
    near: np.ndarray  # what the microphone captured
    bot: np.ndarray  # mic-sample mask: the bot's voice present in the echo


def simulate(
    cfg: FrontendConfig,
    *,
    seconds: float = 16.0,
    buffer_periods: int = 4,
    echo_delay_s: float = 0.06,
    echo_gain: float = 0.1,
    claim_late_s: float = 0.0,
    mic_period_s: float = PERIOD_S,
    silence: tuple[float, float] | None = None,
    seed: int = 0,
) -> Timeline:
    """Run `seconds` of the bot talking through a speaker whose ALSA buffer holds `buffer_periods` periods
    (full: the bot's audio is queued ahead), into a mic `echo_delay_s` later at `echo_gain`.
    `claim_late_s` makes the speaker report its blocks as playing that much later than they do."""
    rng = np.random.default_rng(seed)
    base = time.perf_counter() + 1.0
    fe = FrontEnd(cfg, mic_rate=MIC, device_rate=SPK)
    played = babble(seconds, SPK, seed)
    if silence is not None:
        played[round(silence[0] * SPK) : round(silence[1] * SPK)] = 0
    spk_block = round(PERIOD_S * SPK)
    # The echo at the mic: the played stream at the mic rate, delayed and attenuated (plus a faint tail).
    import soxr

    at_mic = soxr.resample(played.astype(np.float32), SPK, MIC)
    d = round(echo_delay_s * MIC)
    echo = np.zeros(len(at_mic))
    echo[d:] = at_mic[:-d] * echo_gain
    echo[d + 80 :] += at_mic[: -(d + 80)] * echo_gain * 0.3
    near = np.clip(echo + rng.standard_normal(len(echo)) * 3, -32768, 32767).astype(np.int16)
    mic_chunk = round(mic_period_s * MIC)
    lead = buffer_periods - 1  # blocks written ahead of the one playing
    events = []
    for k in range(len(played) // spk_block):
        plays = k * PERIOD_S
        written = plays - lead * PERIOD_S
        pointer_lag = rng.uniform(0.0, PERIOD_S / 2)  # the fill is over-reported by up to half a period
        events.append((written, 0, k, plays + pointer_lag + claim_late_s))
    for j in range(len(near) // mic_chunk):
        captured = (j + 1) * mic_chunk / MIC
        events.append((captured + rng.uniform(0.0005, 0.004), 1, j, 0.0))
    events.sort()
    out = np.zeros_like(near)
    for at, kind, index, play_at in events:
        if kind == 0:
            fe.played(played[index * spk_block : (index + 1) * spk_block], base + play_at)
        else:
            s = slice(index * mic_chunk, (index + 1) * mic_chunk)
            out[s] = np.frombuffer(fe.process(near[s].tobytes(), base + at), dtype=np.int16)
    bot = np.abs(echo) > 30
    return Timeline(fe, out, near, bot)


def erle_db(t: Timeline, after_s: float) -> float:
    mask = t.bot & (np.arange(len(t.near)) >= after_s * MIC)
    a = t.near[mask].astype(np.float64)
    b = t.out[mask].astype(np.float64)
    return 10 * math.log10(np.mean(a**2) / max(np.mean(b**2), 1e-9))


ECHO_ONLY = FrontendConfig(noise_suppression=False, high_pass=False, auto_gain=False)
# AEC3 alone reaches about 29 dB on `babble` with a perfectly aligned reference (it suppresses noise-like
# residue less than speech: about 48 dB on espeak's voice); a front-end that aligns its reference well
# must come close to that.
CONVERGED_DB = 25.0


@pytest.mark.parametrize("buffer_periods", [2, 4, MAX_BUFFER_PERIODS])
def test_the_reference_is_never_late_and_the_canceller_converges(buffer_periods: int) -> None:
    t = simulate(ECHO_ONLY, buffer_periods=buffer_periods)
    stats = t.frontend.stats()
    assert stats["reference_late_frames_total"] == 0
    assert stats["reference_overflow_frames_total"] == 0
    assert erle_db(t, after_s=4.0) > CONVERGED_DB
    assert stats["erle_db"] is not None and stats["erle_db"] > CONVERGED_DB - 5
    assert stats["echo_delay_ms"] == pytest.approx(60 + MARGIN_S * 1000, abs=12)  # the path plus the margin


def test_a_reference_that_arrives_after_its_echo_does_not_converge() -> None:
    # The speaker claims its blocks play 150 ms later than they do: every reference comes after its echo.
    t = simulate(ECHO_ONLY, buffer_periods=MAX_BUFFER_PERIODS, claim_late_s=0.15)
    assert erle_db(t, after_s=4.0) < 15


def test_all_stages_together_keep_the_echo_out() -> None:
    t = simulate(FrontendConfig(), seconds=12.0)
    assert erle_db(t, after_s=4.0) > CONVERGED_DB  # noise suppression and capped gain on top
    stats = t.frontend.stats()
    assert stats["state"] == "running" and stats["gain_db"] <= FrontendConfig().max_gain_db
    assert stats["cpu_seconds_total"] > 0


def test_a_period_of_whole_and_half_frames_is_processed_at_the_same_length() -> None:
    t = simulate(ECHO_ONLY, seconds=10.0, mic_period_s=0.025)  # 25 ms: two and a half 10 ms frames
    assert len(t.out) == len(t.near)
    assert erle_db(t, after_s=4.0) > CONVERGED_DB


def test_the_canceller_idles_while_the_bot_is_silent_and_resumes_in_time() -> None:
    t = simulate(ECHO_ONLY, seconds=16.0, silence=(5.0, 11.0))
    stats = t.frontend.stats()
    # Skipped from the echo's end plus the idle delay until the first chunk whose reference has sound
    # (the voice fades in: give or take a syllable's rise).
    idle_s = (11.0 - 0.01) - (5.0 + 0.06 + AEC_IDLE_S)
    assert stats["chunks_total"] - stats["aec_chunks_total"] == pytest.approx(idle_s / PERIOD_S, abs=8)
    # It resumed before the echo came back: the bot's voice after the pause is cancelled at once.
    assert erle_db(t, after_s=11.0) > CONVERGED_DB


def test_a_flush_silences_the_reference_that_was_planned_after_it() -> None:
    fe = FrontEnd(ECHO_ONLY, mic_rate=MIC, device_rate=SPK)
    base = time.perf_counter() + 1.0
    block = np.full(480, 1000, np.int16)
    for k in range(16):  # 320 ms queued ahead in the device, playing from 100 ms on
        fe.played(block, base + 0.1 + 0.02 * k)
    fe.flushed(base + 0.2)  # dropped at 200 ms: what was to play after it never will
    fe._take_reference()  # what the capture thread does first for every chunk
    start = math.floor(fe._play.position(base + 0.1))  # where the first block went (margin included)
    ref = fe._ring.read(start, round(0.3 * MIC))
    played = round(0.1 * MIC)
    assert (ref[8 : played - 8] > 900).all()
    assert not ref[played:].any()
    assert fe.stats()["flushes_total"] == 1


def test_a_reopened_device_resets_the_canceller_once() -> None:
    fe = FrontEnd(ECHO_ONLY, mic_rate=MIC, device_rate=SPK)
    chunk = np.zeros(320, np.int16).tobytes()
    now = time.perf_counter()
    fe.process(chunk, now)
    fe.playback_reset()
    fe.capture_reset()
    fe.process(chunk, now + 0.02)
    fe.process(chunk, now + 0.04)
    assert fe.stats()["resets_total"] == 1


class _BrokenLibrary:
    """A DSP library whose canceller fails on first use."""

    class EchoCanceller:
        def __init__(self, **_kwargs: object) -> None:
            pass

        def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
            raise RuntimeError("simulated failure")

        def reset(self) -> None:
            pass


def test_a_failing_library_passes_the_audio_through_and_says_so() -> None:
    fe = FrontEnd(ECHO_ONLY, mic_rate=MIC, device_rate=SPK, lib=_BrokenLibrary())
    now = time.perf_counter()
    fe.played(np.full(480, 500, np.int16), now + MARGIN_S)  # placed MARGIN_S early: under the first chunk
    chunk = (np.arange(320, dtype=np.int16) * 7).tobytes()
    assert fe.process(chunk, now + 0.02) == chunk
    assert fe.process(chunk, now + 0.04) == chunk
    stats = fe.stats()
    assert stats["state"] == "failed" and "simulated failure" in stats["error"]


def test_off_or_nothing_enabled_means_no_front_end() -> None:
    assert make_frontend(FrontendConfig(mode="off"), mic_rate=MIC, device_rate=SPK) == (None, "off")
    nothing = FrontendConfig(
        echo_cancellation=False, noise_suppression=False, high_pass=False, auto_gain=False
    )
    assert make_frontend(nothing, mic_rate=MIC, device_rate=SPK) == (None, "off")
    fe, why = make_frontend(FrontendConfig(echo_cancellation=False), mic_rate=MIC, device_rate=SPK)
    assert fe is not None and why == "" and reference_of(fe) is None  # no canceller: no reference tap


@pytest.mark.parametrize("rate", [8000, 22050, 24000, 44100])
def test_a_mic_rate_the_canceller_cannot_run_at_means_raw_audio_and_says_why(rate: int) -> None:
    fe, why = make_frontend(FrontendConfig(), mic_rate=rate, device_rate=SPK)
    assert fe is None and f"the mic runs at {rate} Hz" in why


def test_the_speaker_thread_only_queues_and_the_capture_side_places_blocks_before_it_reads() -> None:
    fe = FrontEnd(ECHO_ONLY, mic_rate=MIC, device_rate=SPK)
    now = time.perf_counter()
    chunk = np.zeros(320, np.int16).tobytes()
    fe.process(chunk, now)
    for k in range(5):  # queued ahead: playing from 100 ms on
        fe.played(np.full(480, 1000, np.int16).tobytes(), now + 0.1 + 0.02 * k)
    assert fe.stats()["reference_frames_total"] == 0  # queued: nothing done on the speaker's thread
    fe.process(chunk, now + 0.02)
    stats = fe.stats()
    assert stats["reference_frames_total"] == pytest.approx(5 * 320, abs=2)  # soxr holds one sample back
    assert stats["reference_late_frames_total"] == 0


def test_while_no_one_wants_the_mic_only_the_last_second_played_is_kept() -> None:
    fe = FrontEnd(ECHO_ONLY, mic_rate=MIC, device_rate=SPK)
    now = time.perf_counter()
    chunk = np.zeros(320, np.int16).tobytes()
    fe.process(chunk, now)
    fe.capture_paused()
    for k in range(500):  # ten seconds of speech played while the mic was not wanted
        fe.played(np.full(480, 1000, np.int16).tobytes(), now + 0.02 * k)
    fe.capture_discontinuity()  # wanted again
    fe.process(chunk, now + 10.0)
    stats = fe.stats()
    assert stats["reference_frames_total"] == pytest.approx(50 * 320, abs=2)  # the newest (PAUSED_BLOCKS)
    assert stats["reference_overflow_frames_total"] == 0 and stats["reference_late_frames_total"] == 0
    assert stats["capture_gaps_total"] == 1
