"""What a reload (SIGHUP) changes: the keys whose value differs between the running and the new configuration,
which of them apply live (the schema says: `config.LIVE_KEYS`), and the configuration the daemon runs on after
it — the new values of the live keys, the running values of the rest (they wait for a restart).

Pure; the daemon (`app.py`) hands the live part to its components' `reconfigure` and logs the rest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from voiceterm.config import Config, is_live
from voiceterm.config_render import effective_config
from voiceterm.record import record

__all__ = ["Reload", "changed_keys", "merge", "plan_reload"]


@record
class Reload:
    """The outcome of comparing two configurations."""

    live: tuple[str, ...]  # changed keys applied now
    restart: tuple[str, ...]  # changed keys that wait for a restart
    config: Config  # what the daemon runs on from now


def changed_keys(old: Config, new: Config) -> list[str]:
    """The dotted keys whose values differ (secrets compared as they are, never shown)."""
    a, b = effective_config(old, masked=False), effective_config(new, masked=False)
    out = []
    for section, table in b.items():
        for key, value in table.items():
            if a[section][key] != value:
                out.append(f"{section}.{key}")
    # Secrets are masked in effective_config; compare them directly.
    if old.bot.token != new.bot.token and "bot.token" not in out:
        out.append("bot.token")
    return out


def merge(old: Config, new: Config, live: list[str] | tuple[str, ...]) -> Config:
    """`old` with the values of the `live` keys taken from `new`."""
    sections: dict[str, Any] = {}
    for key in live:
        section, name = key.split(".", 1)
        current = sections.get(section, getattr(old, section))
        sections[section] = dataclasses.replace(current, **{name: getattr(getattr(new, section), name)})
    return dataclasses.replace(old, **sections)


def plan_reload(old: Config, new: Config) -> Reload:
    """Which changed keys apply live and which wait for a restart, and the configuration to run on."""
    changed = changed_keys(old, new)
    live = tuple(k for k in changed if is_live(k))
    restart = tuple(k for k in changed if k not in live)
    return Reload(live, restart, merge(old, new, live))
