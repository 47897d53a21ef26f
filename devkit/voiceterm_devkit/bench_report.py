"""The benchmark's table on stdout, from a run's results (the same dict results.json holds)."""

from __future__ import annotations

from typing import Any

from voiceterm_devkit.bench_checks import LATENCY_LABELS
from voiceterm_devkit.bench_window import ROLES

CLIENTS = ("voiceterm", "floor", "pipecat")


def _f(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _range(d: dict[str, Any] | None, fmt: str = "{:.2f}") -> str:
    if not d or not d.get("n"):
        return "-"
    low, high = fmt.format(d["min"]), fmt.format(d["max"])
    return low if low == high or d["n"] == 1 else f"{low}-{high}"


def _row(label: str, cells: list[str], width: int = 44) -> str:
    return f"  {label:<{width}}" + "".join(f"{c:>20}" for c in cells)


def print_tier(name: str, tier: dict[str, Any]) -> None:
    print()
    print(f"== {name} tier: {tier['label']} ==")
    summary = tier["summary"]
    present = [c for c in CLIENTS if c in summary]
    print(_row("", present))
    best = {c: summary[c]["best"] for c in present}
    print(_row("CPU, full duplex: % of a core (best round)", [_f(best[c]["core_percent"]) for c in present]))
    print(_row("  range over rounds", [_range(summary[c]["core_percent"]) for c in present]))
    print(_row("  = CPU s per minute", [_f(best[c]["cpu_s_per_min"], "{:.3f}") for c in present]))
    ratio_cells = ["voiceterm ÷"]
    for other in present[1:]:
        r = summary.get(f"voiceterm_over_{other}") or {}
        ratio_cells.append(f"{_f(r.get('best'))} ({_range(r.get('rounds'))})")
    print(_row("  ratio of best rounds (per-round range)", ratio_cells))
    paired = summary.get("voiceterm_over_floor_paired")
    if paired:
        print(
            _row(
                "  side by side, same window: median (range)",
                ["voiceterm ÷", f"{paired['p50']:.2f} ({_range(paired)})"],
            )
        )
    print(_row("  per thread: % of a core / wake-ups per s", []))
    for r in ROLES:
        cells = []
        for c in present:
            cell = best[c]["by_role"][r]
            cells.append(
                "-" if not cell["threads"] else f"{cell['core_percent']:.2f} / {cell['wakeups_per_s']:.0f}"
            )
        print(_row(f"    {r}", cells))
    print(
        _row(
            "RSS steady / peak (MiB)",
            [f"{best[c]['rss_steady_mib']:.1f} / {best[c]['rss_peak_mib']:.1f}" for c in present],
        )
    )
    print(
        _row(
            "audio up / down (x real time)",
            [f"{_f(best[c]['up_realtime'])} / {_f(best[c]['down_realtime'])}" for c in present],
        )
    )
    print(
        _row(
            "machine busy during the best window (% of all cores)",
            [_f(best[c].get("machine_busy_percent"), "{:.0f}") for c in present],
        )
    )
    print("  voiceterm's threads, full duplex (best round): " + _threads(best.get("voiceterm", {})))
    idle = summary.get("idle")
    if idle:
        b = idle["best"]
        print(
            f"  idle in hold mode (connected, no turn, bot silent): {b['core_percent']:.3f} % of a core "
            f"(rounds {_range(idle['core_percent'], '{:.3f}')}); trio thread "
            f"{_range(idle['main_wakeups_per_s'], '{:.1f}')} wake-ups/s, {_range(idle['main_core_percent'], '{:.3f}')} % "
            f"of a core; without the pulse plugin's threads {_range(idle['own_core_percent'], '{:.3f}')} % of a core"
        )
        print(
            f"    the trio thread's epoll_wait under strace (outside the CPU windows): idle {_epoll(tier.get('strace_idle'))}; "
            f"full duplex {_epoll(tier.get('strace_duplex'))}"
        )
        print("    threads: " + _threads(b))
    cost = summary.get("frontend_cost")
    if cost:
        print(
            f"  audio front-end on (full duplex): its own CPU {_range(cost['own_core_percent'], '{:.2f}')} % of a core; "
            f"the daemon {cost['core_percent_on']:.2f} % on vs {cost['core_percent_off']:.2f} % off "
            f"(+{cost['core_percent_difference']:.2f}); RSS +{cost['rss_steady_difference_mib']:.1f} MiB steady, "
            f"+{cost['rss_peak_difference_mib']:.1f} MiB peak"
        )
    larger = summary.get("chunk40_cost")
    if larger:
        at_20 = ((tier.get("latency") or {}).get("capture_to_send") or {}).get("p99_ms")
        print(
            f"  audio.chunk_ms = {larger['chunk_ms']} (full duplex): {_range(larger['core_percent'])} % of a core, "
            f"{larger['over_20_ms_best']:.2f} x the 20 ms chunks' (best rounds); trio wake-ups "
            f"{_range(larger['main_wakeups_per_s'], '{:.0f}')}/s against {_range(larger['main_wakeups_per_s_20_ms'], '{:.0f}')}/s; "
            f"capture -> send p99 {_range(larger['capture_to_send_p99_ms'], '{:.2f}')} ms (20 ms chunks: "
            f"{_f(at_20, '{:.2f}')}); each chunk's oldest sample {larger['oldest_sample_older_ms']} ms older when "
            "its read returns (the period; by construction)"
        )
    latency = tier.get("latency") or {}
    if latency:
        print("  latency inside the daemon (round 1's window; ms):")
        print(f"    {'':<78} {'p50':>7} {'p99':>7} {'max':>7} {'n':>6}")
        for key, w in latency.items():
            print(
                f"    {LATENCY_LABELS.get(key, key):<78} {_f(w.get('p50_ms'), '{:.3f}'):>7} "
                f"{_f(w.get('p99_ms'), '{:.3f}'):>7} {_f(w.get('max_ms'), '{:.3f}'):>7} {w.get('samples_total', 0):>6}"
            )


def _threads(window: dict[str, Any]) -> str:
    parts = [
        f"{t['name']} {t['core_percent']:.2f}% {t['wakeups_per_s']:.0f}/s (+{t['preempted_per_s']:.0f} preempted)"
        for t in window.get("threads", [])
    ]
    return "; ".join(parts) or "-"


def print_report(results: dict[str, Any], json_path: Any, png_path: Any) -> None:
    m = results["machine"]
    s = results["settings"]
    load = results.get("loadavg", {})
    print()
    print(
        f"voiceterm {m['voiceterm']} vs the floor of its stack (floor_client) vs pipecat-ai {m['pipecat_ai']}'s "
        f"WebsocketClientTransport; {m['cores']} x {m['cpu_model']}, Python {m['python']}"
    )
    print(
        f"windows: {s['seconds']:g} s full duplex, {s['idle']:g} s idle, {s['rounds']} round(s) per tier; "
        f"load average {_load(load.get('start'))} at the start, {_load(load.get('end'))} at the end; "
        f"{results.get('duration_s', 0):.0f} s in all"
    )
    for name, tier in results["tiers"].items():
        if "skipped" in tier:
            print(f"\n== {name} tier skipped: {tier['skipped']}")
            continue
        print_tier(name, tier)
    print()
    st = results.get("startup_s") or {}
    if st.get("n"):
        print(
            f"  start -> READY=1: p50 {st['p50'] * 1000:.0f} ms, max {st['max'] * 1000:.0f} ms, "
            f"min {st['min'] * 1000:.0f} ms (n={st['n']})"
        )
    i = results.get("interruption") or {}
    if i:
        print(
            f"  {LATENCY_LABELS['interruption']}: p50 {_f(i.get('p50_ms'))} ms, p99 {_f(i.get('p99_ms'))}, "
            f"max {_f(i.get('max_ms'))} ({i.get('timed', 0)}/{i.get('cycles', 0)} timed)"
        )
    r = results.get("reconnect") or {}
    if r.get("recovered"):
        a, h = r["accept_to_ready_s"], r["connected_to_ready_s"]
        print(
            f"  reconnect after kill -9, bot accepting again -> bot-ready: p50 {a['p50'] * 1000:.0f} ms, "
            f"max {a['max'] * 1000:.0f} ms ({r['recovered']}/{r['restarts']}; backoff wait included); "
            f"WebSocket open -> bot-ready p50 {h['p50'] * 1000:.1f} ms, max {h['max'] * 1000:.1f} ms"
        )
    for exit_info in results.get("daemon_exits", []):
        if exit_info.get("code") != 0 or exit_info.get("escaped_exceptions"):
            print(f"  daemon exit: {exit_info}")
    print("  targets:")
    for c in results["checks"]:
        value = "-" if c["value"] is None else f"{c['value']:.3g} {c['unit']}"
        verdict = "met" if c["met"] else f"MISSED: {c['gap']}"
        print(f"    {c['target']:<66} {value:>16}  {verdict}")
    print(
        "  CPU: the threads' schedstat run time over the window (exact); wake-ups: voluntary context switches\n"
        "  per thread (/proc/PID/task/TID/status); the three clients use the same devices, periods and pacing."
    )
    print(f"results: {json_path}" + (f"; plot: {png_path}" if png_path else ""))


def _epoll(counts: dict[str, float] | None) -> str:
    if not counts:
        return "not counted"
    return (
        f"{counts['blocking_per_s']:.1f} blocking calls/s (wake-ups) of {counts['calls_per_s']:.1f} calls/s"
    )


def _load(value: Any) -> str:
    return "-" if not value else "/".join(f"{x:.2f}" for x in value)


__all__ = ["print_report", "print_tier"]
