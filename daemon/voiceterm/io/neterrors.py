"""The network-error vocabulary the link and the start endpoint share: the HTTP statuses worth retrying, and
the words for TLS and socket failures.

Network errors arrive wrapped (httpx in httpcore in OSError, or in an ExceptionGroup from trio's
happy-eyeballs connect and from nurseries); `voiceterm.errors.find_in_chain` finds the one that says what
happened in words a person knows.
"""

from __future__ import annotations

import socket
import ssl

import trio

from voiceterm.core.linksignals import Failure
from voiceterm.errors import find_in_chain
from voiceterm.logs import escape

# Client errors worth retrying: the server is overloaded, restarting, or asked us to come back.
RETRIABLE_HTTP = frozenset({408, 425, 429})


def status_is_unfixable(status: int) -> bool:
    """A 4xx answer other than the retriable ones: the same request would get the same answer."""
    return 400 <= status < 500 and status not in RETRIABLE_HTTP


def describe_tls(exc: BaseException) -> Failure | None:
    """A TLS failure in `exc`, in words, or None. An untrusted certificate is unfixable by retrying."""
    cert = find_in_chain(exc, ssl.SSLCertVerificationError)
    if cert is not None:
        # The verify message can quote names from the peer's certificate: outside text.
        detail = escape(getattr(cert, "verify_message", None) or "certificate not trusted", 120)
        return Failure(
            f"TLS certificate verification failed ({detail}); set bot.ca_file if it uses a private CA",
            unfixable=True,
        )
    tls = find_in_chain(exc, ssl.SSLError)
    if tls is not None:
        return Failure(
            f"TLS handshake failed ({escape(getattr(tls, 'reason', None) or type(tls).__name__, 80)})"
        )
    return None


def describe_network(exc: BaseException) -> str | None:
    """A socket-level failure in `exc` (DNS, refused, reset ...) in words, or None."""
    if find_in_chain(exc, socket.gaierror) is not None:
        return "host name not found (DNS)"
    if find_in_chain(exc, ConnectionRefusedError) is not None:
        return "connection refused"
    oserror = find_in_chain(exc, OSError, lambda e: bool(e.strerror)) or find_in_chain(exc, OSError)
    if oserror is not None:
        return f"cannot connect: {oserror.strerror or type(oserror).__name__}"
    if find_in_chain(exc, (trio.BrokenResourceError, trio.ClosedResourceError)) is not None:
        return "connection lost"
    return None
