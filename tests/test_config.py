"""The TOML configuration: defaults, the shipped example, and one clear line for every bad file."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voiceterm import cli
from voiceterm.config import (
    DEFAULT_CONFIG_PATH,
    LIVE,
    LIVE_KEYS,
    RESTART,
    RESTART_KEYS,
    SECTIONS,
    Config,
    ConfigError,
)
from voiceterm.config_load import config_from_dict, config_path_from, load_config
from voiceterm.config_render import effective_config, render_example, render_toml, toml_document
from voiceterm.exitcodes import EX_CONFIG

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "voiceterm.toml"
BAD = sorted((Path(__file__).parent / "data" / "bad_configs").glob("*.toml"))


def _expectations(path: Path) -> list[str]:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), path
    return [part.strip() for part in first.removeprefix("# expect: ").split("|")]


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_config(empty, environ={}) == Config()


def test_shipped_example_loads_and_equals_defaults() -> None:
    assert load_config(EXAMPLE, environ={}) == Config()


def test_shipped_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    for section, table in effective_config(Config()).items():
        assert f"[{section}]" in text
        for key in table:
            assert f"\n{key} = " in text, f"{section}.{key} missing from the example"


def test_the_shipped_example_is_generated_from_the_schema() -> None:
    # Regenerate with: .venv/bin/python -m voiceterm.config_render > config/voiceterm.toml
    assert EXAMPLE.read_text() == render_example()


def test_every_key_is_either_live_or_restart_and_the_example_says_which() -> None:
    text = EXAMPLE.read_text()
    sections = text.split("\n[")
    for section, cls in SECTIONS.items():
        body = next(part for part in sections if part.startswith(f"{section}]"))
        lines = body.splitlines()
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            assert f.metadata["reload"] in (LIVE, RESTART), key
            assert (key in LIVE_KEYS) != (key in RESTART_KEYS), key
            at = lines.index(next(line for line in lines if line.startswith(f"{f.name} = ")))
            comment = []
            while lines[at - 1].startswith("#"):
                at -= 1
                comment.insert(0, lines[at])
            assert comment, f"{key} has no comment in the example"
            assert ("(live)" in comment[0]) == (f.metadata["reload"] == LIVE), key
    assert len(LIVE_KEYS) + len(RESTART_KEYS) == sum(len(dataclasses.fields(c)) for c in SECTIONS.values())
    assert "(live)" in text.splitlines()[4]  # the header says what the mark means


def test_what_reloads_live() -> None:
    # The running daemon's parts take these on SIGHUP (Terminal, Link, Speaker, Mic, logging, metrics writer).
    live_sections = {key.split(".")[0] for key in LIVE_KEYS}
    assert live_sections == {
        "audio",
        "earcons",
        "push_to_talk",
        "reconnect",
        "heartbeat",
        "logging",
        "status",
    }
    assert {k for k in LIVE_KEYS if k.startswith(("audio.", "logging.", "status."))} == {
        "audio.volume_percent",
        "audio.mic_gain_db",
        "logging.level",
        "status.metrics_interval",
    }
    assert not any(key.startswith(("bot.", "gpio.", "events.")) for key in LIVE_KEYS)


def test_toml_document_writes_what_the_loader_reads(tmp_path: Path) -> None:
    sections = {
        "bot": {"url": "ws://127.0.0.1:1/ws", "headers": {"X-Site": 'lobby "B"\t1', "Ünïcode key": "v"}},
        "audio": {"capture_device": "plug\\hw:1", "mic_gain_db": -3.5, "half_duplex": True},
        "gpio": {"rgb_pins": [5, 6, 13]},
    }
    out = tmp_path / "v.toml"
    out.write_text(toml_document(sections, comments={("bot", "url"): ["the bot"]}, header=["made here"]))
    cfg = load_config(out, environ={})
    assert cfg.bot.headers == {"X-Site": 'lobby "B"\t1', "Ünïcode key": "v"}
    assert (
        cfg.audio.capture_device == "plug\\hw:1" and cfg.audio.mic_gain_db == -3.5 and cfg.audio.half_duplex
    )
    assert cfg.gpio.rgb_pins == (5, 6, 13)
    assert out.read_text().startswith("# made here\n\n[bot]\n# the bot\nurl = ")


def test_render_round_trips(tmp_path: Path) -> None:
    cfg = config_from_dict({"audio": {"period_ms": 10}, "gpio": {"rgb_pins": [5, 6, 13]}}, environ={})
    out = tmp_path / "out.toml"
    out.write_text(render_toml(cfg))
    assert load_config(out, environ={}) == cfg


def test_path_precedence() -> None:
    assert config_path_from("/a.toml", {"VOICETERM_CONFIG": "/b.toml"}) == "/a.toml"
    assert config_path_from(None, {"VOICETERM_CONFIG": "/b.toml"}) == "/b.toml"
    assert config_path_from(None, {}) == DEFAULT_CONFIG_PATH


def test_there_are_a_dozen_bad_files() -> None:
    assert len(BAD) >= 12


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_file_one_line_exit_78(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["check-config", "--config", str(path)])
    out, err = capsys.readouterr()
    assert status == EX_CONFIG
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    for needle in _expectations(path):
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert "Traceback" not in err


def test_check_config_prints_effective_config_masked(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-t0ken\n")
    cfg_file = tmp_path / "v.toml"
    cfg_file.write_text(
        f'[bot]\ntoken_file = "{token_file}"\n[bot.headers]\nAuthorization = "Bearer abc123"\nX-Site = "lobby"\n'
    )
    env = {**os.environ, "VOICETERM_CONFIG": str(cfg_file)}
    proc = subprocess.run(
        [sys.executable, "-m", "voiceterm", "check-config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t-t0ken" not in proc.stdout and "abc123" not in proc.stdout
    assert 'token = "<set>"' in proc.stdout
    assert 'X-Site = "lobby"' in proc.stdout
    assert "[push_to_talk]" in proc.stdout


def test_check_config_example_via_console_script() -> None:
    exe = Path(sys.executable).parent / "voiceterm"
    proc = subprocess.run(
        [str(exe), "check-config", "-c", str(EXAMPLE)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# effective configuration from")


def test_bad_file_via_console_script_exits_78() -> None:
    exe = Path(sys.executable).parent / "voiceterm"
    bad = next(p for p in BAD if p.stem == "unknown_key_typo")
    proc = subprocess.run(
        [str(exe), "check-config", "-c", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == EX_CONFIG
    assert len(proc.stderr.splitlines()) == 1


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_credentials_directory_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("cred-token\n")
    cfg = config_from_dict({}, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert cfg.bot.token == "cred-token"
    assert "cred-token" not in render_toml(cfg)


def test_unreadable_token_file(tmp_path: Path) -> None:
    # A directory cannot be read as a file, even by root (the tests run as root in CI).
    with pytest.raises(ConfigError, match=r"bot\.token_file: cannot read"):
        config_from_dict({"bot": {"token_file": str(tmp_path)}}, environ={})


def test_token_file_with_two_words(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("alpha-secret bravo-secret\n")
    with pytest.raises(ConfigError, match="more than one word") as info:
        config_from_dict({"bot": {"token_file": str(f)}}, environ={})
    assert "secret" not in str(info.value)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    from voiceterm import __version__

    assert capsys.readouterr().out.strip() == f"voiceterm {__version__}"
