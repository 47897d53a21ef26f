"""The configuration as text: the effective configuration with secrets masked (`check-config`, comparing
reloads), the secret values a configuration holds (for the masks), and TOML.

`toml_document` is the one TOML writer: `check-config` prints through it, the shipped example
(config/voiceterm.toml) is `render_example()`, and the tests and the developer kit write their
configurations with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any
from urllib.parse import urlsplit

from voiceterm.config import LIVE, SECTIONS, Config
from voiceterm.masking import is_secret_name, looks_secret, mask_body, mask_mapping, mask_secret, mask_url


def effective_config(cfg: Config, *, masked: bool = True) -> dict[str, dict[str, Any]]:
    """The configuration as plain data, for `check-config` and comparing reloads. Secrets are masked
    (`masked=False` is for comparing two configurations only, never for showing one): tokens show as
    "<set>", secret-like query values in URLs as "<redacted>", secret-like or credential-like header
    values and body keys as "<set>"."""
    out: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        obj = getattr(cfg, section)
        table: dict[str, Any] = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            how = f.metadata.get("mask") or ("secret" if f.metadata.get("secret") else None)
            if not masked:
                how = None
            if how == "url":
                value = mask_url(value) if value else value
            elif how == "body":
                value = mask_body(value)
            elif isinstance(value, Mapping):
                value = mask_mapping(value) if how == "secret" else dict(value)
            elif how == "secret":
                value = mask_secret(value)
            elif isinstance(value, tuple):
                value = list(value)
            table[f.name] = value
        out[section] = table
    return out


def secret_values(cfg: Config) -> list[str]:
    """Every secret value this configuration holds, for `masking.remember_secrets`: the token, values of
    secret-like (or credential-like) headers, body keys and URL query parameters, URL passwords."""
    from urllib.parse import parse_qsl

    bot = cfg.bot
    found: list[str] = [bot.token]
    for headers in (bot.headers, bot.endpoint_headers):
        found += [v for k, v in headers.items() if is_secret_name(k) or looks_secret(v)]
    stack: list[Any] = [bot.endpoint_body]
    while stack:  # the body's secret-like keys at any depth (the TOML parser bounds it)
        node = stack.pop()
        if isinstance(node, Mapping):
            for k, v in node.items():
                if is_secret_name(str(k)) and isinstance(v, (str, int, float)):
                    found.append(str(v))
                else:
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
        elif looks_secret(node):
            found.append(node)
    for url in (bot.url, bot.endpoint):
        parts = urlsplit(url)
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_name(k)]
        if parts.password:
            found.append(parts.password)
    return [v for v in found if v]


# TOML basic-string escapes: the two that must be, the named controls, and \uXXXX for any other control.
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        escaped = _TOML_ESCAPES.get(char)
        if escaped is None and (char < " " or char == "\x7f"):
            escaped = f"\\u{ord(char):04x}"
        out.append(escaped or char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """One TOML value: a boolean, number, string, list, or table (as an inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    return (
        key
        if key and key.replace("_", "").replace("-", "").isalnum() and key.isascii()
        else _toml_string(key)
    )


def toml_document(
    sections: Mapping[str, Mapping[str, Any]],
    *,
    comments: Mapping[tuple[str, str], list[str]] | None = None,
    header: list[str] | None = None,
) -> str:
    """A TOML document of one table per section (`{section: {key: value}}`): the one TOML writer.

    `comments` puts comment lines above a key (`(section, key)`); `header` is comment lines at the top.
    """
    lines = [f"# {line}".rstrip() for line in header or ()]
    if lines:
        lines.append("")
    for number, (section, table) in enumerate(sections.items()):
        if number:
            lines.append("")
        lines.append(f"[{section}]")
        for key, value in table.items():
            lines += [f"# {line}".rstrip() for line in (comments or {}).get((section, key), ())]
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def render_toml(cfg: Config) -> str:
    """The effective configuration as TOML text (secrets masked), as `check-config` prints it."""
    return toml_document(effective_config(cfg))


EXAMPLE_HEADER = [
    "voiceterm configuration — /etc/voiceterm/voiceterm.toml",
    "",
    "Every key is shown with its default; delete what you do not change (an empty file is valid).",
    "Check a file with `voiceterm check-config`; a mistake names the key and exits with status 78.",
    "Keys marked (live) change on `systemctl reload voiceterm` (SIGHUP); any other key needs a restart.",
    "Secrets: prefer token_file, or systemd's LoadCredential=token:… (read from $CREDENTIALS_DIRECTORY/token),",
    "over a token written here.",
]


def key_comment(meta: Mapping[str, Any]) -> list[str]:
    """The example's comment lines above one key: its help (or its own example text), a note, and
    "(live)" when a reload applies it."""
    lines = str(meta.get("example") or meta["help"]).split("\n")
    if meta["reload"] == LIVE:
        lines[0] += " (live)"
    if meta.get("note"):
        lines.append(meta["note"])
    return lines


def render_example() -> str:
    """config/voiceterm.toml: every key with its default and its help, generated from the schema
    (`python -m voiceterm.config_render > config/voiceterm.toml`; a test keeps the two equal)."""
    comments = {
        (section, f.name): key_comment(f.metadata) for section, cls in SECTIONS.items() for f in fields(cls)
    }
    return toml_document(effective_config(Config()), comments=comments, header=EXAMPLE_HEADER)


__all__ = [
    "effective_config",
    "key_comment",
    "render_example",
    "render_toml",
    "secret_values",
    "toml_document",
    "toml_value",
]


if __name__ == "__main__":  # pragma: no cover - the example's generator
    print(render_example(), end="")
