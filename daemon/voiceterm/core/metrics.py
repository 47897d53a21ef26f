"""The status snapshot as Prometheus text exposition (format 0.0.4), for node_exporter's textfile collector.

Pure: a dict in, text out. The snapshot is walked generically, so new counters appear without touching this
module. The naming rule:

- nested keys join with `_` under the prefix (`link` → `connects_total` is `voiceterm_link_connects_total`);
  characters outside `[a-zA-Z0-9_]` become `_`;
- a number whose key ends in `_total` is a **counter**; any other number is a **gauge**; a bool is a gauge
  of 0 or 1; NaN and infinities are written as Prometheus spells them;
- a string is rendered only when its dotted key is a known enum (`ENUMS`): one-hot, one sample per known
  value, labelled with the key's last part (`voiceterm_link_state{state="ready"} 1`, the other states 0);
  an unknown value gets its own sample too, so nothing is hidden. The top-level `version` becomes
  `voiceterm_info{version="…"} 1`. Every other string, None and lists are skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from voiceterm.core.linkstate import LinkState

# Dotted snapshot keys holding a string from a known set. An empty tuple is an open set: only the current
# value is written (its series ends when the value changes, which a textfile rewrite handles fine).
ENUMS: Mapping[str, Sequence[str]] = {
    "link.state": tuple(s.value for s in LinkState),
    "status": (),
    "panel.status": (),
    "frontend.state": ("off", "unavailable", "running", "failed"),
}
INFO_KEY = "version"  # top-level string rendered as an info metric

# HELP lines for the figures whose meaning a dashboard reader cannot guess from the name.
HELP_TEXTS: Mapping[str, str] = {
    "frontend.erle_db": "echo return loss enhancement over the bot's recent speech (median of 1 s blocks), dB",
    "frontend.echo_delay_ms": "delay of the echo behind the aligned reference, as the canceller has to find it",
    "frontend.diverged_total": "1 s blocks of the bot's speech in which the canceller's output was louder than its input",
    "frontend.resets_total": "canceller resets (a device reopened)",
    "frontend.reference_late_frames_total": "reference audio written after its slot was processed (mic-rate frames)",
    "frontend.cpu_seconds_total": "CPU time spent in the front-end (capture and reference sides)",
    "frontend.gain_db": "gain the automatic gain control applies now",
}

_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def render_prometheus(
    snapshot: Mapping[str, Any],
    prefix: str = "voiceterm_",
    *,
    enums: Mapping[str, Sequence[str]] = ENUMS,
    help_texts: Mapping[str, str] | None = None,
) -> str:
    """Render `snapshot` (nested dicts) as Prometheus text; `help_texts` maps dotted keys to HELP lines."""
    helps = HELP_TEXTS if help_texts is None else help_texts
    seen: set[str] = set()
    out: list[str] = []
    for path, value in _walk(snapshot, ()):
        dotted = ".".join(path)
        if isinstance(value, str) and dotted == INFO_KEY:
            family = _name(prefix, ("info",))
            samples = [(f'{{{INFO_KEY}="{_label(value)}"}}', "1")]
            kind = "gauge"
        elif isinstance(value, str) and dotted in enums:
            family = _name(prefix, path)
            label = _name("", path[-1:])
            known = list(enums[dotted])
            if value not in known:
                known.append(value)
            samples = [(f'{{{label}="{_label(v)}"}}', "1" if v == value else "0") for v in known]
            kind = "gauge"
        elif isinstance(value, bool):
            family, samples, kind = _name(prefix, path), [("", "1" if value else "0")], "gauge"
        elif isinstance(value, (int, float)):
            family = _name(prefix, path)
            kind = "counter" if path[-1].endswith("_total") else "gauge"
            samples = [("", _number(value))]
        else:
            continue  # free text, None, lists: not a metric
        if family in seen:
            continue  # two keys that sanitise to one name: the first wins, the output stays valid
        seen.add(family)
        text = helps.get(dotted, f"voiceterm status field {dotted}")
        out.append(f"# HELP {family} {_help(text)}")
        out.append(f"# TYPE {family} {kind}")
        out.extend(f"{family}{labels} {number}" for labels, number in samples)
    return "\n".join(out) + "\n" if out else ""


def _walk(node: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in node.items():
        here = (*path, str(key))
        if isinstance(value, Mapping):
            yield from _walk(value, here)
        else:
            yield here, value


def _name(prefix: str, path: Sequence[str]) -> str:
    name = prefix + "_".join(_BAD_NAME_CHARS.sub("_", part) for part in path)
    return "_" + name if name[:1].isdigit() else name


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _label(value: str) -> str:
    return _printable(value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n"))


def _help(text: str) -> str:
    return _printable(text.replace("\\", r"\\").replace("\n", r"\n"))


def _printable(text: str) -> str:
    # Some readers split lines on more than "\n" (\r, form feed, U+2028): keep every line one line.
    return "".join(c if c.isprintable() else "?" for c in text)


__all__ = ["ENUMS", "HELP_TEXTS", "render_prometheus"]
