"""Sample-rate conversion of bot audio to the speaker's rate: one soxr stream per source rate.

A streaming resampler keeps its filter state between chunks, so chunk boundaries do not click; `finish()`
drains the filter's tail at the end of an utterance and `reset()` forgets it on an interruption.

The work per chunk is bounded, whatever the bot sends: source rates outside `SOURCE_RATES` are refused
(the decoder already drops such frames; this is the second line), and a chunk that would resample to more
than `max_output_frames` (the playout cap, which would drop the excess anyway) loses its oldest input
before soxr sees it. What is cut is counted in `trimmed_frames` (at the output rate) and `refused_frames`.
"""

from __future__ import annotations

import numpy as np
import soxr

from voiceterm.protocol.base import BOT_AUDIO_RATES

# soxr "HQ" costs about 15 ms of CPU per minute of 16 kHz -> 24 kHz speech on a desktop core; the
# lower settings save almost nothing and alias audibly.
QUALITY = "HQ"
SOURCE_RATES = BOT_AUDIO_RATES  # 8 to 48 kHz: at most a ratio of 6 either way for a 8 to 48 kHz speaker


class StreamResampler:
    """Converts mono int16 chunks at a source rate in SOURCE_RATES to `out_rate`."""

    def __init__(
        self, out_rate: int, *, quality: str = QUALITY, max_output_frames: int | None = None
    ) -> None:
        self.out_rate = out_rate
        self.quality = quality
        self.max_output_frames = max_output_frames
        self.trimmed_frames = 0  # output-rate frames never made because a chunk exceeded max_output_frames
        self.refused_frames = 0  # input frames at a source rate outside SOURCE_RATES
        self._rate: int | None = None  # source rate of the open stream
        self._stream: soxr.ResampleStream | None = None

    @property
    def pending(self) -> bool:
        """True when the filter holds input that finish() would turn into output."""
        return self._stream is not None

    def process(self, frames: np.ndarray, in_rate: int) -> np.ndarray:
        """Resample one chunk. A change of source rate first drains the old stream."""
        if in_rate == self.out_rate:
            tail = self.finish()
            return frames if tail.size == 0 else np.concatenate((tail, frames))
        if in_rate not in SOURCE_RATES:
            self.refused_frames += int(frames.shape[0])
            return _EMPTY
        frames = self._bounded(frames, in_rate)
        head = _EMPTY
        if self._rate != in_rate:
            head = self.finish()
            self._stream = soxr.ResampleStream(in_rate, self.out_rate, 1, dtype="int16", quality=self.quality)
            self._rate = in_rate
        assert self._stream is not None
        out = self._stream.resample_chunk(frames)
        return out if head.size == 0 else np.concatenate((head, out))

    def _bounded(self, frames: np.ndarray, in_rate: int) -> np.ndarray:
        """The newest input that resamples to at most max_output_frames; the older rest is counted."""
        if self.max_output_frames is None:
            return frames
        keep = -(-self.max_output_frames * in_rate // self.out_rate)  # ceiling: the cap, not less
        excess = int(frames.shape[0]) - keep
        if excess <= 0:
            return frames
        self.trimmed_frames += excess * self.out_rate // in_rate
        return frames[excess:]

    def finish(self) -> np.ndarray:
        """Flush the filter's delayed output (end of a continuous stretch of audio)."""
        if self._stream is None:
            return _EMPTY
        tail = self._stream.resample_chunk(_EMPTY, last=True)
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget buffered input (interruption)."""
        self._stream = None
        self._rate = None


_EMPTY = np.zeros(0, dtype=np.int16)
