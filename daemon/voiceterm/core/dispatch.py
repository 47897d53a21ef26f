"""Type-keyed dispatch tables: the handler registered for an object's class, or for its nearest base class.

The daemon's inputs are typed events (a bot event, a link event, a control command, a terminal input); a
table from type to handler replaces a chain of `isinstance` tests, reads as a list of what is handled, and
costs one dict lookup per event once a type has been seen (`ReceivedAudio` finds the `AudioChunk` handler
through its bases, once).

A table can be given as a function that returns it, called on the first lookup: the bot's 35 RTVI message
classes are then imported by the first message, after READY, not by every module that handles a few of them
(defining them is ~20 ms of start-up here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

H = TypeVar("H")

__all__ = ["Dispatch"]


class Dispatch(Generic[H]):
    """`table[type]` for an object, looked up along its class's method resolution order."""

    def __init__(self, table: Mapping[type, H] | Callable[[], Mapping[type, H]]) -> None:
        self._build = table if callable(table) else None
        self._given: dict[type, H] | None = None if callable(table) else dict(table)
        self._resolved: dict[type, H | None] = {}

    @property
    def _table(self) -> dict[type, H]:
        if self._given is None:
            assert self._build is not None
            self._given = dict(self._build())
        return self._given

    def get(self, obj: object) -> H | None:
        """The handler for `obj`'s class or its nearest registered base; None when there is none."""
        kind = type(obj)
        try:
            return self._resolved[kind]
        except KeyError:
            pass
        found = next((self._table[base] for base in kind.__mro__ if base in self._table), None)
        if len(self._resolved) < 1024:  # bounded: the daemon has a few dozen event types
            self._resolved[kind] = found
        return found

    def __contains__(self, kind: type) -> bool:
        return kind in self._table

    @property
    def types(self) -> tuple[type, ...]:
        """The registered types, in the table's order."""
        return tuple(self._table)
