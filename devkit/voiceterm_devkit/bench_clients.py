"""The two reference clients as measured subprocesses: the floor of voiceterm's stack
(`voiceterm_devkit.floor_client`) and pipecat's own client (`voiceterm_devkit.baseline_client`).

Both take the tier's devices ("mic", "spk") and pacing, print JSON lines (connected, first_audio, stats on
SIGUSR1, exit) and are measured from outside like the daemon: the same /proc window, the thread names from
the bench's shim, the bot's own report of the mic audio it received.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from voiceterm_devkit.bench_proc import ThreadNamer
from voiceterm_devkit.bench_tiers import client_env
from voiceterm_devkit.bench_window import Window, measure
from voiceterm_devkit.bot import BotProcess, terminate
from voiceterm_devkit.thread_names import with_thread_names

CLIENTS = {
    "floor": "voiceterm_devkit.floor_client",
    "pipecat": "voiceterm_devkit.baseline_client",
}
FIRST_AUDIO_TIMEOUT_S = 60.0  # pipecat's client imports for several seconds on a busy machine
STATS_TIMEOUT_S = 5.0
LINES_MAX = 1000  # JSON lines from a client waiting to be read (a client writes a handful per window)


class ClientProcess:
    """One reference client on one tier's devices, against the bot at `url`."""

    def __init__(
        self, kind: str, *, url: str, devices: Any, pacing: str, run_dir: Path, seconds: float
    ) -> None:
        self.kind = kind
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.map_file = run_dir / "threads.tsv"
        env = with_thread_names(client_env(devices), self.map_file, run_dir / "shim")
        cmd = [
            sys.executable,
            "-m",
            CLIENTS[kind],
            "--url",
            url,
            "--mic",
            "mic",
            "--speaker",
            "spk",
            "--pacing",
            pacing,
            "--seconds",  # a safety net: it ends by itself should the bench die
            str(seconds),
        ]
        self.log_path = run_dir / "client.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue(LINES_MAX)
        self.lines_dropped = 0
        self._reader = threading.Thread(target=self._read, name=f"{kind}-stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._lines.put_nowait(json.loads(line))
            except ValueError:
                continue
            except queue.Full:  # nobody is reading: a few lines a window are expected, never this many
                self.lines_dropped += 1
        self._lines.put(None)  # the end, even if it has to wait for a reader

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.kind} client: no {name} within {timeout:g} s") from None
            if event is None:
                raise RuntimeError(f"the {self.kind} client exited ({self.proc.wait()}); see {self.log_path}")
            if event.get("event") == name:
                return event

    def stats(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGUSR1)
        return self.wait_event("stats", STATS_TIMEOUT_S)

    def stop(self) -> None:
        terminate(self.proc, 10.0)
        self._reader.join(5)


def start_client(
    kind: str, *, bot: BotProcess, devices: Any, pacing: str, run_dir: Path, warmup: float, seconds: float
) -> ClientProcess:
    """Start a reference client and wait for the bot's echo and the warm-up."""
    client = ClientProcess(
        kind, url=bot.url, devices=devices, pacing=pacing, run_dir=run_dir, seconds=warmup + seconds + 90
    )
    try:
        client.wait_event("first_audio", FIRST_AUDIO_TIMEOUT_S)
        time.sleep(warmup)
    except BaseException:
        client.stop()
        raise
    return client


def measure_client(client: ClientProcess, bot: BotProcess, seconds: float) -> Window:
    window = measure(
        client.pid,
        seconds,
        namer=ThreadNamer(client.pid, client.map_file),
        down_bytes=lambda: int(client.stats()["received_audio_bytes"]),
        up_bytes=lambda t0, t1: bot_audio_in_between(bot, t0, t1),
    )
    final = client.stats()
    window.extra["client_counters"] = {k: v for k, v in final.items() if k not in ("t", "event")}
    return window


def client_window(
    kind: str, *, bot: BotProcess, devices: Any, pacing: str, run_dir: Path, warmup: float, seconds: float
) -> Window:
    """Start a reference client, wait for the bot's echo, warm up, measure a window, stop it."""
    client = start_client(
        kind, bot=bot, devices=devices, pacing=pacing, run_dir=run_dir, warmup=warmup, seconds=seconds
    )
    try:
        return measure_client(client, bot, seconds)
    finally:
        client.stop()


def bot_audio_in_between(bot: BotProcess, t0: float, t1: float) -> int:
    """Mic bytes the bot reported receiving with report times in [t0, t1)."""
    return sum(e.get("bytes", 0) for e in bot.events("audio_in") if t0 <= e["t"] < t1)


__all__ = [
    "CLIENTS",
    "ClientProcess",
    "bot_audio_in_between",
    "client_window",
    "measure_client",
    "start_client",
]
