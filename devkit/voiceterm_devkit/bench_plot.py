"""The benchmark's plot: the daemon's latency distributions (one panel per recorder, from the first tier's
round-1 window, and the interruptions), with p50, p99 and the target marked (out/bench/latency.png)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from voiceterm_devkit.bench_checks import LATENCY_LABELS, LATENCY_TARGETS_MS


def _panels(results: dict[str, Any]) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    for name, tier in (results.get("tiers") or {}).items():
        latency = tier.get("latency")
        if latency:
            panels = [(key, LATENCY_LABELS.get(key, key), data) for key, data in latency.items()]
            panels.append(("interruption", LATENCY_LABELS["interruption"], results.get("interruption") or {}))
            return name, panels
    return "", []


def plot(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
        import numpy as np
    except ImportError:
        print("matplotlib is not installed (the bench extra): no plot", file=sys.stderr)
        return None
    tier, panels = _panels(results)
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), constrained_layout=True)
    for ax, (name, label, data) in zip(np.atleast_1d(axes), panels, strict=True):
        buckets = data.get("buckets") or []
        if buckets:
            uppers = np.array([u for u, _ in buckets], dtype=float) / 1000.0  # ms
            counts = np.array([n for _, n in buckets], dtype=float)
            lowers = uppers / (1 + 1 / 16)
            ax.bar(lowers, counts, width=uppers - lowers, align="edge", color="#4878a8")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        for key, style in (("p50_ms", "--"), ("p99_ms", ":")):
            if data.get(key) is not None:
                ax.axvline(
                    data[key],
                    color="black",
                    linestyle=style,
                    linewidth=1,
                    label=f"{key[:3]} {data[key]:.3g} ms",
                )
        limit = LATENCY_TARGETS_MS.get(name)
        if limit is not None:
            ax.axvline(limit, color="#c03030", linewidth=1, label=f"target {limit:g} ms")
        ax.set_title(f"{label} (n={data.get('samples_total', 0)})", fontsize=9)
        ax.set_xlabel("ms")
        ax.set_ylabel("samples")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"voiceterm latency, {tier} tier, {results['machine']['cpu_model']}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot"]
