"""Parsing the bot's JSON transport messages into RTVI events (`rtvi_events.py`) or app messages.

Tolerant where pipecat evolves (unknown types and extra fields are kept, absent fields get defaults) and
strict where a value cannot be used (a field of the wrong JSON type raises ``ProtocolError``), so a client
written today keeps working against newer bots. Everything it reads is untrusted: names are bounded, and no
exception but ``ProtocolError`` leaves it.
"""

from __future__ import annotations

import math
from dataclasses import fields

from voiceterm.protocol.errors import ProtocolError
from voiceterm.protocol.events import RTVIEvent, TransportMessage
from voiceterm.protocol.rtvi import MESSAGE_LABEL
from voiceterm.protocol.rtvi_events import ANY, BOOL, EVENT_CLASSES, NUMBER, STR

__all__ = ["BY_TYPE", "MAX_NAME_CHARS", "parse_server_message"]


def _payload_fields(cls: type[RTVIEvent]) -> tuple[tuple[str, str], ...]:
    # (name, kind) for every field a subclass reads from ``data``.
    return tuple((f.name, f.metadata["kind"]) for f in fields(cls) if "kind" in f.metadata)


# type string -> (class, payload fields); built once so parsing is a dict lookup.
BY_TYPE: dict[str, tuple[type[RTVIEvent], tuple[tuple[str, str], ...]]] = {
    cls.TYPE: (cls, _payload_fields(cls))  # type: ignore[attr-defined]
    for cls in EVENT_CLASSES
}


def _fits(kind: str, value: object) -> bool:
    if kind == ANY:
        return True
    if value is None and kind.endswith("?"):
        return True
    base = kind.rstrip("?")
    if base == STR:
        return isinstance(value, str)
    if base == BOOL:
        return isinstance(value, bool)
    if base == "int":
        # 64 bits: a segment id or count, never a 4000-digit integer that overflows whoever reads it.
        return isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64
    if base == NUMBER:
        if isinstance(value, float):
            return math.isfinite(value)
        return isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64
    if base == "object":
        return isinstance(value, dict)
    raise AssertionError(f"unknown field kind {kind}")  # a bug in this module's tables


def _short(text: str) -> str:
    # Server-chosen strings end up in log lines: keep them one short line.
    return repr(text[:40] + "...") if len(text) > 40 else repr(text)


MAX_NAME_CHARS = 128  # an RTVI type or id longer than this is garbage, not a name


def parse_server_message(obj: object) -> RTVIEvent | TransportMessage:
    """Turn one decoded JSON transport message into an event.

    A value that is not a JSON object labelled ``"rtvi-ai"`` is an app message: ``TransportMessage``.
    An RTVI message needs a string ``type`` and a string or absent ``id`` (each at most MAX_NAME_CHARS);
    known types become their typed subclass, unknown ones a plain ``RTVIEvent``. Raises only
    ``ProtocolError``, whatever ``obj`` is.
    """
    try:
        return _parse(obj)
    except ProtocolError:
        raise
    except Exception as e:  # the bot's content must never raise anything else out of here
        raise ProtocolError(f"RTVI: unparsable message ({type(e).__name__})") from None


def _parse(obj: object) -> RTVIEvent | TransportMessage:
    if not isinstance(obj, dict):
        return TransportMessage(obj)
    label = obj.get("label")
    if not (isinstance(label, str) and label == MESSAGE_LABEL):
        return TransportMessage(obj)
    msg_type = obj.get("type")
    if not isinstance(msg_type, str) or not msg_type:
        raise ProtocolError("RTVI message without a string 'type'")
    if len(msg_type) > MAX_NAME_CHARS:
        raise ProtocolError(f"RTVI message 'type' of {len(msg_type)} characters")
    msg_id = obj.get("id")
    if msg_id is not None and not isinstance(msg_id, str):
        raise ProtocolError(f"RTVI {_short(msg_type)}: 'id' must be a string, not {type(msg_id).__name__}")
    if msg_id is not None and len(msg_id) > MAX_NAME_CHARS:
        raise ProtocolError(f"RTVI {_short(msg_type)}: 'id' of {len(msg_id)} characters")
    data = obj.get("data")
    known = BY_TYPE.get(msg_type)
    if known is None:
        return RTVIEvent(type=msg_type, id=msg_id, data=data)
    cls, payload = known
    values: dict[str, object] = {}
    if payload:
        if data is not None and not isinstance(data, dict):
            raise ProtocolError(
                f"RTVI {_short(msg_type)}: 'data' must be an object, not {type(data).__name__}"
            )
        source = data or {}
        for key, kind in payload:
            if key not in source:
                continue  # absent: the field's default (pipecat omits None fields)
            value = source[key]
            if not _fits(kind, value):
                raise ProtocolError(
                    f"RTVI {_short(msg_type)}: data.{key} has the wrong type ({type(value).__name__}, want {kind})"
                )
            values[key] = value
    return cls(id=msg_id, data=data, **values)
