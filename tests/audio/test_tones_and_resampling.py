"""Earcon generation and the streaming resampler (pure parts of the audio layer)."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from voiceterm.core import earcons
from voiceterm.core.resample import StreamResampler
from voiceterm_devkit.alsa_files import noise


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.shape[0])))
    return float(np.fft.rfftfreq(x.shape[0], 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("name", earcons.NAMES)
@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_every_earcon_renders_at_every_rate(name: str, rate: int) -> None:
    tone = earcons.render(name, rate, 100)
    assert tone.dtype == np.int16
    assert tone.shape[0] == pytest.approx(earcons.duration_s(name) * rate, abs=len(earcons._NOTES[name]) * 2)
    assert 0.05 <= earcons.duration_s(name) <= 0.5  # short
    peak = int(np.abs(tone.astype(np.int32)).max())
    assert 0.4 * 32767 < peak <= 0.5 * 32767 + 1
    # Raised-cosine edges: no click at the start or the end.
    assert abs(int(tone[0])) < 300 and abs(int(tone[-1])) < 300
    assert not tone.flags.writeable


def test_earcon_pitch_and_volume() -> None:
    press = earcons.render("press", 24000, 100)
    release = earcons.render("release", 24000, 100)
    assert dominant_hz(press, 24000) == pytest.approx(880, abs=20)
    assert dominant_hz(release, 24000) == pytest.approx(660, abs=20)
    quiet = earcons.render("press", 24000, 30)
    assert np.abs(quiet.astype(np.int32)).max() == pytest.approx(
        0.3 * np.abs(press.astype(np.int32)).max(), rel=0.01
    )
    assert not earcons.render("press", 24000, 0).any()


def test_connected_rises_and_disconnected_falls() -> None:
    up = earcons.render("connected", 16000, 100)
    down = earcons.render("disconnected", 16000, 100)
    half = up.shape[0] // 2
    assert dominant_hz(up[:half], 16000) < dominant_hz(up[half:], 16000)
    assert dominant_hz(down[:half], 16000) > dominant_hz(down[half:], 16000)


def test_unknown_earcon() -> None:
    with pytest.raises(ValueError, match="unknown earcon 'beep'"):
        earcons.render("beep", 16000, 50)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.shape[0], b.shape[0])
    return float(np.corrcoef(a[:n].astype(np.float64), b[:n].astype(np.float64))[0, 1])


def band_limited(n: int, rate: int, seed: int = 3) -> np.ndarray:
    """Noise below 3.5 kHz (speech band), so every rate from 8 kHz up carries it without aliasing."""
    x = noise(n, seed=seed).astype(np.float64)
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(n, 1 / rate) > 3500] = 0
    y = np.fft.irfft(spectrum, n)
    return np.round(y / np.abs(y).max() * 12000).astype(np.int16)


@pytest.mark.parametrize("in_rate", [8000, 16000, 22050, 48000])
def test_stream_resampler_matches_one_shot_resampling(in_rate: int) -> None:
    x = band_limited(in_rate, in_rate)  # one second
    chunk = in_rate * 40 // 1000
    r = StreamResampler(24000)
    parts = [r.process(x[i : i + chunk], in_rate) for i in range(0, x.shape[0], chunk)]
    parts.append(r.finish())
    y = np.concatenate(parts)
    assert y.dtype == np.int16
    assert abs(y.shape[0] - 24000) <= 2  # nothing lost at chunk boundaries or in the tail
    ref = soxr.resample(x, in_rate, 24000)
    assert correlation(y, ref) > 0.999
    assert not r.pending


def test_same_rate_passes_through_untouched() -> None:
    r = StreamResampler(24000)
    x = noise(480)
    assert r.process(x, 24000) is x


def test_rate_change_drains_the_old_stream_first() -> None:
    r = StreamResampler(24000)
    a = band_limited(1600, 16000)
    out_a = r.process(a, 16000)
    assert out_a.shape[0] < 2400  # the filter still holds some of it
    b = band_limited(800, 8000, seed=4)
    out_b = r.process(b, 8000)
    total = out_a.shape[0] + out_b.shape[0] + r.finish().shape[0]
    assert abs(total - (2400 + 2400)) <= 4
    r.process(a, 16000)
    r.reset()
    assert not r.pending and r.finish().shape[0] == 0


def test_work_per_chunk_is_bounded_by_the_output_cap() -> None:
    """The biggest legal chunk (8 kHz, a 1 MiB message: 33 s) to 48 kHz: only the newest cap's worth is
    resampled; the rest is counted at the output rate."""
    cap = 3 * 48000
    r = StreamResampler(48000, max_output_frames=cap)
    x = noise(512 * 1024)
    out = r.process(x, 8000)
    tail = r.finish()
    assert out.shape[0] + tail.shape[0] == pytest.approx(cap, abs=8)
    assert r.trimmed_frames == (x.shape[0] - cap * 8000 // 48000) * 6
    small = r.process(noise(800), 8000)  # under the cap: untouched
    assert (
        small.shape[0] + r.finish().shape[0] == pytest.approx(4800, abs=8)
        and r.trimmed_frames == (x.shape[0] - cap // 6) * 6
    )


@pytest.mark.parametrize("rate", [1, 7999, 48001, 384000, 2**32 - 1])
def test_rates_no_bot_means_are_refused_and_counted(rate: int) -> None:
    r = StreamResampler(24000, max_output_frames=72000)
    assert r.process(noise(32768), rate).shape[0] == 0
    assert r.refused_frames == 32768 and not r.pending
