"""The canceller's figures, measured around it: ERLE, divergence and the echo's delay.

Pure (numpy only). The WebRTC binding in use exposes no statistics of its own, so the front-end measures
them from the three signals it has per chunk — the mic before the canceller (`near`), the aligned
reference (`far`) and the canceller's output before any gain (`out`):

- ERLE (echo return loss enhancement): near power over output power, in dB, over the chunks in which the
  reference played within the last `ECHO_TAIL_S` (so the echo's delay and the room's tail are inside), per
  block of `BLOCK_S` such chunks; the figure is the median of the last `ERLE_BLOCKS` blocks, so a user
  talking over the bot in one block (which lowers that block's ratio) does not hide the canceller's.
- Divergence: a block whose output is louder than its input by `DIVERGED_DB` while the reference played
  (a canceller that adds echo instead of removing it).
- Delay: the lag at which the near signal's energy envelope best follows the reference's, in 2 ms steps up
  to `MAX_DELAY_S`, from the last `DELAY_WINDOW_S` whenever the reference was active enough; only a clear
  peak (correlation above `DELAY_MIN_CORRELATION`) replaces the last estimate. This is the delay left after
  the front-end's own alignment: what the canceller had to find.

Costs per chunk: a copy into the history and up to three dot products; the envelopes and the correlation
are computed every `DELAY_EVERY_S`, in one pass.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from voiceterm.record import record

__all__ = ["EchoFigures", "EchoMeter"]

ACTIVE_DBFS = -50.0  # a reference chunk louder than this counts as the bot playing
ECHO_TAIL_S = 0.5  # after the reference stops, its echo is still arriving for this long
BLOCK_S = 1.0  # seconds of echo-bearing chunks per ERLE figure
ERLE_BLOCKS = 8  # the figure is the median of the last this many blocks
DIVERGED_DB = 1.0
ENVELOPE_S = 0.002  # delay resolution
MAX_DELAY_S = 0.5
DELAY_WINDOW_S = 2.0
DELAY_EVERY_S = 2.0
DELAY_MIN_CORRELATION = 0.5
DELAY_MIN_ACTIVE = 0.3  # fraction of the window in which the reference must have played


@record
class EchoFigures:
    erle_db: float | None  # the last block's; None before the bot has spoken for a block
    delay_ms: float | None  # the last clear estimate
    delay_correlation: float | None
    erle_blocks: int
    diverged_blocks: int


class EchoMeter:
    """Feed `observe(near, far, out)` once per chunk (int16 arrays of one length); read `figures()`."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._active_power = (10 ** (ACTIVE_DBFS / 10)) * 32768.0**2  # mean square of an active chunk
        self._tail = 0  # samples of echo still expected after the reference went quiet
        self._near = 0.0
        self._out = 0.0
        self._block = 0
        self._erles: deque[float] = deque(maxlen=ERLE_BLOCKS)
        self.erle_blocks = 0
        self.diverged_blocks = 0
        self._step = max(1, round(ENVELOPE_S * rate))
        # The last DELAY_WINDOW_S + MAX_DELAY_S of both signals, raw: envelopes are computed only when the
        # delay is estimated, in one vectorised pass.
        size = round((DELAY_WINDOW_S + MAX_DELAY_S) / ENVELOPE_S) * self._step
        self._far_hist = np.zeros(size, dtype=np.int16)
        self._near_hist = np.zeros(size, dtype=np.int16)
        self._hist_pos = 0  # samples written so far
        self._active = 0  # ... of which with the reference playing, since the last estimate
        self._since_delay = 0
        self.delay_ms: float | None = None
        self.delay_correlation: float | None = None

    def reset(self) -> None:
        """The canceller was reset: its convergence starts over (estimates kept until replaced)."""
        self._near = self._out = 0.0
        self._block = 0
        self._tail = 0
        self._hist_pos = self._active = self._since_delay = 0

    def observe(self, near: np.ndarray, far: np.ndarray, out: np.ndarray) -> None:
        n = near.shape[0]
        f = far.astype(np.float32)
        active = float(np.dot(f, f)) > self._active_power * n
        self._remember(near, far, n, active)
        if active:
            self._tail = round(ECHO_TAIL_S * self.rate)
        elif self._tail > 0:
            self._tail -= n
        else:
            return
        x = near.astype(np.float32)
        y = out.astype(np.float32)
        self._near += float(np.dot(x, x))
        self._out += float(np.dot(y, y))
        self._block += n
        if self._block >= BLOCK_S * self.rate:
            self._close_block()

    def _close_block(self) -> None:
        if self._near > 0:
            ratio_db = 10 * math.log10(self._near / max(self._out, 1.0))
            self._erles.append(ratio_db)
            self.erle_blocks += 1
            if ratio_db < -DIVERGED_DB:
                self.diverged_blocks += 1
        self._near = self._out = 0.0
        self._block = 0

    @property
    def erle_db(self) -> float | None:
        """The median of the last ERLE_BLOCKS blocks: a user talking over the bot in one does not hide it."""
        return float(np.median(self._erles)) if self._erles else None

    def _remember(self, near: np.ndarray, far: np.ndarray, n: int, active: bool) -> None:
        size = self._far_hist.shape[0]
        i = self._hist_pos % size
        k = min(n, size - i)
        self._far_hist[i : i + k] = far[:k]
        self._near_hist[i : i + k] = near[:k]
        if k < n:
            self._far_hist[: n - k] = far[k:]
            self._near_hist[: n - k] = near[k:]
        self._hist_pos += n
        if active:
            self._active += n
        self._since_delay += n
        if self._since_delay >= DELAY_EVERY_S * self.rate:
            self._estimate_delay()

    def _estimate_delay(self) -> None:
        enough = self._active >= DELAY_MIN_ACTIVE * self._since_delay
        self._since_delay = self._active = 0
        size = self._far_hist.shape[0]
        if self._hist_pos < size or not enough:
            return
        start = self._hist_pos % size  # oldest first
        step = self._step
        far = _envelope(np.roll(self._far_hist, -start), step)
        near_all = _envelope(np.roll(self._near_hist, -start), step)
        window = round(DELAY_WINDOW_S / ENVELOPE_S)
        max_lag = far.shape[0] - window
        near = near_all[max_lag:]  # the newest `window` values
        near = near - near.mean()
        near_norm = float(np.linalg.norm(near))
        if near_norm == 0:
            return
        # Window j of far (far[j : j + window]) pairs with near at a delay of max_lag - j steps; near is
        # centred, so the raw correlation equals the centred one. Window norms come from running sums.
        raw = np.correlate(far, near, mode="valid")
        c1 = np.concatenate(([0.0], np.cumsum(far)))
        c2 = np.concatenate(([0.0], np.cumsum(far * far)))
        s1 = c1[window:] - c1[:-window]
        s2 = c2[window:] - c2[:-window]
        norms = np.sqrt(np.maximum(s2 - s1 * s1 / window, 0.0))
        scores = raw / np.maximum(norms * near_norm, 1e-12)
        best = int(np.argmax(scores))
        correlation = float(scores[best])
        if correlation >= DELAY_MIN_CORRELATION:
            self.delay_ms = (max_lag - best) * ENVELOPE_S * 1000
            self.delay_correlation = correlation

    def figures(self) -> EchoFigures:
        return EchoFigures(
            erle_db=self.erle_db,
            delay_ms=self.delay_ms,
            delay_correlation=self.delay_correlation,
            erle_blocks=self.erle_blocks,
            diverged_blocks=self.diverged_blocks,
        )


def _envelope(x: np.ndarray, step: int) -> np.ndarray:
    """RMS per `step` samples."""
    k = x.shape[0] // step
    z = x[: k * step].astype(np.float64).reshape(k, step)
    return np.sqrt(np.einsum("ij,ij->i", z, z) / step)
