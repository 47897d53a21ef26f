"""The playout (jitter) buffer between the bot's audio and the speaker: pre-roll, cap, underrun, flush.

Pure and clock-free: it counts time in frames pulled by the speaker, so it behaves the same under a real
device clock, a wall-clock pacer or a test. It is not thread-safe; the speaker guards it with its lock.
Audio is S16_LE mono bytes throughout (what the link decodes and ALSA takes): no conversion on the way.
"""

from __future__ import annotations

import enum
from collections import deque

from voiceterm.record import record


class PlayoutState(enum.Enum):
    IDLE = "idle"  # nothing queued, nothing playing
    PREROLLING = "prerolling"  # audio queued, waiting for the pre-roll before it starts
    PLAYING = "playing"  # bot audio is being handed to the device
    STARVED = "starved"  # ran dry while playing; silence until audio returns or the gap ends the utterance


@record
class PlayoutStats:
    frames_played: int  # bot frames handed out by pull()
    underruns: int  # times the queue ran dry mid-utterance and audio came back within the window
    dropped_frames: int  # oldest frames dropped because the cap was exceeded
    flushed_frames: int  # frames dropped by flush()
    buffered_frames: int  # frames queued now


class PlayoutBuffer:
    """A bounded FIFO of S16_LE mono frames (bytes) with pre-roll and underrun handling.

    - Pre-roll: after being idle (or after an underrun) playback starts once `preroll_frames` are queued,
      or once the first queued frame has waited `preroll_frames` worth of pulls (a short final utterance
      must not be stuck forever).
    - Cap: beyond `cap_frames` the oldest frames are dropped (counted): late audio is worth less than
      current audio, and the cap bounds memory.
    - Underrun: a pull that finds fewer frames than asked while playing pads with silence and enters
      STARVED. Audio arriving within `underrun_window_frames` of pulled silence is an underrun (counted, and
      it pre-rolls again); after that the gap is the natural end of an utterance and the buffer is IDLE.
    - flush() drops everything queued at once (interruption).
    """

    def __init__(self, *, preroll_frames: int, cap_frames: int, underrun_window_frames: int) -> None:
        if cap_frames <= 0:
            raise ValueError("cap_frames must be positive")
        self.preroll_frames = max(0, min(preroll_frames, cap_frames))
        self.cap_frames = cap_frames
        self.underrun_window_frames = max(0, underrun_window_frames)
        self._chunks: deque[bytes] = deque()
        self._head = 0  # bytes of _chunks[0] already consumed
        self._buffered = 0
        self._state = PlayoutState.IDLE
        self._waited = 0  # PREROLLING: frames pulled since the first frame was queued
        self._gap = 0  # STARVED: silent frames pulled since the queue ran dry
        self._frames_played = 0
        self._underruns = 0
        self._dropped = 0
        self._flushed = 0

    # --- producer side ------------------------------------------------------------------------

    def push(self, frames: bytes) -> int:
        """Queue S16_LE mono frames. Returns how many old frames the cap made room by dropping."""
        if not isinstance(frames, bytes) or len(frames) % 2:
            raise ValueError("push() takes bytes of whole 16-bit frames")
        n = len(frames) // 2
        if n == 0:
            return 0
        if self._state is PlayoutState.STARVED:
            if self._gap < self.underrun_window_frames:
                self._underruns += 1
            self._enter_preroll()
        elif self._state is PlayoutState.IDLE:
            self._enter_preroll()
        self._chunks.append(frames)
        self._buffered += n
        return self._enforce_cap()

    def flush(self) -> int:
        """Drop everything queued; the next audio pre-rolls afresh. Returns the frames dropped."""
        dropped = self._buffered
        self._chunks.clear()
        self._head = 0
        self._buffered = 0
        self._flushed += dropped
        self._state = PlayoutState.IDLE
        self._waited = 0
        self._gap = 0
        return dropped

    # --- consumer side ------------------------------------------------------------------------

    def available(self) -> int:
        """Frames a pull would hand out as bot audio right now (0 while pre-rolling)."""
        if self._state is PlayoutState.PLAYING or (
            self._state is PlayoutState.PREROLLING and self._preroll_done()
        ):
            return self._buffered
        return 0

    def pull(self, n: int) -> tuple[bytes, int]:
        """Take exactly `n` frames for the device: bot audio first, silence after it.

        Returns (frames, bot_frames) where the first bot_frames frames are bot audio.
        """
        if n <= 0:
            return b"", 0
        state = self._state
        if state is PlayoutState.PREROLLING:
            if self._preroll_done():
                self._state = state = PlayoutState.PLAYING
            else:
                self._waited += n
                return bytes(2 * n), 0
        if state is PlayoutState.STARVED:
            self._gap += n
            if self._gap >= self.underrun_window_frames:
                self._state = PlayoutState.IDLE
            return bytes(2 * n), 0
        if state is PlayoutState.IDLE:
            return bytes(2 * n), 0
        take = min(n, self._buffered)
        out = self._take(take)
        self._frames_played += take
        if take < n:
            out += bytes(2 * (n - take))
            self._state = PlayoutState.STARVED
            self._gap = n - take
            if self._gap >= self.underrun_window_frames:
                self._state = PlayoutState.IDLE
        return out, take

    # --- views --------------------------------------------------------------------------------

    @property
    def state(self) -> PlayoutState:
        return self._state

    @property
    def buffered_frames(self) -> int:
        return self._buffered

    def stats(self) -> PlayoutStats:
        return PlayoutStats(
            frames_played=self._frames_played,
            underruns=self._underruns,
            dropped_frames=self._dropped,
            flushed_frames=self._flushed,
            buffered_frames=self._buffered,
        )

    # --- internals ----------------------------------------------------------------------------

    def _enter_preroll(self) -> None:
        self._state = PlayoutState.PREROLLING
        self._waited = 0
        self._gap = 0

    def _preroll_done(self) -> bool:
        return self._buffered >= self.preroll_frames or self._waited >= self.preroll_frames

    def _enforce_cap(self) -> int:
        excess = self._buffered - self.cap_frames
        if excess <= 0:
            return 0
        self._take(excess)
        self._dropped += excess
        return excess

    def _take(self, n: int) -> bytes:
        """Remove and return the oldest `n` frames (n <= buffered)."""
        if n == 0:
            return b""
        parts: list[bytes] = []
        need = 2 * n
        while need:
            head = self._chunks[0]
            start = self._head
            avail = len(head) - start
            if avail <= need:
                parts.append(head[start:] if start else head)
                self._chunks.popleft()
                self._head = 0
                need -= avail
            else:
                parts.append(head[start : start + need])
                self._head += need
                need = 0
        self._buffered -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)
