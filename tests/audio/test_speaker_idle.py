"""The speaker while it has nothing to play: whole-buffer silence top-ups instead of a period at a time, back to
period writes as soon as bot audio is queued, and `playing_changed()` told by the writer (nothing polls).
Real alsa-lib file PCMs; the writes are counted, never timed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import trio

from voiceterm.config import EarconsConfig
from voiceterm.io.speaker import Speaker
from voiceterm.protocol.events import AudioChunk
from voiceterm_devkit.alsa_files import noise, read_raw

if TYPE_CHECKING:
    from .conftest import AlsaEnv

pytestmark = pytest.mark.alsa

RATE = 24000
PERIOD = RATE * 20 // 1000
BUFFER = 4 * PERIOD
LOW_WATER = 2 * PERIOD


class _CountingPcm:
    """A real file PCM whose writes are recorded: (frames, whether any sample is not zero)."""

    def __init__(self, pcm: Any, writes: list[tuple[int, bool]]) -> None:
        self._pcm = pcm
        self._writes = writes

    def write(self, data: Any) -> int:
        block = bytes(data)
        self._writes.append((len(block) // 2, any(block)))
        return self._pcm.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pcm, name)


class _CountingSpeaker(Speaker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[tuple[int, bool]] = []

    def _open(self) -> Any:
        return _CountingPcm(super()._open(), self.writes)


async def test_an_idle_speaker_tops_the_buffer_up_and_bot_audio_goes_a_period_at_a_time(
    speaker_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    signal = noise(RATE // 2, seed=71)  # no zero sample
    spk = _CountingSpeaker(audio_config(), EarconsConfig(enabled=False))
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            await wait_until(lambda: len(spk.writes) >= 6, what="idle writes")
            idle = list(spk.writes)
            samples = signal.tobytes()
            for i in range(0, len(samples), 1920):
                spk.enqueue(AudioChunk(samples[i : i + 1920], RATE))
            await wait_until(lambda: spk.stats()["frames_played_total"] >= signal.shape[0], what="playback")
            await wait_until(lambda: not spk.playing, what="the end of playback")
            nursery.cancel_scope.cancel()
    # Idle: the first write fills the empty buffer, each later one tops it up from low water.
    assert idle[0] == (BUFFER, False)
    assert all(not sound and frames >= BUFFER - LOW_WATER - RATE // 1000 for frames, sound in idle[1:])
    # With audio queued: one period per write, from the first block with bot audio to the last.
    sounding = [i for i, (_, sound) in enumerate(spk.writes) if sound]
    assert all(spk.writes[i][0] == PERIOD for i in range(sounding[0], sounding[-1] + 1))
    out = read_raw(speaker_env.path("out.raw"))
    start = int(np.flatnonzero(out)[0])
    np.testing.assert_array_equal(out[start : start + signal.shape[0]], signal)
    assert spk.stats()["xruns_total"] == 0 and spk.stats()["underruns_total"] == 0


async def test_playing_changed_says_when_bot_audio_starts_and_ends(
    speaker_env: AlsaEnv, audio_config: Any
) -> None:
    spk = Speaker(audio_config(preroll_ms=0), EarconsConfig(enabled=False))
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            spk.enqueue(AudioChunk(noise(RATE // 10, seed=72).tobytes(), RATE))
            await spk.playing_changed()
            assert spk.playing
            await spk.playing_changed()
            assert not spk.playing  # played out: the writer saw the last frame leave
            spk.enqueue(AudioChunk(noise(RATE, seed=73).tobytes(), RATE))
            await spk.playing_changed()
            assert spk.playing
            spk.flush()
            await spk.playing_changed()
            assert not spk.playing  # flushed: at once
            nursery.cancel_scope.cancel()


# The pointer moves by a little less than two periods at a time (PulseAudio beside another client moves it by
# tens of milliseconds): after the writes a step allows, the room left is a few frames short of a period.
STEP = 2 * PERIOD - 4


class _SteppedPcm:
    """A real file PCM behind a device clock whose pointer moves in steps, as a period interrupt or PulseAudio's
    transfers move it: the fill reads the same until the next step."""

    def __init__(self, pcm: Any, reads: list[int]) -> None:
        self._pcm = pcm
        self._reads = reads
        self._written = 0
        self._started: float | None = None

    def _played(self) -> int:
        if self._started is None:
            return 0
        elapsed = int((time.perf_counter() - self._started) * RATE)
        return min(self._written, elapsed // STEP * STEP)

    def fill(self) -> int:
        self._reads.append(1)
        played = self._played()
        if played >= self._written:  # ran dry: the device starts again from empty
            self._written, self._started = 0, None
        return self._written - played

    def write(self, data: Any) -> int:
        n = self._pcm.write(data)
        if n > 0:
            if self._started is None:
                self._started = time.perf_counter()
            self._written += n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pcm, name)


class _SteppedSpeaker(Speaker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fill_reads: list[int] = []

    def _open(self) -> Any:
        return _SteppedPcm(super()._open(), self.fill_reads)


@pytest.mark.parametrize("audio", [True, False], ids=["playing", "idle"])
async def test_a_device_whose_pointer_moves_in_steps_does_not_make_the_writer_spin(
    speaker_env: AlsaEnv, audio_config: Any, wait_until: Any, audio: bool
) -> None:
    """Between two steps of the pointer the fill does not move; a writer that trusted its computed sleep would
    wake every MIN_WAIT_S until the next step (dozens of times a period). It sleeps at least a quarter period
    once the fill did not move: a busy machine only lowers the count of reads, never raises it."""
    spk = _SteppedSpeaker(audio_config(pacing="device"), EarconsConfig(enabled=False))
    seconds = 1.0
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            if audio:
                spk.enqueue(AudioChunk(noise(int(RATE * seconds), seed=74).tobytes(), RATE))
                await wait_until(
                    lambda: spk.stats()["frames_played_total"] >= RATE * seconds, what="playback"
                )
            else:
                await trio.sleep(seconds)  # the span the reads are counted over, not a wait for a race
            periods = seconds * RATE / PERIOD
            reads = len(spk.fill_reads)
            nursery.cancel_scope.cancel()
    assert reads / periods < 8, f"{reads} fill reads in {periods:.0f} periods"
    assert spk.stats()["xruns_total"] == 0
