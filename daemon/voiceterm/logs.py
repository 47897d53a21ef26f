"""Logging setup: one event per line on stderr, key=value context, journald-friendly, secrets redacted.

When journald reads stderr (`JOURNAL_STREAM` is set) lines carry a `<N>` syslog priority prefix instead of a
timestamp, so `journalctl -p warning` works. A filter masks anything that looks like a token on every record,
as a last line of defence behind code that never logs secrets in the first place.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

_SECRET_PATTERNS = (
    re.compile(r"(?i)([?&]token=)[^&\s\"']+"),
    re.compile(r"(?i)(\btoken[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+"),
    re.compile(r"(?i)(\bbearer\s+)[^\s\"',]+"),
)

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def redact(text: str) -> str:
    """Mask token values in free text (URLs with ?token=, `token=...`, `Bearer ...`)."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1<redacted>", text)
    return text


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
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
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
