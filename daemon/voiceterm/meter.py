"""`voiceterm meter`: a live microphone level bar in the terminal, to set [audio] mic_gain_db on site."""

from __future__ import annotations

import math
import sys

import trio

from voiceterm.config import Config
from voiceterm.core.pcm import level_dbfs

FLOOR_DB = -60.0
WIDTH = 50


def render_bar(rms_dbfs: float, peak_dbfs: float, width: int = WIDTH) -> str:
    """One line: a bar for RMS, a mark for the peak, the figures, and a hint when clipping or too quiet."""

    def cells(db: float) -> int:
        if math.isinf(db) or db <= FLOOR_DB:
            return 0
        return min(width, round((db - FLOOR_DB) / -FLOOR_DB * width))

    bar = ["#"] * cells(rms_dbfs) + [" "] * (width - cells(rms_dbfs))
    p = cells(peak_dbfs)
    if 0 < p <= width:
        bar[p - 1] = "|"
    hint = ""
    if peak_dbfs > -1.0:
        hint = "  CLIPPING: lower mic_gain_db"
    elif rms_dbfs < -50.0:
        hint = "  quiet: speak, or raise mic_gain_db"
    return f"[{''.join(bar)}] rms {max(rms_dbfs, -99):6.1f} dBFS  peak {max(peak_dbfs, -99):6.1f} dBFS{hint}"


async def _meter(cfg: Config, seconds: float) -> int:
    from voiceterm.io.mic import Microphone

    faults: list[str | None] = []
    mic = Microphone(cfg.audio, on_fault=faults.append)
    send, recv = trio.open_memory_channel(16)
    tty = sys.stdout.isatty()
    async with trio.open_nursery() as nursery:
        await nursery.start(mic.run, send)
        if seconds > 0:
            nursery.cancel_scope.deadline = trio.current_time() + seconds
        shown = 0.0
        async for chunk in recv:
            rms, peak = level_dbfs(chunk.pcm)
            now = trio.current_time()
            if now - shown >= 0.1:  # 10 updates a second is readable; every chunk is not
                shown = now
                line = render_bar(rms, peak)
                print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
            if mic.fault:
                print(f"\nvoiceterm: {mic.fault}", file=sys.stderr)
                nursery.cancel_scope.cancel()
    if tty:
        print()
    return 1 if mic.fault else 0


def run_meter(cfg: Config, *, seconds: float = 0.0) -> int:
    try:
        return trio.run(_meter, cfg, seconds)
    except KeyboardInterrupt:
        print()
        return 0
