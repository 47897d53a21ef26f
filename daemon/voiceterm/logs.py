"""Logging setup: one event per line on stderr, key=value context, journald-friendly, secrets redacted,
untrusted text escaped.

When journald reads stderr (`JOURNAL_STREAM` is set) lines carry a `<N>` syslog priority prefix instead of a
timestamp, so `journalctl -p warning` works. A filter masks anything that looks like a token on every record,
as a last line of defence behind code that never logs secrets in the first place. Text that came from outside
(the bot, an endpoint, a socket client, a device name) goes through `escape` before it reaches a line, so a
newline in a bot's error text cannot forge a second journal entry.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from voiceterm.masking import redact

UNTRUSTED_LIMIT = 200  # characters of outside text one log line carries

# Characters that would break a line or mislead a reader: C0/C1 controls, DEL, the Unicode line and paragraph
# separators, bidirectional overrides and isolates, and lone surrogates (not encodable as UTF-8 at all).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: Any, limit: int = UNTRUSTED_LIMIT) -> str:
    """Outside text made safe for one log line: secrets masked, control and line-breaking characters
    written as escapes, and at most `limit` characters (a cut is marked with "…")."""
    return _one_line(text, limit, redact)


def printable(text: Any, limit: int = UNTRUSTED_LIMIT) -> str:
    """Outside text made safe to print on a terminal as one line (`escape` without the secret masks, for
    what a person asked to see, like a transcript): control, line-breaking and bidirectional-override
    characters written as escapes, at most `limit` characters."""
    return _one_line(text, limit, None)


def _one_line(text: Any, limit: int, mask: Any) -> str:
    if not isinstance(text, str):
        text = repr(text)
    if len(text) > 4 * limit:  # bound the work on a huge input before any regex runs over it
        text = text[: 4 * limit]
        cut = True
    else:
        cut = False
    if mask is not None:
        text = mask(text)
    text = _UNSAFE.sub(_escaped, text)
    if len(text) > limit:
        return text[:limit] + "…"
    return text + "…" if cut else text


def kv(**context: Any) -> str:
    """Format key=value context for a log line; values with spaces are quoted."""
    parts = []
    for key, value in context.items():
        if value is None:
            continue
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        if not text or any(c.isspace() for c in text) or '"' in text:
            text = '"' + text.replace('"', "'") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _RedactingFilter(logging.Filter):
    """The last line of defence on every record: secrets masked, and the message kept to one line (a
    value that slipped past `escape` still cannot start a forged journal entry). Tracebacks (exc_info)
    are formatted separately and keep their lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _UNSAFE.sub(_escaped, redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines())


def setup_logging(level: str = "info", *, stream: Any = None) -> None:
    """Configure the root logger once for the daemon or a CLI command."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that chatter at INFO about every connection attempt would flood the journal.
    for noisy in ("trio-websocket", "httpx", "httpcore", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
