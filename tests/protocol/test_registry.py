"""protocol.registry: explicit registrations, the installed entry points, built-ins, clear errors."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import ClassVar

import pytest

from voiceterm.protocol import registry
from voiceterm.protocol.protobuf import ProtobufSerializer
from voiceterm.protocol.registry import (
    UnknownSerializerError,
    available_serializers,
    get_serializer,
    register_serializer,
)
from voiceterm.protocol.twilio import TwilioSerializer


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})


class LoudProtobuf(ProtobufSerializer):
    name: ClassVar[str] = "loud"


def test_installed_entry_points_resolve():
    names = {ep.name for ep in entry_points(group="voiceterm.serializers")}
    assert {"protobuf", "twilio"} <= names
    assert get_serializer("protobuf") is ProtobufSerializer
    assert get_serializer("twilio") is TwilioSerializer
    assert available_serializers() == ["protobuf", "twilio"]


def test_builtins_resolve_without_installed_metadata(monkeypatch):
    monkeypatch.setattr(registry, "_entry_point_targets", dict)
    assert get_serializer("twilio") is TwilioSerializer
    assert available_serializers() == ["protobuf", "twilio"]


def test_explicit_registration_wins():
    register_serializer("loud", LoudProtobuf)
    register_serializer("protobuf", LoudProtobuf)
    assert get_serializer("loud") is LoudProtobuf
    assert get_serializer("protobuf") is LoudProtobuf
    assert available_serializers() == ["loud", "protobuf", "twilio"]


def test_register_checks_its_arguments():
    with pytest.raises(TypeError, match="Serializer subclass"):
        register_serializer("x", dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        register_serializer(" ", LoudProtobuf)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(UnknownSerializerError) as info:
        get_serializer("protobuff")
    assert isinstance(info.value, LookupError)
    assert str(info.value) == "unknown serializer 'protobuff'; available: protobuf, twilio"


def test_broken_plugins_are_lookup_errors(monkeypatch):
    monkeypatch.setattr(
        registry,
        "_entry_point_targets",
        lambda: {"gone": "voiceterm_no_such_module:X", "wrong": "json:dumps"},
    )
    with pytest.raises(UnknownSerializerError, match=r"'gone' .* failed to load: ModuleNotFoundError"):
        get_serializer("gone")
    with pytest.raises(UnknownSerializerError, match=r"'wrong' .* is not a Serializer subclass"):
        get_serializer("wrong")


def test_a_plugin_cannot_replace_a_builtin_and_builtins_never_scan(monkeypatch):
    scans = []

    def targets():
        scans.append(1)
        return {"protobuf": "voiceterm.protocol.twilio:TwilioSerializer"}

    monkeypatch.setattr(registry, "_entry_point_targets", targets)
    assert get_serializer("protobuf") is ProtobufSerializer
    assert scans == []  # the common start-up reads no installed metadata
    with pytest.raises(UnknownSerializerError):
        get_serializer("protobuff")
    assert scans  # an unknown name does look at the plugins
