"""The microphone against real alsa-lib file PCMs: exact capture, pacing, gain and level, overruns, faults."""

from __future__ import annotations

import errno
import logging
import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import trio
import trio.testing

from voiceterm.core.pcm import apply_gain_db
from voiceterm.io.alsa import AlsaPcm
from voiceterm.io.alsa_pacing import UNCLOCKED_READS
from voiceterm.io.mic import MicChunk, Microphone
from voiceterm_devkit.alsa_files import FifoTap, noise, write_raw

if TYPE_CHECKING:
    from .conftest import AlsaEnv

pytestmark = pytest.mark.alsa


def chunks_of(samples: np.ndarray, chunk_frames: int) -> list[bytes]:
    return [samples[i : i + chunk_frames].tobytes() for i in range(0, samples.shape[0], chunk_frames)]


async def receive(recv: trio.MemoryReceiveChannel[MicChunk], n: int) -> list[MicChunk]:
    return [await recv.receive() for _ in range(n)]


def capture_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "voiceterm-capture"]


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
async def test_a_known_file_comes_out_chunk_for_chunk(
    alsa_env: AlsaEnv, audio_config: Any, rate: int
) -> None:
    n_chunks = 40
    chunk = rate * 20 // 1000
    samples = noise(n_chunks * chunk, seed=rate)
    write_raw(alsa_env.path("in.raw"), samples)  # exactly n_chunks periods: no stale re-reads
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw"))
    alsa_env.apply()
    mic = Microphone(audio_config(recorder_sample_rate=rate))
    send, recv = trio.open_memory_channel[MicChunk](100)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            got = await receive(recv, n_chunks)
            nursery.cancel_scope.cancel()
    assert [c.pcm for c in got] == chunks_of(samples, chunk)
    stamps = [c.captured_at for c in got]
    assert stamps == sorted(stamps)
    # Wall-clock pacing: one period per period of real time, not all at once (a reader that fell behind on a
    # busy machine catches up by at most the capture buffer's periods).
    assert stamps[-1] - stamps[0] >= (n_chunks - 2 - mic.periods) * 0.020
    assert mic.fault is None
    stats = mic.stats()
    assert stats["overruns_total"] == 0 and stats["reopens_total"] == 0
    assert stats["chunks_total"] >= n_chunks
    assert not capture_threads()  # the device thread ended with run()


async def test_sample_rate_override_gain_and_level(alsa_env: AlsaEnv, audio_config: Any) -> None:
    rate = 8000
    t = np.arange(rate // 2) / rate
    amplitude = 0.25 * 32768
    tone = np.round(amplitude * np.sin(2 * np.pi * 500 * t)).astype("<i2")  # 500 Hz: whole cycles per chunk
    write_raw(alsa_env.path("in.raw"), tone)
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw"))
    alsa_env.apply()
    mic = Microphone(audio_config(recorder_sample_rate=16000, mic_gain_db=6.0), sample_rate=rate)
    assert mic.chunk_bytes == 320
    send, recv = trio.open_memory_channel[MicChunk](100)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            got = await receive(recv, 5)
            nursery.cancel_scope.cancel()
    expected = [apply_gain_db(c, 6.0) for c in chunks_of(tone, 160)[:5]]
    assert [c.pcm for c in got] == expected
    rms, peak = mic.level
    gained = amplitude * 10 ** (6 / 20)
    assert rms == pytest.approx(20 * math.log10(gained / math.sqrt(2) / 32768), abs=0.1)
    assert peak == pytest.approx(20 * math.log10(gained / 32768), abs=0.1)


async def test_a_missing_device_is_a_fault_that_clears_when_it_appears(
    alsa_env: AlsaEnv, audio_config: Any, wait_until: Any
) -> None:
    faults: list[str | None] = []
    mic = Microphone(audio_config(capture_device="usbmic"), on_fault=faults.append)
    send, recv = trio.open_memory_channel[MicChunk](100)
    samples = noise(320 * 10)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with trio.fail_after(1):  # started() does not wait for the device
                await nursery.start(mic.run, send)
            expected = 'capture device "usbmic" not found (ALSA: No such file or directory); check `voiceterm devices`'
            assert mic.fault == expected
            assert faults == [expected]
            write_raw(alsa_env.path("in.raw"), samples)
            alsa_env.config.add_capture("usbmic", alsa_env.path("in.raw"))
            alsa_env.apply()
            await wait_until(lambda: mic.fault is None, what="the fault to clear")
            got = await receive(recv, 10)
            nursery.cancel_scope.cancel()
    assert faults == [expected, None]
    assert [c.pcm for c in got] == chunks_of(samples, 320)


async def test_a_device_removed_mid_stream_is_reopened_when_it_is_back(
    alsa_env: AlsaEnv, audio_config: Any, wait_until: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voiceterm.audio")
    write_raw(alsa_env.path("in.raw"), noise(16000 * 30))
    tap = FifoTap(alsa_env.path("mic.tee"))
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw"), tee=tap.path)
    alsa_env.apply()
    faults: list[str | None] = []
    mic = Microphone(audio_config(), on_fault=faults.append)
    send, recv = trio.open_memory_channel[MicChunk](1000)
    try:
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                await nursery.start(mic.run, send)
                await receive(recv, 3)
                # Unplug: the open handle starts failing and the name no longer resolves.
                alsa_env.config.remove("mic")
                alsa_env.apply()
                tap.cut()
                await wait_until(lambda: mic.fault is not None and "not found" in mic.fault, what="a fault")
                while True:  # drain what was captured before the failure
                    try:
                        recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                before = mic.stats()["chunks_total"]
                # Plug it back in.
                tap.reconnect()
                alsa_env.config.restore("mic")
                alsa_env.apply()
                await wait_until(lambda: mic.fault is None, what="the fault to clear")
                await receive(recv, 3)
                nursery.cancel_scope.cancel()
    finally:
        tap.close()
    assert faults[0] == 'capture device "mic" failed (ALSA: Input/output error); reopening'
    assert faults[1].startswith('capture device "mic" not found')
    assert faults[-1] is None
    assert mic.stats()["reopens_total"] == 1
    assert mic.stats()["chunks_total"] > before
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not found" in m for m in messages) == 1  # retries do not flood the log
    assert any("capture device is back" in m for m in messages)


class _OverrunningPcm:
    """A real file PCM whose reads number `lose` report an overrun, as a starved real device would."""

    def __init__(self, pcm: AlsaPcm, lose: set[int]) -> None:
        self._pcm = pcm
        self._lose = lose
        self._reads = 0

    def read(self) -> tuple[int, bytes]:
        n, data = self._pcm.read()  # the period is consumed either way: that is what an overrun loses
        index = self._reads
        self._reads += 1
        if index in self._lose:
            return -errno.EPIPE, b""
        return n, data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pcm, name)


class _OverrunningMicrophone(Microphone):
    def __init__(self, *args: Any, lose: set[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lose = lose

    def _open(self) -> Any:
        return _OverrunningPcm(super()._open(), self.lose)


async def test_an_overrun_drops_that_period_counts_it_and_logs_once_per_burst(
    alsa_env: AlsaEnv, audio_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="voiceterm.audio")
    samples = noise(320 * 12)
    write_raw(alsa_env.path("in.raw"), samples)
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw"))
    alsa_env.apply()
    mic = _OverrunningMicrophone(audio_config(), lose={2, 3, 4})
    send, recv = trio.open_memory_channel[MicChunk](100)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            got = await receive(recv, 9)
            nursery.cancel_scope.cancel()
    expected = chunks_of(samples, 320)
    assert [c.pcm for c in got] == expected[:2] + expected[5:]
    assert mic.stats()["overruns_total"] == 3
    overrun_lines = [r for r in caplog.records if "overrun" in r.getMessage()]
    assert len(overrun_lines) == 1


async def test_a_full_channel_drops_and_counts(alsa_env: AlsaEnv, audio_config: Any, wait_until: Any) -> None:
    write_raw(alsa_env.path("in.raw"), noise(320 * 20))
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw"))
    alsa_env.apply()
    mic = Microphone(audio_config())
    send, recv = trio.open_memory_channel[MicChunk](2)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            await wait_until(lambda: mic.stats()["chunks_total"] >= 6, what="6 chunks")
            await wait_until(lambda: mic.stats()["dropped_total"] >= 4, what="drops")
            nursery.cancel_scope.cancel()
    await trio.testing.wait_all_tasks_blocked()  # deliveries the thread posted before it stopped
    stats = mic.stats()
    assert stats["dropped_total"] == stats["chunks_total"] - 2  # the channel kept the first two
    first = [recv.receive_nowait().pcm for _ in range(2)]
    assert first == chunks_of(noise(320 * 20), 320)[:2]


async def test_device_pacing_on_an_unclocked_pcm_falls_back_to_the_wall_clock(
    alsa_env: AlsaEnv, audio_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="voiceterm.audio")
    n_chunks = UNCLOCKED_READS + 70
    samples = noise(320 * n_chunks, seed=7)
    write_raw(alsa_env.path("in.raw"), samples)
    alsa_env.config.add_capture("mic", alsa_env.path("in.raw"))
    alsa_env.apply()
    mic = Microphone(audio_config(pacing="device"))
    send, recv = trio.open_memory_channel[MicChunk](1000)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(mic.run, send)
            got = await receive(recv, n_chunks)
            nursery.cancel_scope.cancel()
    assert [c.pcm for c in got] == chunks_of(samples, 320)
    assert any("faster than real time" in r.getMessage() for r in caplog.records)
    # Paced once detected: a reader that fell behind (a busy machine) catches up by at most the capture
    # buffer's periods at once, so the chunks after detection span the rest of their count in real time.
    tail = [c.captured_at for c in got[UNCLOCKED_READS + 1 :]]
    assert tail[-1] - tail[0] >= (len(tail) - 2 - mic.periods) * 0.020
