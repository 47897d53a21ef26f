"""A proxy or load balancer whose backend is down accepts the TCP connection and closes it at once. Each
reconnect attempt must then fail within a second, not wait out `bot.connect_timeout` (10 s by default):
trio-websocket 0.12 never completes its handshake when the stream ends before the upgrade response.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import EventTap, make_daemon

ATTEMPTS = 3


@pytest.fixture
def dead_backend() -> Iterator[str]:
    """A listener that accepts every connection and closes it without a byte, like a proxy whose backend is
    down; its ws:// URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True, name="dead-backend")
    thread.start()
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (a close alone would not)
    listener.close()
    thread.join(5)


# The fix is the link branch's (voiceterm/io/wsopen.py, a watchdog around the upgrade): until it is merged
# this test fails as the issue says, and is expected to; once it is, it runs as a plain test.
LINK_WATCHDOG = importlib.util.find_spec("voiceterm.io.wsopen") is not None


@pytest.mark.xfail(
    not LINK_WATCHDOG, reason="needs the link branch (dead backend fails fast in the handshake)", strict=True
)
def test_each_attempt_through_a_dead_backend_fails_within_a_second(tmp_path: Path, dead_backend: str) -> None:
    # 2.5 s, not the default 10: the attempt before the subscriber is attached may still wait it out.
    config = {"bot": {"connect_timeout": 2.5}, "reconnect": {"initial_delay": 0.1, "max_delay": 0.2}}
    daemon = make_daemon(tmp_path, dead_backend, config)
    daemon.start()
    tap = None
    try:
        daemon.wait_ready()
        tap = EventTap(daemon.events_path)
        first = tap.wait_for(lambda e: e.get("state") == "backing-off", 5)
        mark = tap.events.index(first) + 1
        for _ in range(ATTEMPTS):
            connecting = tap.wait_for(
                lambda e: e.get("event") == "transport-state-changed" and e["state"] == "connecting", 3, mark
            )
            mark = tap.events.index(connecting) + 1
            # A second is generous for a loopback connect and a close; the bug waits connect_timeout out.
            failed = tap.wait_for(
                lambda e: e.get("event") == "transport-state-changed" and e["state"] == "backing-off",
                1.5,
                mark,
            )
            mark = tap.events.index(failed) + 1
            assert failed["ts"] - connecting["ts"] < 1.0, failed
        assert daemon.alive() and daemon.escaped_exceptions() == []
    finally:
        if tap is not None:
            tap.close()
        assert daemon.stop() == 0
