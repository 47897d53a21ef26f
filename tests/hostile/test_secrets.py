"""Secrets masked everywhere: the real daemon, configured with a secret in every place one can sit (a token
in bot.url's query, auth-like bot.headers values, api_key and a nested password in endpoint_body,
endpoint_headers, the endpoint's query, bot.token and bot.token_file), at debug log level; then its
`check-config` (TOML and JSON), its log, `voiceterm status` (plain and --json), `voiceterm ctl status` and
the event stream are searched for every secret value. The secrets are live (the bot and the start endpoint
receive them), so the search is not vacuous. A bot echoing a secret it was given is masked too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from voiceterm.exitcodes import EX_CONFIG
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.hostile_bot import HostileBot, rtvi
from voiceterm_devkit.start_server import StartEndpointServer

from .conftest import Hostile, start_hostile

pytestmark = pytest.mark.bot

VOICETERM = str(Path(sys.executable).parent / "voiceterm")


class TrioThread:
    """A trio server (`run(task_status=...)` style) on a thread of its own, for sync tests."""

    def __init__(self, serve: Callable[..., Any]) -> None:
        self._serve = serve
        self._started = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=lambda: trio.run(self._main), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._serve)
                self._started.set()

    def __enter__(self) -> TrioThread:
        self._thread.start()
        assert self._started.wait(10), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None and self._scope is not None
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(5)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICETERM, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env or dict(os.environ),
        check=False,
    )


def outputs(env: Hostile) -> dict[str, str]:
    """Everything the daemon and its commands show a person or a program."""
    config = str(env.daemon.config_path)
    cli = {
        "check-config": run_cli("check-config", "-c", config),
        "check-config --json": run_cli("check-config", "--json", "-c", config),
        "status": run_cli("status", "--socket", env.daemon.status_path),
        "status --json": run_cli("status", "--json", "--socket", env.daemon.status_path),
        "ctl status --json": run_cli("ctl", "--json", "--socket", env.daemon.events_path, "status"),
    }
    for name, proc in cli.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
    shown = {name: proc.stdout + proc.stderr for name, proc in cli.items()}
    shown["log"] = "\n".join(line for _, line in env.daemon.log_lines)
    shown["events"] = "\n".join(repr(event) for event in env.tap.since(0))
    return shown


def assert_nothing_shows(shown: dict[str, str], secrets: dict[str, str]) -> None:
    leaks = [
        (where, name) for where, text in shown.items() for name, value in secrets.items() if value in text
    ]
    assert leaks == []


SECRETS = {
    "url query": "URLTOKEN-s3cr3t-0001",
    "Authorization header": "HDRAUTH-s3cr3t-0002",
    "auth-like header value": "HDRCUSTOM-s3cr3t-0003",
    "api key header": "HDRKEY-s3cr3t-0004",
    "endpoint_body api_key": "BODYKEY-s3cr3t-0005",
    "endpoint_body nested password": "BODYNESTED-s3cr3t-0006",
    "endpoint_headers": "EPHDR-s3cr3t-0007",
    "endpoint query": "EPQUERY-s3cr3t-0008",
    "token_file": "TOKENFILE-s3cr3t-0009",
    "bot.token": "INLINETOKEN-s3cr3t-0010",
}
BODY = {
    "transport": "websocket",
    "api_key": SECRETS["endpoint_body api_key"],
    "nested": {"auth": {"password": SECRETS["endpoint_body nested password"]}},
}


def pick(*names: str) -> dict[str, str]:
    return {name: SECRETS[name] for name in names}


def test_url_mode_secrets_never_show(tmp_path: Path, echo_bot: BotProcess) -> None:
    secrets = pick(
        "url query",
        "Authorization header",
        "auth-like header value",
        "api key header",
        "endpoint_body api_key",
        "endpoint_body nested password",
        "endpoint_headers",
        "token_file",
    )
    token_file = tmp_path / "token"
    token_file.write_text(secrets["token_file"] + "\n")
    token_file.chmod(0o600)
    if not echo_bot.running:
        echo_bot.restart()
    relay = HostileBot(upstream=echo_bot.url).start()
    config = {
        "bot": {
            "url": f"{relay.url}/ws?room=1&access_token={secrets['url query']}",
            "token_file": str(token_file),
            "headers": {
                "Authorization": f"Bearer {secrets['Authorization header']}",
                "X-Custom": f"Bearer {secrets['auth-like header value']}",
                "X-Api-Key": secrets["api key header"],
            },
            "endpoint_headers": {"Authorization": f"Bearer {secrets['endpoint_headers']}"},
            "endpoint_body": BODY,
        },
        "logging": {"level": "debug"},
    }
    for env in start_hostile(tmp_path, echo_bot, config, relay=relay):
        path, headers = relay.requests[-1]
        sent = path + repr(headers)  # live secrets: the bot received them
        for name in ("url query", "token_file", "Authorization header", "auth-like header value"):
            assert secrets[name] in sent, name
        # The bot knows the token it was given; it echoing it back is masked in the stream too.
        mark = env.tap.mark()
        relay.send(rtvi("server-message", {"echo": f"you sent {secrets['url query']}"}))
        echoed = env.tap.wait_for(lambda e: e["event"] == "server-message", 10, mark)
        assert echoed["data"] == {"echo": "you sent <redacted>"}
        assert_nothing_shows(outputs(env), secrets)


def test_endpoint_mode_secrets_never_show(tmp_path: Path, echo_bot: BotProcess) -> None:
    secrets = pick(
        "endpoint query",
        "endpoint_body api_key",
        "endpoint_body nested password",
        "endpoint_headers",
        "bot.token",
    )
    if not echo_bot.running:
        echo_bot.restart()
    relay = HostileBot(upstream=echo_bot.url).start()
    server = StartEndpointServer(ws_url=relay.url, fail_next=2)  # two HTTP 503s first, logged
    config = {
        "bot": {
            "endpoint": "",
            "token": secrets["bot.token"],
            "endpoint_headers": {"X-Session-Key": secrets["endpoint_headers"]},
            "endpoint_body": BODY,
        },
        "logging": {"level": "debug"},
    }
    with TrioThread(server.run):
        config["bot"]["endpoint"] = f"{server.url}?key={secrets['endpoint query']}"
        for env in start_hostile(tmp_path, echo_bot, config, relay=relay, ready_timeout=20):
            call = server.calls[-1]
            assert call.body["api_key"] == secrets["endpoint_body api_key"]
            assert secrets["endpoint query"] in call.path
            assert call.headers["x-session-key"] == secrets["endpoint_headers"]
            assert call.headers["authorization"] == f"Bearer {secrets['bot.token']}"
            issued = {f"issued token {i}": token for i, token in enumerate(server.tokens.issued)}
            assert_nothing_shows(outputs(env), {**secrets, **issued})


@pytest.mark.parametrize(
    ("mode", "status", "warned"),
    [
        (0o600, 0, False),
        (0o640, 0, True),
        (0o644, 0, True),
        (0o666, EX_CONFIG, False),
        (0o602, EX_CONFIG, False),
    ],
)
def test_token_file_permissions(tmp_path: Path, mode: int, status: int, warned: bool) -> None:
    token = tmp_path / "token"
    token.write_text("TOKENFILE-s3cr3t-0011\n")
    token.chmod(mode)
    config = tmp_path / "voiceterm.toml"
    config.write_text(f'[bot]\ntoken_file = "{token}"\n[gpio]\nenabled = false\n')
    proc = run_cli("check-config", "-c", str(config))
    assert proc.returncode == status, proc.stderr
    assert "TOKENFILE-s3cr3t-0011" not in proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    if status == EX_CONFIG:
        assert len(lines) == 1 and "writable by everyone" in lines[0] and "chmod 600" in lines[0]
    elif warned:
        assert len(lines) == 1 and str(token) in lines[0]
        assert "chmod 600" in lines[0] and "LoadCredential=" in lines[0]
    else:
        assert lines == []
