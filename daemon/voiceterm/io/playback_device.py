"""An open playback PCM as the speaker's writer thread uses it: write a block, know the fill, drop, count xruns,
sleep until the fill is down (on a pointer that moves in steps too); and the tap that tells the audio
front-end's echo reference what the device played (`ReferenceTap`).

The fill (frames written and not played yet) comes from the device's own pointer, or from a wall-clock pacer
for an unclocked PCM (a file or null device), which is switched to by itself when writes show the device
plays faster than real time. Used only from the thread that opened the PCM.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from voiceterm.io.alsa import EPIPE, AlsaPcm
from voiceterm.io.alsa_pacing import UNCLOCKED_WRITES, PlaybackPacer, UnclockedDetector
from voiceterm.io.audio_device_thread import Bell

log = logging.getLogger("voiceterm.audio")

WRITE_TRIES = 4  # a write is retried after an underrun, and continued if it came back short

MIN_WAIT_S = 0.0005  # shortest sleep of the writer (avoids a busy loop on rounding)
# A device whose pointer moves in steps (a period interrupt, PulseAudio's transfers) reports the same fill
# until the next step, so a sleep computed for a smoothly draining buffer ends too early and the writer
# would spin at MIN_WAIT_S (measured: 1,400-1,700 wake-ups a second beside another PulseAudio client). When
# the fill did not move during a whole sleep (not one a ring cut short), the device is taken for such a one
# until it is reopened (PlaybackDevice.stepped): the writer then sleeps until the fill could be down to low
# water at the device's rate, and at least this fraction of a period, so it wakes about once a period, as a
# blocking write would.
STALLED_WAIT_PERIODS = 0.25


class PlaybackDevice:
    """`pcm` with its clock: `fill()`, `write(block)`, `drop()`, and the xruns seen (`take_xruns()`)."""

    def __init__(self, pcm: AlsaPcm, *, wall_clock: bool) -> None:
        self.pcm = pcm
        self.rate = pcm.rate
        self.period = pcm.period_frames
        self.buffer = pcm.buffer_frames
        self.pacer = PlaybackPacer(self.rate) if wall_clock else None
        self._detector = UnclockedDetector(UNCLOCKED_WRITES)
        self._xruns = 0  # underruns seen during writes (the device ran dry under a write)
        # The pointer moves in steps (a period interrupt, PulseAudio's transfers): the fill read the same
        # before and after a whole sleep. The writer then sleeps longer (`sleep`, STALLED_WAIT_PERIODS).
        self.stepped = False
        self._slept_at: int | None = None  # the fill before the writer's last whole sleep

    def fill(self) -> int:
        """Frames queued in the device now."""
        fill = self.pacer.fill() if self.pacer is not None else self.pcm.fill()
        if self._slept_at is not None and fill >= self._slept_at:
            self.stepped = True
        self._slept_at = None
        return fill

    def sleep(self, bell: Bell, fill: int, seconds: float, low: int) -> bool:
        """Sleep `seconds` or until `bell` rings (True), with `fill` in the device. On a device whose pointer
        moves in steps, sleep until the fill could be down to `low` instead (see STALLED_WAIT_PERIODS)."""
        if self.stepped:
            seconds = max(seconds, STALLED_WAIT_PERIODS * self.period / self.rate, (fill - low) / self.rate)
        rung = bell.wait(max(MIN_WAIT_S, seconds))
        self._slept_at = None if rung else fill  # woken early: the sleep says nothing about the pointer
        return rung

    def write(self, block: bytes) -> tuple[float, int]:
        """Write all of `block` (S16_LE); returns (perf_counter time it returned, the fill after it)."""
        data = memoryview(block)
        total = len(block) // 2
        sent = 0
        for _ in range(WRITE_TRIES):
            n = self.pcm.write(data[2 * sent :])
            if n == EPIPE:
                self._xruns += 1  # the device ran dry during the write; pyalsaaudio re-prepares next time
                continue
            if n > 0:
                sent += n
                if sent >= total:
                    break
        done = time.perf_counter()
        pacer = self.pacer
        if pacer is not None:
            pacer.wrote(total)
            return done, pacer.fill()
        fill = self.pcm.fill()
        if self._detector.observe(fill < total // 2):
            log.warning(
                'playback device "%s" plays faster than real time (a file or null PCM?); '
                'pacing it by the wall clock; set audio.pacing = "wall-clock" to say so',
                self.pcm.device,
            )
            self.pacer = PlaybackPacer(self.rate)
        return done, fill

    def drop(self) -> None:
        """Discard what the device holds (silence at once)."""
        self.pcm.drop()
        if self.pacer is not None:
            self.pacer.reset()

    def take_xruns(self) -> int:
        """Underruns since the last call: during writes, and seen by the device's (or the pacer's) state."""
        n = self._xruns
        self._xruns = 0
        if self.pacer is not None:
            n += self.pacer.underruns
            self.pacer.underruns = 0
        n += self.pcm.xruns
        self.pcm.xruns = 0
        return n


class ReferenceTap:
    """What the device plays, told to the front-end's echo reference (device thread): every block written
    with the time its first frame leaves the device, a drop, a closed device. Does nothing without one."""

    def __init__(self, reference: Any) -> None:
        self.reference = reference  # io/frontend.FrontEnd or None

    def played(self, block: bytes, done: float, fill_after: int, rate: int) -> None:
        """The block just written starts playing once the `fill_after - len(block)` frames ahead of it have."""
        if self.reference is not None:
            self.reference.played(block, done + max(0, fill_after - len(block) // 2) / rate)

    def flushed(self) -> None:
        if self.reference is not None:
            self.reference.flushed(time.perf_counter())

    def reset(self) -> None:
        if self.reference is not None:
            self.reference.playback_reset()
