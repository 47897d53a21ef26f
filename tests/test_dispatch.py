"""core.dispatch: handlers by type along the MRO; a table given as a function is built once, on first use."""

from __future__ import annotations

from voiceterm.core.dispatch import Dispatch


class Base:
    pass


class Child(Base):
    pass


def test_lookup_follows_the_bases_and_misses_are_none() -> None:
    table = Dispatch({Base: "base", int: "int"})
    assert table.get(Child()) == "base" and table.get(3) == "int" and table.get("x") is None
    assert Base in table and Child not in table and table.types == (Base, int)


def test_a_table_given_as_a_function_is_built_on_the_first_lookup_only() -> None:
    builds = []

    def build() -> dict[type, str]:
        builds.append(1)
        return {Base: "base"}

    table = Dispatch(build)
    assert builds == []  # defining the table imports and builds nothing
    assert table.get(Child()) == "base" and table.get(Base()) == "base" and Base in table
    assert builds == [1]
