"""The daemon in numbers (`scripts/bench`): the real `voiceterm run` against the floor of its own stack
(`voiceterm_devkit.floor_client`: a capture thread, trio, protobuf, trio-websocket, a playback thread, nothing
else) and against pipecat's own Python client (`voiceterm_devkit.baseline_client`), in the same invocation,
against the same local Pipecat echo bot, on both tiers of devices (bench_tiers: file PCMs paced by the wall
clock; the simulated room's clocked PulseAudio devices, device-paced).

Per tier and round: voiceterm connected and idle in hold mode (no turn, the bot silent), then full duplex (a
held button, the echo bot sending every chunk back); the floor and pipecat's client full duplex on the same
devices; voiceterm again with `audio.chunk_ms = 40` (its CPU, wake-ups and capture -> send latency); on the
room tier voiceterm again with its audio front-end on (its own CPU and RSS cost). CPU per thread
and wake-ups from /proc (bench_proc), RSS, audio both ways; start -> READY, the daemon's latency recorders,
interruptions and reconnects once. Every target of issue 17 is checked (bench_checks); a missed one is printed
with its gap. Results: a table on stdout (bench_report), out/bench/results.json and out/bench/latency.png
(bench_plot).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from voiceterm import __version__
from voiceterm.config import AudioConfig
from voiceterm_devkit.bench_checks import checks
from voiceterm_devkit.bench_clients import client_window, measure_client, start_client
from voiceterm_devkit.bench_daemon import (
    DaemonRuns,
    counters,
    epoll_waits_per_s,
    latency_between,
    stop_daemon,
)
from voiceterm_devkit.bench_tiers import FileTier, RoomTier
from voiceterm_devkit.bench_window import Window, dist
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.room import RoomUnavailable

CLIENT_ORDER = ("voiceterm", "floor", "pipecat")
DEFAULT_CHUNK_MS = AudioConfig().period_ms  # the daemon's mic chunk in every other window (chunk_ms = 0)
CHUNK40_MS = 40  # audio.chunk_ms in the voiceterm_chunk40 window: pipecat's own output size


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        # x86 says "model name"; a Raspberry Pi says "Model" (the board) and "Hardware".
        model = fields.get("model name") or fields.get("model", "") or fields.get("hardware", "")
    pipecat_version = ""
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        pipecat_version = version("pipecat-ai")
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "voiceterm": __version__,
        "pipecat_ai": pipecat_version,
    }


class Bench:
    def __init__(self, args: argparse.Namespace, out_dir: Path) -> None:
        self.args = args
        self.work = out_dir / "work"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.bot = BotProcess(mode="bench", log_dir=self.work)
        # The paired window runs voiceterm and the floor at the same time: the floor talks to a bot of its own
        # (the same echo bot, another process: pipecat's server transport serves one client at a time).
        self.pair_bot = BotProcess(mode="bench", log_dir=self.work / "pair-bot")
        self.loads: list[tuple[float, float, float]] = []

    def _bot_up(self) -> None:
        for bot in (self.bot, self.pair_bot):
            if not bot.running:
                bot.restart()

    def run(self) -> dict[str, Any]:
        args = self.args
        results: dict[str, Any] = {"machine": machine_info(), "settings": vars(args).copy(), "tiers": {}}
        self.loads.append(os.getloadavg())
        mic_seconds = (args.warmup + args.seconds) * 3 + args.idle + args.interruptions * 4 + 180
        tiers = []
        if args.tier in ("files", "both"):
            tiers.append(FileTier(self.work, mic_seconds))
        if args.tier in ("room", "both"):
            tiers.append(RoomTier(self.work))
        (self.work / "pair-bot").mkdir()
        for bot in (self.bot, self.pair_bot):
            bot.start()
        for bot in (self.bot, self.pair_bot):
            bot.wait_listening()
        try:
            for index, tier in enumerate(tiers):
                try:
                    tier.start()
                except RoomUnavailable as e:
                    print(f"- {tier.name} tier skipped: {e}", file=sys.stderr)
                    results["tiers"][tier.name] = {"skipped": str(e)}
                    continue
                try:
                    results["tiers"][tier.name] = self.run_tier(tier, first=index == 0, results=results)
                finally:
                    tier.stop()
        finally:
            self.bot.stop()
            self.pair_bot.stop()
        self.loads.append(os.getloadavg())
        results["loadavg"] = {"start": self.loads[0], "end": self.loads[-1]}
        results["checks"] = checks(results)
        return results

    def run_tier(self, tier: Any, *, first: bool, results: dict[str, Any]) -> dict[str, Any]:
        """Every client's rounds on one tier; the order of the clients rotates from round to round, so a
        drift in the machine's load does not always fall on the same one."""
        args = self.args
        run = _TierRun(self, tier, first=first, results=results)
        if first:
            print(f"- time to READY: {args.startups} starts ({tier.name})", flush=True)
            results["startup_s"] = dist(run.daemons.startup_times(args.startups))
        kinds = run.steps
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                self._bot_up()
                run.step(kind, round_no)
            self.loads.append(os.getloadavg())
        out = run.out
        out["rounds"] = {kind: [w.as_dict() for w in ws] for kind, ws in run.windows.items()}
        out["idle_rounds"] = [w.as_dict() for w in run.idle]
        out["summary"] = summarize(run.windows, run.idle)
        return out


class _TierRun:
    """The windows of one tier as they are measured."""

    def __init__(self, bench: Bench, tier: Any, *, first: bool, results: dict[str, Any]) -> None:
        self.bench = bench
        self.args = bench.args
        self.tier = tier
        self.first = first
        self.results = results
        self.daemons = DaemonRuns(bench.work, bench.bot, tier, bench.args)
        self.out: dict[str, Any] = {"label": tier.label, "pacing": tier.pacing}
        self.windows: dict[str, list[Window]] = {"voiceterm": [], "floor": [], "pipecat": []}
        # voiceterm_chunk40: the same daemon with `audio.chunk_ms = 40`, the option for the smallest boards.
        self.windows["voiceterm_chunk40"] = []
        self.steps = ["voiceterm", "floor", "pipecat", "voiceterm_chunk40"]
        if tier.name == "room":
            self.windows["voiceterm_frontend"] = []
            self.steps.append("voiceterm_frontend")
        if self.args.paired:
            self.windows["paired_voiceterm"] = []
            self.windows["paired_floor"] = []
            self.steps.append("paired")
        self.idle: list[Window] = []
        self.exits = results.setdefault("daemon_exits", [])

    def step(self, kind: str, round_no: int) -> None:
        tag = f"- {self.tier.name} round {round_no}:"
        seconds = self.args.seconds
        if kind == "voiceterm":
            print(
                f"{tag} voiceterm, {self.args.idle:g} s idle in hold mode, {seconds:g} s full duplex",
                flush=True,
            )
            self.voiceterm(round_no)
        elif kind == "paired":
            print(f"{tag} voiceterm and the floor side by side, {seconds:g} s full duplex", flush=True)
            self.paired(round_no)
        elif kind == "voiceterm_frontend":
            print(f"{tag} voiceterm with the audio front-end on, {seconds:g} s full duplex", flush=True)
            self.frontend()
        elif kind == "voiceterm_chunk40":
            print(f"{tag} voiceterm with audio.chunk_ms = 40, {seconds:g} s full duplex", flush=True)
            self.chunk40()
        else:
            print(f"{tag} {kind}, {seconds:g} s full duplex", flush=True)
            run_dir = self.bench.work / f"{kind}-{self.tier.name}-{round_no}"
            self.windows[kind].append(
                client_window(
                    kind,
                    bot=self.bench.bot,
                    devices=self.tier.devices(run_dir),
                    pacing=self.tier.pacing,
                    run_dir=run_dir,
                    warmup=self.args.warmup,
                    seconds=seconds,
                )
            )

    def voiceterm(self, round_no: int) -> None:
        """Idle in hold mode, then full duplex; in round 1 the latency window and strace's counts, and on the
        first tier the interruptions and reconnects."""
        args, runs, out, results = self.args, self.daemons, self.out, self.results
        daemon = runs.new_daemon(frontend="off")
        daemon.start()
        try:
            runs.wait_connected(daemon)
            self.idle.append(runs.idle_window(daemon, args.idle))
            if round_no == 1 and args.strace_seconds > 0:
                out["strace_idle"] = epoll_waits_per_s(
                    daemon.pid, args.strace_seconds, daemon.workdir / "strace-idle.txt"
                )
            window, before, after = runs.duplex_window(daemon)
            self.windows["voiceterm"].append(window)
            if round_no != 1:
                return
            # Interruptions are timed in their own cycles (results["interruption"]), not in this window.
            out["latency"] = {k: v for k, v in latency_between(before, after).items() if k != "interruption"}
            out["latency_run"] = after.get("latency", {})
            if args.strace_seconds > 0:
                out["strace_duplex"] = epoll_waits_per_s(
                    daemon.pid, args.strace_seconds, daemon.workdir / "strace-duplex.txt"
                )
            if self.first:
                print(f"- interruptions: {args.interruptions} turns", flush=True)
                results["interruption"] = runs.interruptions(daemon, args.interruptions)
                print(f"- reconnects: {args.restarts} bot kill -9 / restarts", flush=True)
                results["reconnect"] = runs.restarts(daemon, args.restarts)
                results["daemon_counters"] = counters(daemon.status() or {})
        finally:
            self.exits.append({"tier": self.tier.name, "frontend": "off", **stop_daemon(daemon)})

    def paired(self, round_no: int) -> None:
        """voiceterm and the floor streaming at the same time, each to its own bot, measured over the same
        window: whatever else the machine does falls on both alike, so their ratio holds still under load."""
        daemon = self.daemons.new_daemon(frontend="off")
        daemon.start()
        client = None
        try:
            self.daemons.wait_connected(daemon)
            self.daemons.start_duplex(daemon)
            run_dir = self.bench.work / f"paired-floor-{self.tier.name}-{round_no}"
            client = start_client(
                "floor",
                bot=self.bench.pair_bot,
                devices=self.tier.devices(run_dir),
                pacing=self.tier.pacing,
                run_dir=run_dir,
                warmup=self.args.warmup,
                seconds=self.args.seconds,
            )
            with ThreadPoolExecutor(2, thread_name_prefix="bench-paired") as pool:
                mine = pool.submit(self.daemons.measure_duplex, daemon)
                theirs = pool.submit(measure_client, client, self.bench.pair_bot, self.args.seconds)
                self.windows["paired_voiceterm"].append(mine.result()[0])
                self.windows["paired_floor"].append(theirs.result())
        finally:
            if client is not None:
                client.stop()
            self.exits.append({"tier": self.tier.name, "frontend": "off", **stop_daemon(daemon)})

    def frontend(self) -> None:
        daemon = self.daemons.new_daemon(frontend="on")
        daemon.start()
        try:
            self.daemons.wait_connected(daemon)
            window, _, _ = self.daemons.duplex_window(daemon)
            self.windows["voiceterm_frontend"].append(window)
        finally:
            self.exits.append({"tier": self.tier.name, "frontend": "on", **stop_daemon(daemon)})

    def chunk40(self) -> None:
        """Full duplex with 40 ms mic chunks: its CPU and wake-ups, and its capture -> send latency."""
        daemon = self.daemons.new_daemon(frontend="off", audio={"chunk_ms": CHUNK40_MS})
        daemon.start()
        try:
            self.daemons.wait_connected(daemon)
            window, before, after = self.daemons.duplex_window(daemon)
            sent = latency_between(before, after).get("capture_to_send", {})
            window.extra["capture_to_send"] = {k: sent.get(k) for k in ("p50_ms", "p99_ms", "max_ms")}
            self.windows["voiceterm_chunk40"].append(window)
        finally:
            self.exits.append({"tier": self.tier.name, "frontend": "off", **stop_daemon(daemon)})


def _best(ws: list[Window]) -> Window:
    # Other load on a shared machine only ever adds CPU time: the least is the closest to the cost.
    return min(ws, key=lambda w: w.core_percent)


def summarize(windows: dict[str, list[Window]], idle: list[Window]) -> dict[str, Any]:
    """Best windows, the ratios (of the best windows, and per round, paired in time), the spread."""
    out: dict[str, Any] = {}
    for kind, ws in windows.items():
        if not ws:
            continue
        best = _best(ws)
        out[kind] = {
            "best": best.as_dict(),
            "core_percent": dist([w.core_percent for w in ws], 3),
            "rss_steady_mib": dist([w.rss_steady_kib / 1024 for w in ws], 2),
            "rss_peak_mib": dist([w.rss_peak_kib / 1024 for w in ws], 2),
            "main_wakeups_per_s": dist([_main(w, "wakeups_per_s") for w in ws], 1),
        }
    mine = windows.get("voiceterm") or []
    for other in ("floor", "pipecat"):
        theirs = windows.get(other) or []
        if mine and theirs:
            out[f"voiceterm_over_{other}"] = {
                "best": round(_best(mine).core_percent / _best(theirs).core_percent, 3),
                "rounds": dist(
                    [a.core_percent / b.core_percent for a, b in zip(mine, theirs, strict=True)], 3
                ),
            }
    pair_mine, pair_theirs = windows.get("paired_voiceterm") or [], windows.get("paired_floor") or []
    if pair_mine and pair_theirs:
        out["voiceterm_over_floor_paired"] = dist(
            [a.core_percent / b.core_percent for a, b in zip(pair_mine, pair_theirs, strict=True)], 3
        )
    front = windows.get("voiceterm_frontend") or []
    if front and mine:
        on, off = _best(front), _best(mine)
        own = [w.extra.get("frontend_cpu_s", 0.0) / w.wall_s * 100 for w in front]
        out["frontend_cost"] = {
            "own_core_percent": dist(own, 3),
            "core_percent_on": round(on.core_percent, 3),
            "core_percent_off": round(off.core_percent, 3),
            "core_percent_difference": round(on.core_percent - off.core_percent, 3),
            "rss_steady_difference_mib": round((on.rss_steady_kib - off.rss_steady_kib) / 1024, 2),
            "rss_peak_difference_mib": round((on.rss_peak_kib - off.rss_peak_kib) / 1024, 2),
        }
    larger = windows.get("voiceterm_chunk40") or []
    if larger and mine:
        sent = [w.extra.get("capture_to_send") or {} for w in larger]
        out["chunk40_cost"] = {
            "chunk_ms": CHUNK40_MS,
            "core_percent": dist([w.core_percent for w in larger], 3),
            "over_20_ms_best": round(_best(larger).core_percent / _best(mine).core_percent, 3),
            "main_wakeups_per_s": dist([_main(w, "wakeups_per_s") for w in larger], 1),
            "main_wakeups_per_s_20_ms": dist([_main(w, "wakeups_per_s") for w in mine], 1),
            "capture_to_send_p99_ms": dist([s["p99_ms"] for s in sent if s.get("p99_ms") is not None], 3),
            # By construction, not measured: a chunk's oldest sample is one period old when its read returns.
            "oldest_sample_older_ms": CHUNK40_MS - DEFAULT_CHUNK_MS,
        }
    if idle:
        best = _best(idle)
        out["idle"] = {
            "best": best.as_dict(),
            "core_percent": dist([w.core_percent for w in idle], 3),
            "own_core_percent": dist([w.own_core_percent for w in idle], 3),
            "main_wakeups_per_s": dist([_main(w, "wakeups_per_s") for w in idle], 1),
            "main_core_percent": dist([_main(w, "core_percent") for w in idle], 3),
        }
    return out


def _main(w: Window, key: str) -> float:
    t = w.thread("main")
    return float(getattr(t, key)) if t is not None else float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tier", choices=("files", "room", "both"), default="both", help="devices (default both)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="full-duplex window per client (20)")
    parser.add_argument("--idle", type=float, default=10.0, help="voiceterm's idle hold-mode window (10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of audio before a window (3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every window per tier (3)")
    parser.add_argument("--startups", type=int, default=15, help="daemon starts timed to READY (15)")
    parser.add_argument("--interruptions", type=int, default=10, help="bot interruptions timed (10)")
    parser.add_argument("--restarts", type=int, default=10, help="bot kill -9 / restart cycles timed (10)")
    parser.add_argument(
        "--strace-seconds",
        type=float,
        default=5.0,
        help="count the trio thread's epoll_wait calls under strace this long, idle and full duplex, in a "
        "tier's first round, outside the CPU windows (5; 0 = off)",
    )
    parser.add_argument(
        "--no-paired",
        dest="paired",
        action="store_false",
        help="skip the window where voiceterm and the floor stream side by side (each to its own bot)",
    )
    parser.add_argument("--quick", action="store_true", help="one round of short windows: under 2 minutes")
    parser.add_argument("--out", default="out/bench", help="directory for results.json and latency.png")
    parser.add_argument(
        "--publish", action="store_true", help="also copy the plot to docs/bench-latency.png (the README's)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.idle, args.warmup, args.rounds = 6.0, 3.0, 1.0, 1
        args.startups, args.interruptions, args.restarts, args.strace_seconds = 3, 2, 1, 1.5
    args.rounds = max(1, args.rounds)
    return args


def main(argv: list[str] | None = None) -> int:
    from voiceterm_devkit.bench_plot import plot
    from voiceterm_devkit.bench_report import print_report

    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = Bench(args, out_dir).run()
    results["duration_s"] = round(time.monotonic() - started, 1)
    png = plot(results, out_dir / "latency.png")
    if png is not None and args.publish:
        docs = Path(__file__).resolve().parents[2] / "docs" / "bench-latency.png"
        shutil.copyfile(png, docs)
        print(f"plot published: {docs}")
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(results, json_path, png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
