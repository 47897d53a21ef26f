"""systemd's sd_notify protocol in a few lines: datagrams of `KEY=value` lines to `$NOTIFY_SOCKET`.

No libsystemd needed. Outside systemd (no `NOTIFY_SOCKET`) every call is a cheap no-op returning False, and a
failed send never raises: telling systemd how we are is never worth taking the terminal down for.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

from voiceterm.logs import escape

log = logging.getLogger("voiceterm.notify")

STATUS_MAX_CHARS = 200  # `systemctl status` shows one line; longer text only hides the useful start
SEND_TIMEOUT_S = 0.2  # a datagram send blocks only if systemd's queue is full; never stall the loop longer


def _address(socket_path: str) -> str | None:
    """The AF_UNIX address for a NOTIFY_SOCKET value: `@name` is the abstract namespace, `/path` a file."""
    if socket_path.startswith("@"):
        return "\0" + socket_path[1:]  # Linux abstract socket: a leading NUL instead of the '@'
    if socket_path.startswith("/"):
        return socket_path
    return None  # systemd only ever hands out these two forms (vsock: needs systemd 254, not supported)


class Notifier:
    """Sends sd_notify messages to systemd; does nothing when not started by systemd with Type=notify."""

    def __init__(self, socket_path: str | None = None) -> None:
        raw = os.environ.get("NOTIFY_SOCKET") if socket_path is None else socket_path
        self._address = _address(raw) if raw else None
        if raw and self._address is None:
            log.warning("NOTIFY_SOCKET ignored: not an absolute path or @abstract name")
        self._sock: socket.socket | None = None
        self.sent_total = 0
        self.failed_total = 0

    @property
    def enabled(self) -> bool:
        """True when messages go somewhere (systemd gave us a socket)."""
        return self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `KEY=value` lines; True when the kernel accepted it."""
        if self._address is None or not lines:
            return False
        payload = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(SEND_TIMEOUT_S)
            self._sock.sendto(payload, self._address)
        except OSError as e:
            self.failed_total += 1
            # Warn once, then stay quiet: a vanished systemd socket would otherwise flood the journal.
            level = logging.WARNING if self.failed_total == 1 else logging.DEBUG
            log.log(level, "sd_notify send failed error=%s failures=%d", e.strerror or e, self.failed_total)
            return False
        self.sent_total += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (start-up or reload finished), with an optional STATUS line."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", "STATUS=" + clean_status(status))

    def status(self, text: str) -> bool:
        """STATUS=<one line> for `systemctl status`."""
        return self.notify("STATUS=" + clean_status(text))

    def watchdog(self) -> bool:
        """WATCHDOG=1: the event loop is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun, so systemd does not take a slow exit for a hang."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """RELOADING=1 with the CLOCK_MONOTONIC timestamp systemd (>= 253, Type=notify-reload) asks for.

        Send `ready()` when the reload is done, or systemd keeps the unit in the "reloading" state.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def clean_status(text: str) -> str:
    """One line of at most STATUS_MAX_CHARS: a newline would start a new (bogus) KEY=value assignment, and
    the text may quote the bot (a link error): no control characters, no secrets, whitespace collapsed."""
    line = " ".join(text[: 4 * STATUS_MAX_CHARS].split())
    line = escape(line, limit=4 * len(line) + 8)  # the limit only bounds work here; the cut comes next
    if len(line) > STATUS_MAX_CHARS:
        line = line[: STATUS_MAX_CHARS - 1] + "…"
    return line


def watchdog_period(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of systemd's WatchdogSec=), or None when no watchdog is asked.

    None also when `WATCHDOG_PID` names another process: the variables leaked to a child, not meant for us.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid is not None:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1e6


__all__ = ["Notifier", "clean_status", "watchdog_period"]
