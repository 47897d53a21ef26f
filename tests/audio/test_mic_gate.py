"""The microphone while no one wants its audio (`set_wanted(False)`): nothing handed over, everything read and
counted, the level kept, and on `set_wanted(True)` the stream continues exactly where the device is, with
the front-end told of the gap. Real alsa-lib file PCMs; no timing is asserted."""

from __future__ import annotations

import math
import sys
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import trio

from voiceterm.config import FrontendConfig
from voiceterm.io.frontend import FrontEnd
from voiceterm.io.mic import MicChunk, Microphone
from voiceterm_devkit.alsa_files import noise, write_raw

if TYPE_CHECKING:
    from .conftest import AlsaEnv

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10 only
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.alsa

CHUNK = 320  # 20 ms at 16 kHz


def chunks_of(samples: np.ndarray) -> list[bytes]:
    return [samples[i : i + CHUNK].tobytes() for i in range(0, samples.shape[0], CHUNK)]


def mic_file(alsa_env: AlsaEnv, samples: np.ndarray) -> None:
    write_raw(alsa_env.path("in.raw"), samples)
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw"))
    alsa_env.apply()


def pending(recv: trio.MemoryReceiveChannel[MicChunk]) -> list[MicChunk]:
    out = []
    while True:
        try:
            out.append(recv.receive_nowait())
        except trio.WouldBlock:
            return out


async def test_an_unwanted_mic_hands_nothing_over_and_resumes_where_the_device_is(
    alsa_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    samples = noise(CHUNK * 400, seed=5)
    mic_file(alsa_env, samples)
    mic = Microphone(audio_config())
    mic.set_wanted(False)
    send, recv = trio.open_memory_channel[MicChunk](1000)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            await wait_until(lambda: mic.stats()["gated_total"] >= 12, what="gated reads")
            assert pending(recv) == []  # read, counted, not handed over
            assert mic.level[0] > -60  # the room's level is still known
            mic.set_wanted(True)
            got = [await recv.receive() for _ in range(10)]
            nursery.cancel_scope.cancel()
    stats = mic.stats()
    gated = stats["gated_total"]
    assert gated >= 12
    # Every period was read in order: the first handed over is the one after the last gated one.
    assert [c.pcm for c in got] == chunks_of(samples)[gated : gated + 10]
    assert stats["chunks_total"] >= gated + 10 and stats["overruns_total"] == 0


async def test_the_level_of_gated_audio_includes_the_mic_gain(
    alsa_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    rate = 16000
    t = np.arange(rate) / rate
    amplitude = 0.1 * 32768
    tone = np.round(amplitude * np.sin(2 * np.pi * 500 * t)).astype("<i2")
    mic_file(alsa_env, tone)
    mic = Microphone(audio_config(mic_gain_db=6.0))
    mic.set_wanted(False)
    send, _recv = trio.open_memory_channel[MicChunk](100)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            await wait_until(lambda: mic.stats()["gated_total"] >= 3, what="gated reads")
            rms, peak = mic.level
            nursery.cancel_scope.cancel()
    gained = amplitude * 10 ** (6 / 20)
    assert rms == pytest.approx(20 * math.log10(gained / math.sqrt(2) / 32768), abs=0.1)
    assert peak == pytest.approx(20 * math.log10(gained / 32768), abs=0.1)


async def test_the_front_end_runs_only_on_wanted_chunks_and_is_told_of_the_gap(
    alsa_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    pytest.importorskip("pywebrtc_audio")
    mic_file(alsa_env, noise(CHUNK * 400, seed=6))
    frontend = FrontEnd(FrontendConfig(), mic_rate=16000, device_rate=24000)
    mic = Microphone(audio_config(), frontend=frontend)
    send, recv = trio.open_memory_channel[MicChunk](1000)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            before = [await recv.receive() for _ in range(5)]
            mic.set_wanted(False)
            await wait_until(lambda: mic.stats()["gated_total"] >= 12, what="gated reads")
            gaps = frontend.stats()["capture_gaps_total"]
            before += pending(recv)  # handed over before the mic heard it was not wanted
            mic.set_wanted(True)
            after = [await recv.receive() for _ in range(5)]
            nursery.cancel_scope.cancel()
    stats = mic.stats()
    assert all(c.raw is not None for c in before + after)  # each went through the front-end
    assert gaps == 0 and frontend.stats()["capture_gaps_total"] == 1  # told once, when wanted again
    # Every chunk read and not gated went through the DSP (a few more than received: the last ones
    # were in flight when the nursery ended); no gated chunk did.
    assert frontend.stats()["chunks_total"] == stats["chunks_total"] - stats["gated_total"]


async def test_a_function_gets_each_chunk_at_once_and_its_exception_ends_run(
    alsa_env: AlsaEnv, audio_config: Any
) -> None:
    samples = noise(CHUNK * 400, seed=7)
    mic_file(alsa_env, samples)
    got: list[MicChunk] = []
    six = trio.Event()

    def take(chunk: MicChunk) -> None:
        got.append(chunk)
        if len(got) == 6:
            six.set()
        if len(got) == 8:
            raise RuntimeError("the consumer broke")

    mic = Microphone(audio_config())
    with trio.fail_after(10):
        with pytest.raises(BaseExceptionGroup) as raised:
            async with trio.open_nursery() as nursery:
                await nursery.start(mic.run, take)
                await six.wait()
                assert [c.pcm for c in got] == chunks_of(samples)[:6]
    assert raised.group_contains(RuntimeError, match="the consumer broke")
    assert len(got) == 8  # nothing more after the exception
    assert not [t for t in threading.enumerate() if t.name == "voiceterm-capture"]  # the thread stopped


@pytest.mark.parametrize("chunk_ms", [10, 40])
async def test_chunk_ms_sets_the_capture_period(alsa_env: AlsaEnv, audio_config: Any, chunk_ms: int) -> None:
    frames = 16 * chunk_ms
    samples = noise(frames * 50, seed=8)
    mic_file(alsa_env, samples)
    mic = Microphone(audio_config(chunk_ms=chunk_ms))
    assert mic.chunk_bytes == 2 * frames
    send, recv = trio.open_memory_channel[MicChunk](100)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            got = [await recv.receive() for _ in range(5)]
            nursery.cancel_scope.cancel()
    expected = [samples[i * frames : (i + 1) * frames].tobytes() for i in range(5)]
    assert [c.pcm for c in got] == expected
