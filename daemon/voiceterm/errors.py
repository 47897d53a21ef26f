"""The exception vocabulary every layer shares: the one walker through wrapped and grouped exceptions, and
an exception's reason as one short line.

Errors arrive wrapped: httpx in httpcore in OSError, trio's nurseries and happy-eyeballs connect put them in
exception groups (strict groups: even a single failure is a group). The walker finds what really happened:
`io/neterrors.py` puts network failures into words with it, and the daemon finds the error that ended it.
Neutral: no trio, no I/O, so the pure core may use it as well as the shell.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10 only
    from exceptiongroup import BaseExceptionGroup

REASON_CHARS = 200  # an exception's reason in a log line or an error reply


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


def first_real(
    exc: BaseException, *, skip: type[BaseException] | tuple[type[BaseException], ...] = ()
) -> BaseException | None:
    """What `exc` really is, without group wrapping: the first member that is neither a group nor of a
    `skip` type (the shell skips trio.Cancelled). Causes are not followed: a cancellation raised while
    handling an error is still a cancellation."""
    for current in walk(exc, chain=False):
        if not isinstance(current, BaseExceptionGroup) and not isinstance(current, skip):
            return current
    return None


def reason(exc: BaseException, limit: int = REASON_CHARS) -> str:
    """`exc` as one short line: its message with white space folded (a library's message may hold newlines),
    or its type name when it has none; at most `limit` characters."""
    return (" ".join(str(exc).split()) or type(exc).__name__)[:limit]


def os_reason(exc: OSError) -> str:
    """An OSError in the words a person knows: its strerror ("Permission denied") when it has one."""
    return exc.strerror or reason(exc)


__all__ = ["REASON_CHARS", "find_in_chain", "first_real", "os_reason", "reason", "walk"]
