"""The speaker while it has nothing to play: whole-buffer silence top-ups instead of a period at a time, back to
period writes as soon as bot audio is queued, and `playing_changed()` told by the writer (nothing polls).
Real alsa-lib file PCMs; the writes are counted, never timed."""

from __future__ import annotations

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
