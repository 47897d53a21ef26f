"""`voiceterm meter`: a live microphone level bar in the terminal, to set [audio] mic_gain_db on site, with what
the audio front-end makes of it and, when the daemon runs, its echo canceller's own figures.

The bar shows the mic as the device gives it (after mic_gain_db): that is what mic_gain_db sets. With the
front-end (io/frontend.py), the line adds the level that would go to the bot and the automatic gain; the meter
has no speaker, so its canceller has nothing to cancel. A running daemon is asked for its status every two
seconds: its ERLE, the echo's delay, divergences and resets are the ones that matter while the bot talks.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import trio

from voiceterm.config import Config
from voiceterm.core.pcm import level_dbfs
from voiceterm.exitcodes import EX_FAILURE, EX_OK

FLOOR_DB = -60.0
WIDTH = 50
DAEMON_EVERY_S = 2.0


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


def frontend_text(out_rms_dbfs: float, stats: dict[str, Any]) -> str:
    """What the front-end makes of the mic: the level to the bot and the automatic gain."""
    text = f"  | to bot {max(out_rms_dbfs, -99):6.1f} dBFS"
    if stats.get("auto_gain"):
        text += f" gain {stats.get('gain_db', 0.0):+5.1f} dB"
    return text


def daemon_text(snapshot: dict[str, Any] | None) -> str:
    """The running daemon's canceller figures, or nothing when it does not answer or has none."""
    fe = (snapshot or {}).get("frontend") or {}
    if fe.get("state") != "running":
        return f"  | daemon front-end {fe['state']}" if fe.get("state") else ""

    def shown(value: Any, unit: str) -> str:
        return "-" if value is None else f"{value:.0f} {unit}"

    return (
        f"  | daemon: ERLE {shown(fe.get('erle_db'), 'dB')}, echo delay {shown(fe.get('echo_delay_ms'), 'ms')}, "
        f"diverged {fe.get('diverged_total', 0)}, resets {fe.get('resets_total', 0)}"
    )


async def _daemon_figures(cfg: Config, out: list[str]) -> None:
    from voiceterm.io.control import default_socket_path, read_status

    path = cfg.status.socket or default_socket_path()
    while True:
        try:
            snap = await trio.to_thread.run_sync(read_status, path, 1.0)
        except (OSError, ValueError):
            snap = None
        out[0] = daemon_text(snap)
        await trio.sleep(DAEMON_EVERY_S)


async def _meter(cfg: Config, seconds: float) -> int:
    from voiceterm.io.frontend_setup import make_frontend
    from voiceterm.io.mic import Microphone

    faults: list[str | None] = []
    frontend, _why = make_frontend(
        cfg.frontend, mic_rate=cfg.audio.recorder_sample_rate, device_rate=cfg.audio.player_sample_rate
    )
    mic = Microphone(cfg.audio, on_fault=faults.append, frontend=frontend)
    send, recv = trio.open_memory_channel(16)
    tty = sys.stdout.isatty()
    daemon = [""]
    async with trio.open_nursery() as nursery:
        await nursery.start(mic.run, send)
        nursery.start_soon(_daemon_figures, cfg, daemon)
        if seconds > 0:
            nursery.cancel_scope.deadline = trio.current_time() + seconds
        shown = 0.0
        async for chunk in recv:
            now = trio.current_time()
            if now - shown >= 0.1:  # 10 updates a second is readable; every chunk is not
                shown = now
                rms, peak = level_dbfs(chunk.raw if chunk.raw is not None else chunk.pcm)
                line = render_bar(rms, peak)
                if frontend is not None:
                    line += frontend_text(level_dbfs(chunk.pcm)[0], frontend.stats())
                line += daemon[0]
                print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
            if mic.fault:
                print(f"\nvoiceterm: {mic.fault}", file=sys.stderr)
                nursery.cancel_scope.cancel()
    if tty:
        print()
    return EX_FAILURE if mic.fault else EX_OK


def run_meter(cfg: Config, *, seconds: float = 0.0) -> int:
    try:
        return trio.run(_meter, cfg, seconds)
    except KeyboardInterrupt:
        print()
        return EX_OK
