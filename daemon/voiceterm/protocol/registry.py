"""Serializers by name: explicit registrations, then the built-ins, then the ``voiceterm.serializers`` entry
points of installed plugins.

The built-ins come before the entry points for two reasons: an installed package cannot replace the wire
codec of ``protobuf`` or ``twilio`` behind the configuration's back, and the common start-up never scans
the installed distributions (importlib.metadata and one scan cost ~20 ms here, several times that on a Pi
Zero, on the path to READY). A source checkout without installed metadata finds the built-ins too.
"""

from __future__ import annotations

import importlib

from voiceterm.protocol.base import Serializer

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownSerializerError",
    "available_serializers",
    "get_serializer",
    "register_serializer",
]

ENTRY_POINT_GROUP = "voiceterm.serializers"

_BUILTINS = {
    "protobuf": "voiceterm.protocol.protobuf:ProtobufSerializer",
    "twilio": "voiceterm.protocol.twilio:TwilioSerializer",
}

_registered: dict[str, type[Serializer]] = {}


class UnknownSerializerError(LookupError):
    """No serializer by that name (or its plugin failed to load). The message lists the known names."""

    def __str__(self) -> str:
        # LookupError's default str() would quote the whole message with repr().
        return str(self.args[0]) if self.args else ""


def register_serializer(name: str, cls: type[Serializer]) -> None:
    """Make ``cls`` available as ``name``, ahead of the built-ins and any entry point of the same name."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a serializer name must be a non-empty string")
    if not (isinstance(cls, type) and issubclass(cls, Serializer)):
        raise TypeError(f"serializer {name!r} must be a Serializer subclass, got {cls!r}")
    _registered[name] = cls


def _entry_point_targets() -> dict[str, str]:
    from importlib.metadata import entry_points  # only for a name that is not built in

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_serializers() -> list[str]:
    """Every name ``get_serializer`` can resolve, sorted."""
    return sorted({*_registered, *_entry_point_targets(), *_BUILTINS})


def _load(target: str) -> object:
    module_name, _, attr = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def get_serializer(name: str) -> type[Serializer]:
    """The serializer class called ``name``; ``UnknownSerializerError`` (listing the names) if none."""
    cls = _registered.get(name)
    if cls is not None:
        return cls
    target = _BUILTINS.get(name) or _entry_point_targets().get(name)
    if target is None:
        known = ", ".join(available_serializers())
        raise UnknownSerializerError(f"unknown serializer {name!r}; available: {known}")
    try:
        loaded = _load(target)
    except Exception as e:  # a broken plugin must read as a config problem, not a traceback
        raise UnknownSerializerError(
            f"serializer {name!r} ({target}) failed to load: {type(e).__name__}: {e}"
        ) from e
    if not (isinstance(loaded, type) and issubclass(loaded, Serializer)):
        raise UnknownSerializerError(f"serializer {name!r} ({target}) is not a Serializer subclass")
    return loaded
