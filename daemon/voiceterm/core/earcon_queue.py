"""Earcons waiting to play, mixed over the speaker's blocks: pure, S16_LE bytes in and out (no numpy).

A tone is mixed over whatever the block holds (bot audio or silence), never instead of it, so it neither
delays nor cuts the bot: over bot audio the samples are added with saturation, over the silence after it the
tone is copied. At most `max_waiting` tones wait; beyond that the oldest is dropped and counted. Not
thread-safe: the speaker guards it with its lock.
"""

from __future__ import annotations

import sys
from array import array
from collections import deque

__all__ = ["EarconQueue"]

_SWAP = sys.byteorder != "little"  # array("h") is native-endian; the audio is little-endian


def _samples(pcm: bytes) -> array:
    out = array("h", pcm)
    if _SWAP:
        out.byteswap()
    return out


def _bytes(samples: array) -> bytes:
    if _SWAP:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


class EarconQueue:
    """Tones in order of arrival; `mix()` lays the next frames of them over a block."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self.dropped = 0
        self._tones: deque[array] = deque()
        self._pos = 0  # frames of the first tone already played

    def __bool__(self) -> bool:
        return bool(self._tones)

    def add(self, tone: bytes) -> None:
        """Queue a tone (S16_LE mono at the device rate); the oldest waiting one goes beyond the limit."""
        if len(self._tones) >= self.max_waiting:
            self._tones.popleft()
            self._pos = 0
            self.dropped += 1
        self._tones.append(_samples(tone))

    def mix(self, block: bytes, bot: int) -> bytes:
        """`block` with the waiting tones over it; its first `bot` frames are bot audio, the rest silence."""
        if not self._tones:
            return block
        out = _samples(block)
        n = len(out)
        pos = 0
        while pos < n and self._tones:
            tone = self._tones[0]
            take = min(n - pos, len(tone) - self._pos)
            part = tone[self._pos : self._pos + take]
            end = pos + take
            over_bot = max(pos, min(end, bot))  # [pos, over_bot) has bot audio under it
            if over_bot > pos:
                under = out[pos:over_bot]
                out[pos:over_bot] = array(
                    "h",
                    [min(32767, max(-32768, a + b)) for a, b in zip(under, part[: len(under)], strict=True)],
                )
            if end > over_bot:
                out[over_bot:end] = part[over_bot - pos :]
            pos = end
            self._pos += take
            if self._pos >= len(tone):
                self._tones.popleft()
                self._pos = 0
        return _bytes(out)
