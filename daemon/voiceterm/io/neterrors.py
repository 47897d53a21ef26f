"""The network-error vocabulary the link and the start endpoint share: the one walker through wrapped and
grouped exceptions, the HTTP statuses worth retrying, and the words for TLS and socket failures.

Network errors arrive wrapped (httpx in httpcore in OSError, or in an ExceptionGroup from trio's
happy-eyeballs connect and from nurseries); the innermost one says what happened in words a person knows.
"""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from typing import Any

import trio

from voiceterm.core.linksignals import Failure
from voiceterm.logs import escape

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10 only
    from exceptiongroup import BaseExceptionGroup

# Client errors worth retrying: the server is overloaded, restarting, or asked us to come back.
RETRIABLE_HTTP = frozenset({408, 425, 429})


def status_is_unfixable(status: int) -> bool:
    """A 4xx answer other than the retriable ones: the same request would get the same answer."""
    return 400 <= status < 500 and status not in RETRIABLE_HTTP


def walk(exc: BaseException, *, chain: bool = True) -> Iterator[BaseException]:
    """`exc` and, depth first, the members of every exception group in it; with `chain`, also each one's
    cause and context. Every exception once, so a cycle in the chain cannot loop."""
    stack = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        later: list[BaseException] = []
        if isinstance(current, BaseExceptionGroup):
            later.extend(current.exceptions)
        if chain:
            later.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        stack.extend(reversed(later))


def find_in_chain(
    exc: BaseException,
    kind: type[BaseException] | tuple[type[BaseException], ...],
    predicate: Callable[[Any], bool] | None = None,
) -> Any:
    """The first exception of `kind` (passing `predicate`) anywhere in `exc`; None if there is none."""
    for current in walk(exc):
        if isinstance(current, kind) and (predicate is None or predicate(current)):
            return current
    return None


def first_real(exc: BaseException) -> BaseException | None:
    """What `exc` really is, without group wrapping: the first member that is neither a group nor a
    trio.Cancelled (causes are not followed: a cancellation raised while handling an error is still one)."""
    for current in walk(exc, chain=False):
        if not isinstance(current, (BaseExceptionGroup, trio.Cancelled)):
            return current
    return None


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
