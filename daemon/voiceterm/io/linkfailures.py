"""Why a connect attempt or a session failed, in words a person understands, with whether a retry can help.

Close codes and reasons, upgrade rejections, TLS and socket errors become one `Failure` line each. Text the
peer chose (a close reason) is escaped and bounded here, so the line is safe to log and to show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voiceterm.core.linksignals import Failure
from voiceterm.io.neterrors import describe_network, describe_tls, status_is_unfixable
from voiceterm.io.start_endpoint import StartEndpointError
from voiceterm.logs import escape
from voiceterm.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from trio_websocket import CloseReason

_CLOSE_CODES = {
    1000: "bot ended the session (close code 1000)",
    1001: "bot is going away (close code 1001)",
    1006: "connection lost (no close frame)",
    1011: "bot hit an internal error (close code 1011)",
    1013: "bot is busy with another client (close code 1013)",
}


class SetupError(Exception):
    """A local problem a retry cannot fix (an unreadable CA file): its message is the whole story."""


class UpgradeCutShort(Exception):
    """The peer closed or reset the connection before answering the WebSocket upgrade: what a proxy or a
    load balancer whose backend is down does."""

    def __init__(self) -> None:
        super().__init__("connection closed before the upgrade was answered (a proxy whose backend is down?)")


def describe_close(reason: CloseReason | None, *, max_message_bytes: int) -> Failure:
    """A closed WebSocket in words."""
    if reason is None:
        return Failure("connection closed")
    code = reason.code
    text = escape(reason.reason or "", 80)
    if code in _CLOSE_CODES:
        return Failure(_CLOSE_CODES[code])
    if code == 1009:
        if text.startswith("Exceeded maximum message size"):
            return Failure(
                f"bot sent a message over the {max_message_bytes}-byte limit (closed with 1009); "
                "raise bot.max_message_bytes if the bot is right"
            )
        return Failure("bot closed: a message was too big for it (close code 1009)")
    if code == 4003:
        return Failure(
            "bot rejected the session (close code 4003: token or Origin not accepted)", unfixable=True
        )
    return Failure(f"bot closed the connection (close code {code}{': ' + text if text else ''})")


def describe_attempt_error(exc: BaseException, *, token_sent: bool) -> Failure:
    """A failed connect attempt (start call, TCP, TLS, upgrade, opening messages) in words."""
    from trio_websocket import ConnectionClosed, ConnectionRejected  # io/wsopen.py: not before READY

    if isinstance(exc, StartEndpointError):
        return Failure(str(exc), exc.unfixable)
    if isinstance(exc, SetupError):
        return Failure(str(exc), unfixable=True)
    if isinstance(exc, UpgradeCutShort):
        return Failure(str(exc))
    if isinstance(exc, ConnectionRejected):
        status = exc.status_code
        if status in (401, 403):
            if token_sent:
                return Failure(f"bot rejected the token (HTTP {status})", unfixable=True)
            return Failure(
                f"bot refused the connection (HTTP {status}); it may need bot.token or another bot.origin",
                unfixable=True,
            )
        if status_is_unfixable(status):
            return Failure(
                f"bot refused the WebSocket upgrade (HTTP {status}); check bot.url", unfixable=True
            )
        return Failure(f"bot refused the WebSocket upgrade (HTTP {status})")
    if isinstance(exc, ConnectionClosed):
        return Failure(f"connection closed during the handshake ({exc.reason.code if exc.reason else '-'})")
    if isinstance(exc, ProtocolError):
        return Failure(f"cannot start the session: {escape(str(exc))}")
    tls = describe_tls(exc)
    if tls is not None:
        return tls
    words = describe_network(exc)
    if words == "connection lost":
        return Failure("connection lost during the handshake")
    if words is not None:
        return Failure(words)
    return Failure(f"unexpected {type(exc).__name__} while connecting")
