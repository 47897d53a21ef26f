"""record: a frozen, slotted dataclass whose repr, equality and hash match the generated ones."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from voiceterm.record import record


@record
class Point:
    x: int
    y: int = 0
    note: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Twin:
    x: int
    y: int = 0
    note: str = field(default="", compare=False, repr=False)


@record
class Point3(Point):
    z: int = 0


@record
class Empty:
    pass


def test_it_behaves_like_the_frozen_slotted_dataclass() -> None:
    p, t = Point(1, 2, "a"), Twin(1, 2, "a")
    assert repr(p) == repr(t).replace("Twin", "Point") == "Point(x=1, y=2)"
    assert p == Point(1, 2, "other note") and p != Point(1, 3)
    assert hash(p) == hash(Point(1, 2, "b")) == hash((1, 2))
    assert p != t  # equality is between instances of the very same class, as dataclasses have it
    assert (p == t) is False and p.__eq__(t) is NotImplemented
    assert {p, Point(1, 2)} == {p}
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[misc]
    assert not hasattr(p, "__dict__")
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "note"]
    assert dataclasses.replace(p, y=7) == Point(1, 7)
    assert Point.__match_args__ == ("x", "y", "note")


def test_subclasses_and_empty_records() -> None:
    assert repr(Point3(1, 2, z=3)) == "Point3(x=1, y=2, z=3)"
    assert Point3(1, 2, z=3) != Point3(1, 2, z=4) and Point3(1, 2) != Point(1, 2)
    assert Empty() == Empty() and repr(Empty()) == "Empty()" and hash(Empty()) == hash(())


def test_a_record_with_its_own_equality_is_refused() -> None:
    class Odd:
        x: int

        def __eq__(self, other: object) -> bool:
            return True

    with pytest.raises(TypeError, match="use dataclass instead"):
        record(Odd)
