"""`record`: the daemon's value types (events, signals, commands, config sections) as frozen, slotted
dataclasses that cost half as much to define.

`dataclass(frozen=True, slots=True)` writes six methods per class as source text and compiles each one:
``__init__``, ``__setattr__``, ``__delattr__``, ``__repr__``, ``__eq__`` and ``__hash__``. That is ~0.65 ms a
class here and the daemon defines ~150 of them on its way to READY: about 100 ms of start-up, ten times that
on a Pi Zero. Three of the six do the same thing in every class (read the fields in order), so `record` lets
dataclasses write the other three and gives every class one shared copy of these, with the generated ones'
results: the same repr text, equality only between instances of the very same class over the compared
fields, and the hash of that tuple. `dataclasses.fields`, `replace` and `asdict` work as before.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, TypeVar

__all__ = ["record"]

T = TypeVar("T", bound=type)


def _tuple_of(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) >= 2:
        return attrgetter(*names)  # a tuple, in C
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__record_repr__)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: object) -> bool:
    if other.__class__ is self.__class__:
        key = type(self).__record_key__
        return key(self) == key(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(type(self).__record_hash__(self))


def record(cls: T) -> T:
    """`dataclass(frozen=True, slots=True)(cls)`, with ``__repr__``, ``__eq__`` and ``__hash__`` shared."""
    own = cls.__dict__
    if "__eq__" in own or "__hash__" in own:
        raise TypeError(f"{cls.__qualname__}: a record compares and hashes its fields; use dataclass instead")
    if cls.__doc__ is None:  # else dataclasses writes one from inspect.signature: 70 µs a class
        cls.__doc__ = cls.__name__
    made = dataclass(frozen=True, slots=True, repr=False, eq=False)(cls)
    every = fields(made)
    made.__record_repr__ = tuple(f.name for f in every if f.repr)
    made.__record_key__ = staticmethod(_tuple_of(tuple(f.name for f in every if f.compare)))
    made.__record_hash__ = staticmethod(
        _tuple_of(tuple(f.name for f in every if (f.compare if f.hash is None else f.hash)))
    )
    if "__repr__" not in own:
        made.__repr__ = _repr
    made.__eq__ = _eq
    made.__hash__ = _hash
    return made
