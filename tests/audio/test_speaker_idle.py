"""The speaker while it has nothing to play: the idle fill topped up in one write instead of a period at a time,
dropped by the first sound, two-period refills while playing, and `playing_changed()` told by the writer
(nothing polls). Real alsa-lib file PCMs; the writes are counted, never timed."""

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


class _Tap:
    """Stands in for the front-end's reference tap: what the writer reports of every write and drop."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int, bool]] = []  # (kind, frames, fill after, sound)

    def played(self, block: bytes, done: float, fill_after: int, rate: int) -> None:
        self.events.append(("write", len(block) // 2, fill_after, any(block)))

    def flushed(self) -> None:
        self.events.append(("drop", 0, 0, False))

    def reset(self) -> None:
        pass


def _tapped(spk: Speaker) -> _Tap:
    tap = _Tap()
    spk._tap = tap  # type: ignore[assignment]  # the writer reports every write and drop here
    return tap


SLACK = RATE // 1000


@pytest.mark.parametrize("idle_fill_ms", [320, 0])
async def test_an_idle_speaker_fills_its_buffer_and_the_first_sound_drops_the_fill(
    speaker_env: AlsaEnv, audio_config: Any, wait_until: Any, idle_fill_ms: int
) -> None:
    """Idle: one silence write fills the device (idle fill included) and each later one tops it up from low
    water. The first bot audio drops the idle fill and starts behind at most low water; while playing the
    writer keeps to `buffer_periods` and refills two periods at a time (more after a late wake-up). What it wrote plays bit-exact."""
    signal = noise(RATE // 2, seed=71)  # no zero sample
    spk = Speaker(audio_config(idle_fill_ms=idle_fill_ms), EarconsConfig(enabled=False))
    device_buffer = max(BUFFER, idle_fill_ms * RATE // 1000)
    tap = _tapped(spk)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            await wait_until(lambda: len(tap.events) >= 3, what="idle writes")
            idle = list(tap.events)
            samples = signal.tobytes()
            for i in range(0, len(samples), 1920):
                spk.enqueue(AudioChunk(samples[i : i + 1920], RATE))
            await wait_until(lambda: spk.stats()["frames_played_total"] >= signal.shape[0], what="playback")
            await wait_until(lambda: not spk.playing, what="the end of playback")
            nursery.cancel_scope.cancel()
    first_sound = next(i for i, e in enumerate(tap.events) if e[3])
    assert idle[0] == ("write", device_buffer, device_buffer, False)  # the empty device filled in one write
    assert all(
        kind == "write" and fill >= device_buffer - SLACK and frames >= device_buffer - LOW_WATER - SLACK
        for kind, frames, fill, _ in idle
    )
    drops = [e for e in tap.events[:first_sound] if e[0] == "drop"]
    assert len(drops) == (1 if idle_fill_ms else 0)  # the idle fill ahead of the first sound, and only it
    _, frames, fill, _ = tap.events[first_sound]
    assert fill - frames <= LOW_WATER + PERIOD + SLACK  # behind the low fill kept while pre-rolling
    sounding = [e for e in tap.events[first_sound:] if e[0] == "write" and e[3]]
    assert all(frames % PERIOD == 0 and fill <= BUFFER for _, frames, fill, _ in sounding)
    periods = signal.shape[0] // PERIOD
    assert len(sounding) <= periods // 2 + 2, [e[1] // PERIOD for e in sounding]
    out = read_raw(speaker_env.path("out.raw"))
    start = int(np.flatnonzero(out)[0])
    np.testing.assert_array_equal(out[start : start + signal.shape[0]], signal)
    assert spk.stats()["xruns_total"] == 0 and spk.stats()["underruns_total"] == 0


async def test_with_an_echo_reference_the_stream_is_unbroken_and_written_a_period_at_a_time(
    speaker_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    """The front-end's reference follows one unbroken stream kept well ahead of the capture side: no idle fill
    beyond the playing buffer (the first sound drops nothing), and bot audio goes a period per write."""

    class Reference:
        def played(self, data: bytes, play_at: float) -> None: ...
        def flushed(self, at: float) -> None: ...
        def playback_reset(self) -> None: ...

    signal = noise(RATE // 4, seed=75)  # no zero sample
    spk = Speaker(audio_config(), EarconsConfig(enabled=False), reference=Reference())
    tap = _tapped(spk)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            await wait_until(lambda: len(tap.events) >= 2, what="idle writes")
            spk.enqueue(AudioChunk(signal.tobytes(), RATE))
            await wait_until(lambda: spk.stats()["frames_played_total"] >= signal.shape[0], what="playback")
            nursery.cancel_scope.cancel()
    assert tap.events[0][1] == BUFFER  # the idle top-up fills the small buffer only
    assert all(kind == "write" and fill <= BUFFER for kind, _, fill, _ in tap.events)
    sounding = [frames for kind, frames, _, sound in tap.events if sound]
    assert sounding and all(frames == PERIOD for frames in sounding)


async def test_an_earcon_after_idle_drops_the_idle_fill(
    speaker_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    spk = Speaker(audio_config(), EarconsConfig(volume_percent=50))
    tap = _tapped(spk)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            await wait_until(lambda: len(tap.events) >= 2, what="idle writes")
            spk.earcon("press")
            await wait_until(lambda: any(e[3] for e in tap.events), what="the tone")
            nursery.cancel_scope.cancel()
    first_sound = next(i for i, e in enumerate(tap.events) if e[3])
    # The idle fill dropped, the low fill written again, then the tone behind it.
    assert [e[0] for e in tap.events[first_sound - 2 : first_sound]] == ["drop", "write"]
    _, frames, fill, sound = tap.events[first_sound - 1]
    assert frames == LOW_WATER and fill >= LOW_WATER - SLACK and not sound
    _, frames, fill, _ = tap.events[first_sound]
    assert LOW_WATER - SLACK <= fill - frames <= LOW_WATER  # the tone is not later than from a small buffer


async def test_a_flush_while_idle_keeps_the_idle_fill(
    speaker_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    """A bell that brings nothing to play (a flush of nothing) does not restart the device."""
    spk = Speaker(audio_config(), EarconsConfig(enabled=False))
    tap = _tapped(spk)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(spk.run)
            await wait_until(lambda: len(tap.events) >= 2, what="idle writes")
            assert spk.flush(trio.current_time()) == 0
            n = len(tap.events)
            await wait_until(lambda: len(tap.events) >= n + 2, what="more idle writes")
            nursery.cancel_scope.cancel()
    assert all(e[0] == "write" and not e[3] for e in tap.events)


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

    def drop(self) -> None:
        self._pcm.drop()
        self._written, self._started = 0, None

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
