"""Hostile local clients against the real daemon: whatever a member of the socket group writes to the event
and control socket or the status socket, the daemon answers with one strict JSON line or closes that one
connection, and goes on (the module's daemon, subscriber and checks are conftest.py's)."""

from __future__ import annotations

import json
import socket

import pytest

from voiceterm.io.control import connect_unix

from .conftest import Hostile

pytestmark = pytest.mark.bot


def reply_of(raw: bytes) -> dict:
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw[:200]
    obj = json.loads(raw.decode("utf-8"))
    assert isinstance(obj, dict)
    return obj


def test_a_line_of_16000_brackets_gets_an_error_reply(hostile: Hostile) -> None:
    """Before: RecursionError out of parse_request, exit 70."""
    reply = reply_of(hostile.ctl_raw(b"[" * 16_000 + b"\n"))
    assert reply["ok"] is False and "nested deeper" in reply["error"]
    reply = reply_of(hostile.ctl_raw(b'{"cmd":"status","x":' + b"[" * 5000 + b"]" * 5000 + b"}\n"))
    assert reply["ok"] is False
    hostile.check_healthy()


def test_send_text_that_cannot_be_sent_is_refused_before_any_ok(hostile: Hostile) -> None:
    """Before: `ok: true`, then the link refused to encode it (a lone surrogate)."""
    hostile.wait_ready()
    before = hostile.daemon.status()
    assert before is not None
    reply = reply_of(hostile.ctl_raw(b'{"cmd":"send-text","id":1,"content":"hi \\ud800 there"}\n'))
    assert reply == {
        "reply": None,
        "id": 1,
        "ok": False,
        "error": "content is not valid Unicode text (a lone surrogate cannot be sent)",
    }
    id_reply = reply_of(hostile.ctl_raw(b'{"cmd":"help","id":"\\udc00"}\n'))
    assert id_reply["ok"] is False
    after = hostile.daemon.status()
    assert after is not None
    assert after["link"]["dropped_messages_total"] == before["link"]["dropped_messages_total"]
    # A sendable text is still sent, and answered with the id of the message that went out.
    assert hostile.ctl("send-text", content="hello \u2603")["ok"] is True
    hostile.check_healthy()


BAD_LINES = [
    b"\xff\xfe\x00garbage\n",
    b"\x00" * 1000 + b"\n",
    b'{"cmd":"volume","percent":1e999}\n',
    b'{"cmd":"volume","percent":' + b"9" * 5000 + b"}\n",
    b'{"cmd":"volume","percent":NaN}\n',
    b'{"cmd":"help","id":' + b"1" * 64 + b"}\n",
    b'{"cmd":"subscribe","events":' + json.dumps(["x" * 10] * 1000).encode() + b"}\n",
    b'{"cmd":"subscribe","events":[["led"]]}\n',
    b'{"cmd":"\\u001b[2J\\n\\u2028forged","id":"\\u2029"}\n',
    b'{"cmd":"talk","state":{"start":true}}\n',
    b'{"cmd":"send-text","content":"' + b"a" * 5000 + b'"}\n',
    b'{"cmd":"help","cmd":"reconnect","id":[1]}\n',
    b"[]\n",
    b'"status"\n',
]


def test_bad_requests_get_one_strict_json_line_each(hostile: Hostile) -> None:
    for line in BAD_LINES:
        reply = reply_of(hostile.ctl_raw(line))
        assert reply["ok"] is False, line[:80]
    hostile.check_healthy()


def test_an_endless_line_closes_that_connection_only(hostile: Hostile) -> None:
    sock = connect_unix(hostile.daemon.events_path, 5.0)
    try:
        with pytest.raises(OSError):  # the daemon answers and closes; our sending then fails
            for _ in range(64):
                sock.sendall(b"x" * 4096)
        answer = sock.recv(65536)
        assert reply_of(answer.split(b"\n")[0] + b"\n")["ok"] is False
    finally:
        sock.close()
    hostile.check_healthy()


def test_more_clients_than_allowed_are_refused_and_the_rest_served(hostile: Hostile) -> None:
    before = hostile.daemon.status()
    assert before is not None
    refused = before["events"]["clients_refused_total"]
    socks = [connect_unix(hostile.daemon.events_path, 5.0) for _ in range(24)]
    try:
        # 16 slots, one held by the module's subscriber: 15 of these are served, 9 refused (and closed).
        hostile.daemon.wait_status(
            lambda s: s["events"]["clients_refused_total"] == refused + 9 and s["events"]["clients"] == 16,
            10,
            "9 refusals",
        )
    finally:
        for sock in socks:
            sock.close()
    hostile.check_healthy()


def test_the_status_socket_ignores_what_a_client_writes(hostile: Hostile) -> None:
    sock = connect_unix(hostile.daemon.status_path, 5.0)
    try:
        # The daemon answers and closes at once: our write may find it gone, and with our bytes unread the
        # kernel may turn its close into a reset. Either way that connection only.
        try:
            sock.sendall(b"[" * 16_000 + b"\x00\xff\n")
            doc = _read_all(sock)
        except (BrokenPipeError, ConnectionResetError):
            doc = None
    finally:
        sock.close()
    if doc is not None:
        assert json.loads(doc.decode("utf-8"))["link"]["state"] in ("ready", "connected")
    hostile.check_healthy()


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
