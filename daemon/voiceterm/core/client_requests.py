"""Client requests: a ``client-message`` that waits for its reply, the daemon's ``sendClientRequest``. Pure.

The bot answers a ``client-message`` with a ``server-response`` carrying the same ``id`` (or refuses it with
an ``error-response`` of that id). This table matches the replies to the requests by id, gives each request
exactly one outcome — the reply, the refusal, a timeout, or the end of the session — and says which control
client asked, so the shell can tell it. A reply nobody waits for (late, or never asked) is counted.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from voiceterm.record import record

MAX_PENDING = 32  # requests waiting for a reply, all clients together
MIN_TIMEOUT_S = 0.1
MAX_TIMEOUT_S = 120.0
DEFAULT_TIMEOUT_S = 10.0


class RequestError(ValueError):
    """A request that cannot be made; str() is the one-line reason."""


@record
class Pending:
    request_id: str  # the RTVI message id
    owner: int  # the control client that asked
    t: str  # the client-message type, for the outcome
    started: float
    deadline: float


@record
class Outcome:
    """How one request ended: `ok` with the reply's `d`, or an `error` (refused, timed out, session over)."""

    request: Pending
    ok: bool
    data: Any = field(default=None, hash=False)
    error: str | None = None
    elapsed_s: float = 0.0


class ClientRequests:
    """The requests waiting for their reply."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self._pending: dict[str, Pending] = {}
        self.counters = {
            "client_requests_total": 0,
            "client_requests_answered_total": 0,
            "client_requests_refused_total": 0,  # error-response from the bot
            "client_requests_timed_out_total": 0,
            "client_requests_lost_total": 0,  # the session ended first
            "client_responses_unmatched_total": 0,  # a reply nobody waits for
        }

    def check_room(self) -> None:
        """RequestError when no further request may wait (check before sending one)."""
        if len(self._pending) >= self.max_pending:
            raise RequestError(f"{self.max_pending} requests already wait for a reply; try again later")

    def open(self, request_id: str, owner: int, t: str, now: float, timeout_s: float) -> Pending:
        """Wait for the reply to the message `request_id` (just sent) for `timeout_s` seconds."""
        self.check_room()
        if request_id in self._pending:
            raise RequestError(f"a request with id {request_id[:40]!r} is already waiting")
        timeout = min(max(timeout_s, MIN_TIMEOUT_S), MAX_TIMEOUT_S)
        pending = Pending(request_id, owner, t, now, now + timeout)
        self._pending[request_id] = pending
        self.counters["client_requests_total"] += 1
        return pending

    def response(self, request_id: str | None, data: Any, now: float) -> Outcome | None:
        """A ``server-response``: the outcome of the request it answers, or None when nobody waits for it."""
        pending = self._take(request_id)
        if pending is None:
            return None
        self.counters["client_requests_answered_total"] += 1
        return Outcome(pending, True, data, None, now - pending.started)

    def refused(self, request_id: str | None, error: str, now: float) -> Outcome | None:
        """An ``error-response``: the outcome of the request it refuses, or None when it is about another
        message (an error-response answers any client message, not only requests)."""
        pending = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if pending is None:
            return None
        self.counters["client_requests_refused_total"] += 1
        return Outcome(pending, False, None, f"the bot refused the request: {error}", now - pending.started)

    def tick(self, now: float) -> list[Outcome]:
        """The requests whose time ran out."""
        out = []
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            del self._pending[pending.request_id]
            self.counters["client_requests_timed_out_total"] += 1
            limit = pending.deadline - pending.started
            out.append(Outcome(pending, False, None, f"no reply within {limit:g} s", now - pending.started))
        return out

    def session_ended(self, now: float) -> list[Outcome]:
        """The session is over: the replies can no longer come."""
        out = [
            Outcome(p, False, None, "the session ended before the reply came", now - p.started)
            for p in self._pending.values()
        ]
        self.counters["client_requests_lost_total"] += len(out)
        self._pending.clear()
        return out

    def forget(self, owner: int) -> None:
        """The client that asked went away: nobody to tell, so its replies are not waited for any more."""
        for request_id in [i for i, p in self._pending.items() if p.owner == owner]:
            del self._pending[request_id]

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def snapshot(self) -> dict[str, Any]:
        return {"pending": len(self._pending), **self.counters}

    def _take(self, request_id: str | None) -> Pending | None:
        pending = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if pending is None:
            self.counters["client_responses_unmatched_total"] += 1
        return pending


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_TIMEOUT_S",
    "MIN_TIMEOUT_S",
    "ClientRequests",
    "Outcome",
    "Pending",
    "RequestError",
]
