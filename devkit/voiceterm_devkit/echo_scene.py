"""A synthetic room, offline: the bot's voice through a small loudspeaker and a room back into the microphone,
with the user talking now and then, some of it over the bot. Pure numpy, reproducible from a seed.

The echo path is what makes cancellers fail in practice: a delay (the device buffers and the air), a small
speaker's band limits, its soft clipping when driven hard, a room tail of a few hundred milliseconds, the
attenuation, and optionally a clock drift between the playback and capture devices. `Scene` keeps every
component apart (echo, user, noise) so the figures can be computed exactly:

- ERLE (echo return loss enhancement) over bot-only speech: mic power / output power, in dB;
- double-talk loss: how much quieter the user's own speech comes out while the bot also talks, in dB,
  from the output's projection on the clean user signal (residual echo does not count as user speech).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import soxr

FRAME_MS = 10


def _bandpass_fir(rate: int, low_hz: float, high_hz: float, taps: int = 255) -> np.ndarray:
    """A linear-phase windowed-sinc band-pass: a small loudspeaker's useful band."""
    n = np.arange(taps) - (taps - 1) / 2

    def lowpass(fc: float) -> np.ndarray:
        return 2 * fc / rate * np.sinc(2 * fc / rate * n)

    h = (lowpass(high_hz) - lowpass(low_hz)) * np.hamming(taps)
    return h / np.max(np.abs(np.fft.rfft(h, 4096)))


def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Linear convolution, truncated to len(x)."""
    size = 1 << math.ceil(math.log2(len(x) + len(h) - 1))
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)
    return y[: len(x)]


@dataclass(frozen=True)
class EchoPath:
    """Loudspeaker to microphone: `delay_ms`, `gain_db`, band `low_hz`-`high_hz`, soft clipping with
    `drive` (1 = none), an exponential room tail of `tail_s` (time for -60 dB) at `tail_db` below the
    direct sound, and `drift_ppm` (capture clock faster than playback by that much)."""

    delay_ms: float = 80.0
    gain_db: float = -20.0
    low_hz: float = 200.0
    high_hz: float = 6000.0
    drive: float = 1.5
    tail_s: float = 0.3
    tail_db: float = -12.0
    drift_ppm: float = 0.0
    seed: int = 3

    def impulse_response(self, rate: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        delay = round(self.delay_ms * rate / 1000)
        n_tail = max(1, round(self.tail_s * rate))
        decay = np.exp(-np.arange(n_tail) * (math.log(1000) / n_tail))  # -60 dB over tail_s
        room = np.zeros(n_tail + 1)
        room[0] = 1.0
        room[1:] = rng.standard_normal(n_tail) * decay * 10 ** (self.tail_db / 20) / math.sqrt(n_tail / 8)
        speaker = _bandpass_fir(rate, self.low_hz, self.high_hz)
        h = np.convolve(speaker, room)
        # The FIR's own group delay is part of the path: subtract it from the requested delay.
        lead = (len(speaker) - 1) // 2
        out = np.zeros(max(0, delay - lead) + len(h))
        out[max(0, delay - lead) :] = h
        return out * 10 ** (self.gain_db / 20)

    def apply(self, far: np.ndarray, rate: int) -> np.ndarray:
        """The echo (float, full scale 1.0) of `far` (int16 as played)."""
        x = far.astype(np.float64) / 32768.0
        if self.drive != 1.0:
            x = np.tanh(self.drive * x) / math.tanh(self.drive)
        y = fft_convolve(x, self.impulse_response(rate))
        if self.drift_ppm:
            y = soxr.resample(y, rate, rate * (1 + self.drift_ppm * 1e-6))[: len(x)]
            y = np.pad(y, (0, len(x) - len(y)))
        return y


@dataclass
class Scene:
    """The signals of one synthetic run at `rate`, each `n` samples long.

    far: what the speaker plays (int16); echo, user, noise: the mic's components (float); near: their sum
    as the mic delivers it (int16). bot_only / double_talk: boolean masks per sample.
    """

    rate: int
    far: np.ndarray
    echo: np.ndarray
    user: np.ndarray
    noise: np.ndarray
    bot_active: np.ndarray
    user_active: np.ndarray
    near: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        mix = self.echo + self.user + self.noise
        self.near = (np.clip(mix, -1.0, 1.0) * 32767.0).astype(np.int16)

    @property
    def n(self) -> int:
        return len(self.far)

    def masks(self, settle_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(bot-only, double-talk) sample masks, ignoring the first `settle_s` seconds (convergence)."""
        settled = np.arange(self.n) >= settle_s * self.rate
        return (
            settled & self.bot_active & ~self.user_active,
            settled & self.bot_active & self.user_active,
        )


def activity(x: np.ndarray, rate: int, threshold_db: float = -45.0) -> np.ndarray:
    """Per sample: does the 10 ms frame around it hold sound above `threshold_db` dBFS (int16 or float)?"""
    scale = 32768.0 if x.dtype == np.int16 else 1.0
    f = rate * FRAME_MS // 1000
    n = len(x) // f * f
    frames = x[:n].astype(np.float64).reshape(-1, f) / scale
    rms_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    active = np.repeat(rms_db > threshold_db, f)
    return np.pad(active, (0, len(x) - n))


def dilate(mask: np.ndarray, n: int) -> np.ndarray:
    """`mask` widened by `n` samples on both sides."""
    if n <= 0 or not mask.any():
        return mask
    kernel = np.ones(2 * n + 1)
    return np.convolve(mask.astype(np.float64), kernel, mode="same") > 0.5


def build_scene(
    rate: int,
    bot_lines: list[np.ndarray],
    user_lines: list[np.ndarray],
    *,
    path: EchoPath | None = None,
    noise_dbfs: float = -90.0,
    user_gain_db: float = -6.0,
    gap_s: float = 0.8,
    seed: int = 1,
) -> Scene:
    """Bot sentences with gaps; the user speaks alone after every other sentence and over the bot in the
    middle of the others (double talk)."""
    path = path or EchoPath()
    rng = np.random.default_rng(seed)
    far_parts, user_parts = [], []
    gap = np.zeros(round(gap_s * rate), dtype=np.int16)
    for i, line in enumerate(bot_lines):
        u = user_lines[i % len(user_lines)].astype(np.float64) / 32768.0 * 10 ** (user_gain_db / 20)
        if i % 2 == 0:
            # The user answers in the gap after the sentence: bot alone, then user alone.
            far_parts += [line, gap, np.zeros(len(u), np.int16), gap]
            user_parts += [np.zeros(len(line) + len(gap)), u, np.zeros(len(gap))]
        else:
            # The user talks over the middle of the sentence.
            start = max(0, (len(line) - len(u)) // 2)
            track = np.zeros(max(len(line), start + len(u)))
            track[start : start + len(u)] = u
            far_parts += [line, np.zeros(len(track) - len(line), np.int16), gap]
            user_parts += [track, np.zeros(len(gap))]
    far = np.concatenate(far_parts).astype(np.int16)
    user = np.concatenate(user_parts)
    user = np.pad(user, (0, len(far) - len(user)))[: len(far)]
    echo = path.apply(far, rate)
    noise = rng.standard_normal(len(far)) * 10 ** (noise_dbfs / 20)
    return Scene(
        rate=rate,
        far=far,
        echo=echo,
        user=user,
        noise=noise,
        bot_active=activity(far, rate),
        # Any trace of the user counts (their quiet syllables are far above a cancelled echo), and a
        # margin around it keeps the bot-only figure free of the user's speech.
        user_active=dilate(activity(user, rate, threshold_db=-100.0), round(0.1 * rate)),
    )


def erle_db(near: np.ndarray, out: np.ndarray, mask: np.ndarray) -> float:
    """10 log10 of mic power over output power where `mask` holds."""
    a = near[mask].astype(np.float64)
    b = out[mask].astype(np.float64)
    return 10 * math.log10((np.mean(a**2) + 1e-9) / (np.mean(b**2) + 1e-9))


def output_lag(clean: np.ndarray, out: np.ndarray, mask: np.ndarray, max_lag: int = 480) -> int:
    """Samples by which `out` lags `clean` where `mask` holds (a processor's own delay), by cross-correlation."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return 0
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    c = clean[lo:hi] * mask[lo:hi]
    y = out[lo : hi + max_lag].astype(np.float64)
    y = np.pad(y, (0, len(c) + max_lag - len(y)))
    scores = [float(np.dot(c, y[k : k + len(c)])) for k in range(max_lag + 1)]
    return int(np.argmax(scores))


def speech_loss_db(clean: np.ndarray, out: np.ndarray, mask: np.ndarray, rate: int, lag: int = 0) -> float:
    """How much of `clean` (float, the user at the mic) is left in `out` (int16, lagging by `lag` samples)
    where `mask` holds, in dB (positive = quieter). Per 20 ms frame, the least-squares gain of out onto
    clean, so residual echo and noise in `out` do not count as the user's speech; power-weighted."""
    f = rate // 50
    y = np.pad(out.astype(np.float64) / 32768.0, (0, lag))[lag:]
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return float("nan")
    num = den = 0.0
    for start in np.unique(idx // f) * f:
        c = clean[start : start + f]
        o = y[start : start + f]
        cc = float(np.dot(c, c))
        if cc <= 1e-10:
            continue
        g = float(np.dot(o, c)) / cc  # this frame's gain of the user's speech
        num += cc * g * g
        den += cc
    if den == 0 or num <= 0:
        return float("inf")
    return -10 * math.log10(num / den)


__all__ = [
    "EchoPath",
    "Scene",
    "activity",
    "build_scene",
    "dilate",
    "erle_db",
    "fft_convolve",
    "output_lag",
    "speech_loss_db",
]
