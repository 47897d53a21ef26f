"""The speaker against real alsa-lib file PCMs: exact playback, resampling, flush, earcons, volume, faults."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import soxr
import trio

from voiceterm.config import AudioConfig, EarconsConfig
from voiceterm.core import earcons
from voiceterm.core.pcm import scale
from voiceterm.io.speaker import Speaker
from voiceterm.protocol.events import AudioChunk
from voiceterm_devkit.alsa_files import FifoTap, noise, read_raw

if TYPE_CHECKING:
    from .conftest import AlsaEnv

pytestmark = pytest.mark.alsa

RATE = 24000
PERIOD = RATE * 20 // 1000
BUFFER = 4 * PERIOD
IDLE_FILL = RATE * AudioConfig().idle_fill_ms // 1000  # silence an idle speaker keeps queued


def bot_chunks(samples: np.ndarray, rate: int, ms: int = 40) -> list[AudioChunk]:
    """Split like the bot does: one message per 40 ms."""
    step = rate * ms // 1000
    return [AudioChunk(samples[i : i + step].tobytes(), rate) for i in range(0, samples.shape[0], step)]


def band_limited(n: int, rate: int, seed: int = 3) -> np.ndarray:
    x = noise(n, seed=seed).astype(np.float64)
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(n, 1 / rate) > 3500] = 0
    y = np.fft.irfft(spectrum, n)
    return np.round(y / np.abs(y).max() * 12000).astype("<i2")


async def test_playback_writes_exactly_what_was_queued(
    speaker_env: AlsaEnv, audio_config: Any, no_earcons: EarconsConfig, wait_until: Any
) -> None:
    signal = noise(RATE // 2, seed=11)  # no zero sample: the file's non-zero run is the bot audio
    spk = Speaker(audio_config(), no_earcons)
    assert not spk.playing and spk.last_write_at is None
    seen_playing = False
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            written_before = spk.stats()["device_frames_total"]  # silence, idle fill included
            for chunk in bot_chunks(signal, RATE):
                spk.enqueue(chunk)
            while spk.stats()["frames_played_total"] < signal.shape[0]:
                seen_playing = seen_playing or spk.playing
                await trio.sleep(0.005)
            assert spk.playing  # written, not yet out of the device
            await wait_until(lambda: not spk.playing, timeout=1, what="playout to end")
            assert spk.last_write_at is not None and spk.last_write_at <= trio.current_time()
            nursery.cancel_scope.cancel()
    out = read_raw(speaker_env.path("out.raw"))
    start = int(np.flatnonzero(out)[0])
    np.testing.assert_array_equal(out[start : start + signal.shape[0]], signal)
    assert not out[start + signal.shape[0] :].any()  # silence after it, nothing repeated
    # Behind the silence written before it was queued (the idle fill, which the device drops at the first
    # sound; the file PCM keeps every write), one more idle top-up if one raced the enqueue, and the low
    # fill the writer keeps while playing.
    assert start <= written_before + IDLE_FILL + 2 * PERIOD
    stats = spk.stats()
    assert stats["underruns_total"] == 0 and stats["xruns_total"] == 0
    assert stats["resampled_chunks_total"] == 0 and stats["dropped_frames_total"] == 0
    assert seen_playing


async def test_real_time_bot_audio_plays_without_gaps(
    speaker_env: AlsaEnv, audio_config: Any, no_earcons: EarconsConfig
) -> None:
    signal = noise(RATE, seed=12)
    spk = Speaker(audio_config(preroll_ms=120), no_earcons)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            t0 = trio.current_time()
            for i, chunk in enumerate(bot_chunks(signal, RATE)):
                await trio.sleep_until(t0 + i * 0.040)  # the bot streams just in time, 40 ms per message
                spk.enqueue(chunk)
            while spk.stats()["frames_played_total"] < signal.shape[0]:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    out = read_raw(speaker_env.path("out.raw"))
    nz = np.flatnonzero(out)
    assert nz[-1] - nz[0] + 1 == signal.shape[0]  # one unbroken run: no silence was inserted
    np.testing.assert_array_equal(out[nz[0] : nz[-1] + 1], signal)
    assert spk.stats()["underruns_total"] == 0


@pytest.mark.parametrize("in_rate", [8000, 16000, 48000])
async def test_audio_at_another_rate_is_resampled(
    speaker_env: AlsaEnv, audio_config: Any, no_earcons: EarconsConfig, wait_until: Any, in_rate: int
) -> None:
    signal = band_limited(in_rate // 2, in_rate)
    chunks = bot_chunks(signal, in_rate)
    spk = Speaker(audio_config(), no_earcons)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            for chunk in chunks:
                spk.enqueue(chunk)
            await wait_until(lambda: spk.stats()["queued_frames"] == 0 and not spk.playing, what="playout")
            nursery.cancel_scope.cancel()
    out = read_raw(speaker_env.path("out.raw")).astype(np.float64)
    ref = soxr.resample(signal, in_rate, RATE).astype(np.float64)
    assert abs(spk.stats()["frames_played_total"] - ref.shape[0]) <= 4  # the resampler's tail came out too
    nz = np.flatnonzero(out)
    played = out[nz[0] : nz[-1] + 1]
    # Align by cross-correlation (the first output samples may be exact zeros), then compare shapes.
    lags = range(-20, 21)
    scores = []
    for lag in lags:
        a = played[max(0, lag) :]
        b = ref[max(0, -lag) :]
        n = min(a.shape[0], b.shape[0]) - 50
        scores.append(float(np.corrcoef(a[:n], b[:n])[0, 1]))
    assert max(scores) > 0.99
    assert spk.stats()["resampled_chunks_total"] == len(chunks)


async def test_flush_silences_within_one_period_plus_the_buffer(
    speaker_env: AlsaEnv, audio_config: Any, no_earcons: EarconsConfig, wait_until: Any
) -> None:
    first = noise(2 * RATE, seed=21)
    second = noise(RATE // 5, seed=22)
    spk = Speaker(audio_config(), no_earcons)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            for chunk in bot_chunks(first, RATE):
                spk.enqueue(chunk)
            await wait_until(lambda: spk.stats()["frames_played_total"] >= RATE // 2, what="half a second")
            before = spk.stats()
            dropped = spk.flush()
            assert not spk.playing  # at once
            written = before["frames_played_total"]
            delay = before["device_delay_frames"]
            assert 0 < delay <= BUFFER
            assert first.shape[0] - written - PERIOD <= dropped <= first.shape[0] - written
            mark = spk.stats()["device_frames_total"]
            await wait_until(lambda: spk.stats()["device_frames_total"] >= mark + 5 * PERIOD, what="silence")
            # Playback goes on normally after an interruption.
            for chunk in bot_chunks(second, RATE):
                spk.enqueue(chunk)
            await wait_until(lambda: spk.stats()["queued_frames"] == 0 and not spk.playing, what="playout")
            nursery.cancel_scope.cancel()
    out = read_raw(speaker_env.path("out.raw"))
    assert spk.stats()["flushed_frames_total"] == dropped
    heard = out[out != 0]  # neither signal has a zero sample
    k = heard.shape[0] - second.shape[0]
    np.testing.assert_array_equal(heard[:k], first[:k])  # a prefix of the first signal ...
    np.testing.assert_array_equal(heard[k:], second)  # ... then all of the second
    after_flush = k - (written - delay)  # bot audio that left the speaker after flush() was called
    assert k - written <= PERIOD  # at most the period already on its way in
    assert after_flush <= PERIOD + BUFFER


async def test_earcons_are_mixed_over_bot_audio_and_obey_the_config(
    speaker_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    cfg = EarconsConfig(enabled=True, volume_percent=50, release=False)
    signal = noise(RATE // 2, seed=31, amplitude=4000)
    tone = earcons.render("press", RATE, 50)
    spk = Speaker(audio_config(preroll_ms=0), cfg)
    with pytest.raises(ValueError, match="unknown earcon"):
        spk.earcon("beep")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            for chunk in bot_chunks(signal, RATE):
                spk.enqueue(chunk)
            await wait_until(lambda: spk.stats()["frames_played_total"] >= RATE // 10, what="playback")
            spk.earcon("press")
            spk.earcon("release")  # turned off in the config
            await wait_until(lambda: spk.stats()["queued_frames"] == 0 and not spk.playing, what="playout")
            nursery.cancel_scope.cancel()
    out = read_raw(speaker_env.path("out.raw")).astype(np.int32)
    start = int(np.flatnonzero(out)[0])
    residual = out.copy()
    residual[start : start + signal.shape[0]] -= signal
    nz = np.flatnonzero(residual)
    t0 = int(nz[0]) - int(np.flatnonzero(tone)[0])  # the tone fades in from exact zeros
    np.testing.assert_array_equal(residual[t0 : t0 + tone.shape[0]], tone)
    assert not residual[t0 + tone.shape[0] :].any()  # one tone only: "release" stayed silent
    assert start < t0 < start + signal.shape[0]  # mixed over the bot's voice, not instead of it


async def test_disabled_earcons_play_nothing(
    speaker_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    spk = Speaker(audio_config(), EarconsConfig(enabled=False))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            for name in earcons.NAMES:
                spk.earcon(name)
            mark = spk.stats()["device_frames_total"]
            await wait_until(lambda: spk.stats()["device_frames_total"] >= mark + 10 * PERIOD, what="time")
            nursery.cancel_scope.cancel()
    assert not read_raw(speaker_env.path("out.raw")).any()


async def test_volume_and_stereo_downmix(
    speaker_env: AlsaEnv, audio_config: Any, no_earcons: EarconsConfig, wait_until: Any
) -> None:
    left = noise(RATE // 5, seed=41, amplitude=10000)
    right = noise(RATE // 5, seed=42, amplitude=10000)
    stereo = np.empty(2 * left.shape[0], dtype="<i2")
    stereo[0::2], stereo[1::2] = left, right
    mono = np.rint((left.astype(np.float64) + right) / 2).astype("<i2")
    expected = np.frombuffer(scale(mono.tobytes(), 0.5), dtype="<i2")
    spk = Speaker(audio_config(volume_percent=50), no_earcons)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            spk.enqueue(AudioChunk(stereo.tobytes(), RATE, num_channels=2))
            await wait_until(lambda: spk.stats()["queued_frames"] == 0 and not spk.playing, what="playout")
            nursery.cancel_scope.cancel()
    out = read_raw(speaker_env.path("out.raw"))
    nz = np.flatnonzero(out)
    start = int(nz[0])
    np.testing.assert_array_equal(out[start : start + expected.shape[0]], expected)


async def test_the_cap_drops_the_oldest_audio(
    speaker_env: AlsaEnv, audio_config: Any, no_earcons: EarconsConfig, wait_until: Any
) -> None:
    signal = noise(RATE, seed=51)
    spk = Speaker(audio_config(playout_cap_ms=200, preroll_ms=60), no_earcons)
    for chunk in bot_chunks(signal, RATE):
        spk.enqueue(chunk)  # all before the device runs: the cap keeps the newest 200 ms
    assert spk.stats()["dropped_frames_total"] == RATE - RATE // 5
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            await wait_until(lambda: spk.stats()["queued_frames"] == 0 and not spk.playing, what="playout")
            nursery.cancel_scope.cancel()
    out = read_raw(speaker_env.path("out.raw"))
    np.testing.assert_array_equal(out[out != 0], signal[-(RATE // 5) :])


async def test_an_underrun_is_counted_and_audio_resumes(
    speaker_env: AlsaEnv, audio_config: Any, no_earcons: EarconsConfig, wait_until: Any
) -> None:
    a = noise(PERIOD * 5 + PERIOD // 2, seed=61)  # not whole periods: the last pull comes up short
    b = noise(PERIOD * 5, seed=62)
    spk = Speaker(audio_config(preroll_ms=20), no_earcons)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            spk.enqueue(AudioChunk(a.tobytes(), RATE))
            await wait_until(lambda: spk.stats()["frames_played_total"] == a.shape[0], what="first part")
            spk.enqueue(AudioChunk(b.tobytes(), RATE))  # late: the buffer had run dry
            await wait_until(lambda: spk.stats()["queued_frames"] == 0 and not spk.playing, what="playout")
            nursery.cancel_scope.cancel()
    assert spk.stats()["underruns_total"] == 1
    out = read_raw(speaker_env.path("out.raw"))
    np.testing.assert_array_equal(out[out != 0], np.concatenate((a, b)))


async def test_a_missing_device_is_a_fault_and_audio_is_dropped_until_it_appears(
    alsa_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    faults: list[str | None] = []
    spk = Speaker(audio_config(playback_device="usbspk"), EarconsConfig(), on_fault=faults.append)
    signal = noise(RATE // 5, seed=71)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with trio.fail_after(1):
                await nursery.start(spk.run)
            expected = 'playback device "usbspk" not found (ALSA: No such file or directory); check `voiceterm devices`'
            assert spk.fault == expected
            spk.enqueue(AudioChunk(signal.tobytes(), RATE))  # nowhere to play it: dropped, counted
            spk.earcon("error")
            assert spk.stats()["dropped_frames_total"] == signal.shape[0]
            assert spk.stats()["queued_frames"] == 0
            alsa_env.config.add_playback("usbspk", alsa_env.path("out.raw"))
            alsa_env.apply()
            await wait_until(lambda: spk.fault is None, what="the fault to clear")
            spk.enqueue(AudioChunk(signal.tobytes(), RATE))
            await wait_until(lambda: spk.stats()["queued_frames"] == 0 and not spk.playing, what="playout")
            nursery.cancel_scope.cancel()
    assert faults == [expected, None]
    out = read_raw(alsa_env.path("out.raw"))
    np.testing.assert_array_equal(out[out != 0], signal)  # once, and no tone from the fault time


async def test_a_device_removed_mid_stream_is_reopened_when_it_is_back(
    alsa_env: AlsaEnv,
    audio_config: Any,
    no_earcons: EarconsConfig,
    wait_until: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="voiceterm.audio")
    tap = FifoTap(alsa_env.path("spk.fifo"))
    alsa_env.config.add_playback("spk", tap.path)
    alsa_env.apply()
    faults: list[str | None] = []
    spk = Speaker(audio_config(), no_earcons, on_fault=faults.append)
    before = noise(RATE // 5, seed=81)
    after = noise(RATE // 5, seed=82)
    try:
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                await nursery.start(spk.run)
                spk.enqueue(AudioChunk(before.tobytes(), RATE))
                await wait_until(lambda: spk.stats()["frames_played_total"] == before.shape[0], what="audio")
                alsa_env.config.remove("spk")
                alsa_env.apply()
                tap.cut()
                await wait_until(lambda: spk.fault is not None and "not found" in spk.fault, what="a fault")
                spk.enqueue(AudioChunk(before.tobytes(), RATE))  # dropped while the device is gone
                tap.reconnect()
                alsa_env.config.restore("spk")
                alsa_env.apply()
                await wait_until(lambda: spk.fault is None, what="the fault to clear")
                spk.enqueue(AudioChunk(after.tobytes(), RATE))
                await wait_until(lambda: after.tobytes() in tap.data, what="audio after the reopen")
                nursery.cancel_scope.cancel()
    finally:
        tap.close()
    assert faults[0] == 'playback device "spk" failed (ALSA: Input/output error); reopening'
    assert faults[1].startswith('playback device "spk" not found')
    assert faults[-1] is None
    stats = spk.stats()
    assert stats["reopens_total"] == 1
    assert stats["dropped_frames_total"] == before.shape[0]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not found" in m for m in messages) == 1
    assert any("playback device is back" in m for m in messages)


async def test_device_pacing_on_an_unclocked_pcm_falls_back_to_the_wall_clock(
    speaker_env: AlsaEnv,
    audio_config: Any,
    no_earcons: EarconsConfig,
    wait_until: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="voiceterm.audio")
    spk = Speaker(audio_config(pacing="device"), no_earcons)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            await wait_until(lambda: any("faster than real time" in r.getMessage() for r in caplog.records))
            t0 = trio.current_time()
            mark = spk.stats()["device_frames_total"]
            await trio.sleep(0.2)
            written = spk.stats()["device_frames_total"] - mark
            elapsed = trio.current_time() - t0
            nursery.cancel_scope.cancel()
    # Paced: about real time (plus at most the device's buffer, idle fill included), not a busy loop of silence.
    assert written <= elapsed * RATE + max(BUFFER, IDLE_FILL) + PERIOD
