"""The running daemon's local sockets: the status socket (`voiceterm status`), the event and control socket
(`voiceterm events`, `ctl`, integrations), and the metrics textfile writer, started in the daemon's nursery.

None of them may take the terminal down: a socket that cannot be served is said once in the journal (and, for
the event socket, in `voiceterm status`), and the terminal works on without it.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import trio

from voiceterm.errors import os_reason
from voiceterm.logs import kv

if TYPE_CHECKING:
    from voiceterm.app import Daemon

__all__ = ["start_sockets"]

log = logging.getLogger("voiceterm")


async def start_sockets(daemon: Daemon, nursery: trio.Nursery) -> None:
    """Serve the status socket, the event socket (when enabled) and the metrics file (when configured)."""
    from voiceterm.io.control import default_socket_path, serve_status

    cfg = daemon.cfg
    path = cfg.status.socket or default_socket_path()
    try:
        await nursery.start(serve_status, path, daemon.snapshot)
    except OSError as e:
        # Diagnostics must never take the terminal down.
        log.warning("status socket unavailable %s", kv(path=path, error=os_reason(e)))
    if cfg.events.enabled:
        await _start_events(daemon, nursery)
    if cfg.status.metrics_file:
        nursery.start_soon(daemon.status.write_metrics)


async def _start_events(daemon: Daemon, nursery: trio.Nursery) -> None:
    from voiceterm.io.control import default_socket_path
    from voiceterm.io.event_socket import SOCKET_NAME, serve_events

    ev = daemon.cfg.events
    path = ev.socket or default_socket_path(name=SOCKET_NAME)
    try:
        daemon.events_path = await nursery.start(
            partial(serve_events, group=ev.group, group_access=ev.group_access),
            path,
            daemon.events,
            daemon.control,
        )
    except OSError as e:
        # The terminal itself works without it: say why once, show it in `voiceterm status`.
        daemon.events_error = os_reason(e)
        log.error("event socket unavailable %s", kv(path=path, error=daemon.events_error))
