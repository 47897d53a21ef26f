"""Measure the CPU cost of the audio layer alone (run via scripts/bench-audio).

Runs the real Microphone (16 kHz) and Speaker (24 kHz) on ALSA file PCMs paced by the wall clock, with bot
audio streamed in 40 ms chunks at real time, and prints process CPU seconds per minute of audio. A baseline
in the same run does the same trio-side feeding and consuming without the audio layer; the difference is
the audio layer's own cost. File PCMs do no DMA, so this is the Python/numpy/alsa-lib share of the work,
which is the part a Pi Zero 2 W feels.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass

import trio

from voiceterm.config import AudioConfig, EarconsConfig
from voiceterm.io.mic import MicChunk, Microphone
from voiceterm.io.speaker import Speaker
from voiceterm.protocol.events import AudioChunk
from voiceterm_devkit.alsa_files import AlsaFileConfig, speech_like, write_raw

CHUNK_S = 0.040  # the bot sends 40 ms per message


@dataclass
class Result:
    label: str
    cpu_s: float
    wall_s: float
    mic_chunks: int = 0
    notes: str = ""

    @property
    def per_minute(self) -> float:
        return self.cpu_s / self.wall_s * 60.0


async def _feed(seconds: float, bot_rate: int | None, sink: object) -> None:
    """Stream bot audio at real time (or just tick, for the baseline) and pass it to `sink`."""
    if bot_rate is None:
        return
    speech = speech_like(2.0, bot_rate)
    step = int(bot_rate * CHUNK_S)
    chunks = [AudioChunk(speech[i : i + step].tobytes(), bot_rate) for i in range(0, speech.shape[0], step)]
    t0 = trio.current_time()
    for i in range(int(seconds / CHUNK_S)):
        await trio.sleep_until(t0 + i * CHUNK_S)
        sink.enqueue(chunks[i % len(chunks)])  # type: ignore[attr-defined]


class _NullSink:
    def enqueue(self, chunk: AudioChunk) -> None:
        pass


async def _consume(recv: trio.MemoryReceiveChannel[MicChunk], counter: list[int]) -> None:
    async for _chunk in recv:
        counter[0] += 1


async def run_case(
    label: str, seconds: float, *, audio: bool, bot_rate: int | None, audio_cfg: AudioConfig
) -> Result:
    counter = [0]
    send, recv = trio.open_memory_channel[MicChunk](50)
    mic = Microphone(audio_cfg) if audio else None
    spk = Speaker(audio_cfg, EarconsConfig(enabled=False)) if audio else None
    async with trio.open_nursery() as nursery:
        if mic is not None and spk is not None:
            await nursery.start(mic.run, send)
            await nursery.start(spk.run)
        nursery.start_soon(_consume, recv, counter)
        await trio.sleep(0.2)  # let the devices settle before measuring
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if bot_rate is None:
            await trio.sleep(seconds)
        else:
            await _feed(seconds, bot_rate, spk if spk is not None else _NullSink())
        cpu1, wall1 = time.process_time(), time.perf_counter()
        nursery.cancel_scope.cancel()
    notes = ""
    if mic is not None and spk is not None:
        m, s = mic.stats(), spk.stats()
        notes = (
            f"mic overruns={m['overruns_total']} dropped={m['dropped_total']}; "
            f"speaker underruns={s['underruns_total']} xruns={s['xruns_total']} "
            f"resampled={s['resampled_chunks_total']} dropped={s['dropped_frames_total']}"
        )
    return Result(label, cpu1 - cpu0, wall1 - wall0, counter[0], notes)


async def main_async(seconds: float, repeat: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="voiceterm-bench-") as tmp:
        cfg = AlsaFileConfig(tmp)
        write_raw(os.path.join(tmp, "mic.raw"), speech_like(seconds + 2.0, 16000))
        cfg.add_capture("mic", os.path.join(tmp, "mic.raw")).add_playback("spk", "/dev/null")
        cfg.activate()
        audio_cfg = AudioConfig(
            capture_device="mic",
            playback_device="spk",
            recorder_sample_rate=16000,
            player_sample_rate=24000,
            pacing="wall-clock",
        )
        cases = [
            ("baseline: trio feeding/consuming, no audio layer", False, 24000),
            ("idle: mic 16 kHz + speaker 24 kHz playing silence", True, None),
            ("full duplex: mic 16 kHz + bot 24 kHz -> speaker 24 kHz", True, 24000),
            ("full duplex, resampling: bot 16 kHz -> speaker 24 kHz", True, 16000),
        ]
        # Rounds interleave the cases, and the best round of each counts: other load on the machine only
        # ever adds CPU time, so the minimum is the closest to the audio layer's own cost.
        best: dict[str, Result] = {}
        for _ in range(repeat):
            for label, audio, bot_rate in cases:
                r = await run_case(label, seconds, audio=audio, bot_rate=bot_rate, audio_cfg=audio_cfg)
                if label not in best or r.per_minute < best[label].per_minute:
                    best[label] = r
        return [best[label] for label, _, _ in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per case and round (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best counts (default 3)")
    parser.add_argument("--quick", action="store_true", help="one round of 5 s per case")
    args = parser.parse_args()
    seconds, repeat = (5.0, 1) if args.quick else (args.seconds, max(1, args.repeat))
    print(
        f"voiceterm audio layer CPU, best of {repeat} x {seconds:g} s per case, "
        f"{platform.machine()} Python {platform.python_version()}"
    )
    results = trio.run(main_async, seconds, repeat)
    baseline = results[0].per_minute
    print(f"  {'case':<58} {'CPU s/min':>9} {'net of baseline':>16} {'% of a core':>11}")
    for r in results:
        net = r.per_minute - baseline if r is not results[0] else 0.0
        print(f"  {r.label:<58} {r.per_minute:9.3f} {net:16.3f} {r.per_minute / 60 * 100:10.2f}%")
        if r.notes:
            print(f"      {r.notes}; mic chunks received={r.mic_chunks}")
    duplex = results[2]
    print(
        f"audio layer, full duplex 16 kHz in / 24 kHz out: {duplex.per_minute - baseline:.3f} CPU s per minute "
        f"of audio (ratio to baseline x{duplex.per_minute / max(baseline, 1e-9):.1f})"
    )


if __name__ == "__main__":
    main()
