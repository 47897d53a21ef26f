"""What may be shown of a secret: the one list of secret-like names, and the masks for URLs, headers,
bodies and free text that every log line, `check-config`, `voiceterm status` and the event stream use.

A name is secret-like when it contains one of `SECRET_WORDS` (case-insensitive): `token`, `api_key`,
`Authorization`, `X-Signature`, `password`... A value is secret-like when it reads like a credential
(`Bearer …`, `Basic …`, `token=…`) whatever its name. Masking errs on the side of hiding: a harmless value
under a secret-like name is hidden too.

Behind the masks by name, the daemon's own configured secrets are remembered by value (`remember_secrets`)
and `scrub_known` / `redact` replace them wherever they turn up: an error message, a URL in another form,
a log line, a status or event field. Names can be missed; the values themselves cannot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

SECRET_WORDS = ("token", "key", "secret", "auth", "sig", "password", "passwd", "cookie", "credential", "jwt")
MASK = "<redacted>"
SET = "<set>"  # what a listing shows of a configured secret: that it is set, never any of it

_SCHEMES = frozenset({"bearer", "basic", "token", "digest"})
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
        query = "&".join(f"{k}={MASK if is_secret_name(k) or looks_secret(v) else v}" for k, v in pairs)
    fragment = _redact_patterns(parts.fragment)
    return scrub_known(urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment)))


def looks_secret(value: Any) -> bool:
    """Whether a value reads like a credential whatever it is called (`Bearer …`, `Basic …`, `token=…`)."""
    return isinstance(value, str) and _redact_patterns(value) != value


def mask_mapping(mapping: Mapping[str, Any], *, mask: str = SET) -> dict[str, Any]:
    """Headers (or any flat table) with the values of secret-like names, and the values that read like a
    credential under any name, replaced by `mask`."""
    return {k: (mask if is_secret_name(str(k)) or looks_secret(v) else v) for k, v in mapping.items()}


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
    if looks_secret(value):
        return mask
    return value


# Secrets this process was configured with, longest first (so a token inside a longer header value goes
# with it). Shorter ones are not remembered: masking every "abc" in every line would hide more than it helps.
MIN_REMEMBERED = 6
_known: tuple[str, ...] = ()


def remember_secrets(values: Iterable[Any]) -> None:
    """Add configured secret values (a token, an auth header's value ...) to the ones masked everywhere."""
    global _known
    found = set(_known)
    for value in values:
        if isinstance(value, str):
            text = value.strip()
            for part in (text, *text.split()):  # "Bearer abc...": the credential after the scheme too
                if len(part) >= MIN_REMEMBERED and part.lower() not in _SCHEMES:
                    found.add(part)
    _known = tuple(sorted(found, key=len, reverse=True))


def forget_secrets() -> None:
    """Forget every remembered value (tests; a reload remembers the new ones on top)."""
    global _known
    _known = ()


def scrub_known(text: str) -> str:
    """`text` with every remembered secret value replaced by <redacted>."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: str) -> str:
    """Mask secrets in free text: remembered secret values, secret-like query values, `token=...`,
    `Bearer ...`, `Basic ...`."""
    return _redact_patterns(scrub_known(text))


def _redact_patterns(text: str) -> str:
    for pattern in _FREE_TEXT:
        text = pattern.sub(r"\1" + MASK, text)
    return text


__all__ = [
    "MASK",
    "SECRET_WORDS",
    "SET",
    "forget_secrets",
    "is_secret_name",
    "looks_secret",
    "mask_body",
    "mask_mapping",
    "mask_secret",
    "mask_url",
    "redact",
    "remember_secrets",
    "scrub_known",
]
