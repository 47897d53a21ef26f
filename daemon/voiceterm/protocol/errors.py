"""The one exception of the wire-protocol layer: anything malformed, coming in or going out."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message could not be decoded, or a value cannot be encoded, under the wire protocol.

    ``Serializer.decode`` and ``rtvi_parse.parse_server_message`` raise nothing else, whatever bytes or
    values they are given, so the link can count a bad message and carry on with the session.
    Encoders raise it before anything reaches the socket, because a malformed frame makes the
    Pipecat server drop the whole session. Messages never quote payloads (they may hold speech
    or secrets), only sizes, types and field names.
    """
