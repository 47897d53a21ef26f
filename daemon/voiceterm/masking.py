"""What may be shown of a secret: the one list of secret-like names, and the masks for URLs, headers,
bodies and free text that every log line, `check-config`, `voiceterm status` and the event stream use.

A name is secret-like when it contains one of `SECRET_WORDS` (case-insensitive): `token`, `api_key`,
`Authorization`, `X-Signature`, `password`... Masking errs on the side of hiding: a harmless value under
a secret-like name is hidden too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

SECRET_WORDS = ("token", "key", "secret", "auth", "sig", "password", "passwd", "cookie", "credential", "jwt")
MASK = "<redacted>"
SET = "<set>"  # what a listing shows of a configured secret: that it is set, never any of it

_FREE_TEXT = (
    re.compile(r"(?i)([?&][^=&\s\"']*(?:" + "|".join(SECRET_WORDS) + r")[^=&\s\"']*=)[^&\s\"']+"),
    re.compile(r"(?i)(\btoken[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+"),
    re.compile(r"(?i)(\bbearer\s+)[^\s\"',]+"),
    re.compile(r"(?i)(\bbasic\s+)[A-Za-z0-9+/=]{8,}"),
)


def is_secret_name(name: str) -> bool:
    """Whether a query parameter, header, body key or setting called `name` holds a secret."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask_secret(value: Any) -> str:
    """A configured secret as a listing shows it: "<set>" when set, "" when not."""
    return SET if value else ""


def mask_url(url: str) -> str:
    """`url` fit for a log line: secret-like query values and any user:password replaced by <redacted>."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = ""
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = "&".join(f"{k}={MASK if is_secret_name(k) else v}" for k, v in pairs)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def mask_mapping(mapping: Mapping[str, Any], *, mask: str = SET) -> dict[str, Any]:
    """Headers (or any flat table) with the values of secret-like names replaced by `mask`."""
    return {k: (mask if is_secret_name(str(k)) else v) for k, v in mapping.items()}


def mask_body(value: Any, *, mask: str = SET, depth: int = 32) -> Any:
    """A JSON-like body with the values of secret-like keys replaced by `mask`, at any depth (bounded)."""
    if depth <= 0:
        return "<too deep>"
    if isinstance(value, Mapping):
        return {
            k: (mask if is_secret_name(str(k)) else mask_body(v, mask=mask, depth=depth - 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_body(v, mask=mask, depth=depth - 1) for v in value]
    return value


def redact(text: str) -> str:
    """Mask secrets in free text: secret-like query values, `token=...`, `Bearer ...`, `Basic ...`."""
    for pattern in _FREE_TEXT:
        text = pattern.sub(r"\1" + MASK, text)
    return text


__all__ = [
    "MASK",
    "SECRET_WORDS",
    "SET",
    "is_secret_name",
    "mask_body",
    "mask_mapping",
    "mask_secret",
    "mask_url",
    "redact",
]
