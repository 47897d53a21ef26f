"""Optional parts: a plain configuration runs without GPIO, the start endpoint's HTTP client, the Twilio codec
or a protobuf runtime ever being imported, and a configuration that asks for a part that is not installed is one clear line (exit
78). "Not installed" is made real for a child process: a sitecustomize blocks the imports (a None entry in
sys.modules makes any `import` of it fail), so the real `voiceterm` command runs as on a plain install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voiceterm.config import Config, ConfigError
from voiceterm.config_load import config_from_dict
from voiceterm.parts import ENDPOINT, FRONTEND, GPIO, check_parts, installed, needed
from voiceterm_devkit.alsa_files import AlsaFileConfig, noise, write_raw
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.daemonproc import DaemonProcess

# protobuf is not a dependency of the daemon (protocol/pbwire.py reads and writes pipecat's frames): blocked
# here, a turn over protobuf frames proves it is never imported.
BLOCKED = ("gpiozero", "httpx", "voiceterm.protocol.twilio", "pywebrtc_audio", "google.protobuf")


@pytest.fixture
def plain_install(tmp_path: Path, monkeypatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in BLOCKED)
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    return site


def _voiceterm(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "voiceterm"
    return subprocess.run(
        [str(exe), "--config", str(config), *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_what_a_configuration_needs() -> None:
    assert needed(Config()) == [GPIO]  # the default is a device with a button
    assert needed(config_from_dict({"gpio": {"enabled": False}})) == []
    both = config_from_dict({"bot": {"endpoint": "https://api.example/start"}})
    assert needed(both) == [GPIO, ENDPOINT]
    # The front-end runs when it can ("auto", the default); only "on" makes it a requirement.
    assert FRONTEND not in needed(Config())
    assert needed(config_from_dict({"gpio": {"enabled": False}, "frontend": {"mode": "on"}})) == [FRONTEND]
    assert installed("json") and not installed("voiceterm_no_such_module")
    check_parts(both)  # the test environment has every part


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        (
            "",
            "gpio.enabled: needs gpiozero, which is not installed; pip install gpiozero "
            "(or apt install python3-gpiozero), or set gpio.enabled = false",
        ),
        (
            '[gpio]\nenabled = false\n[bot]\nendpoint = "https://api.example/start"\n',
            "bot.endpoint: needs httpx, which is not installed; pip install 'voiceterm[endpoint]' "
            '(or apt install python3-httpx), or set bot.endpoint = "" and use bot.url',
        ),
        (
            '[gpio]\nenabled = false\n[frontend]\nmode = "on"\n',
            "frontend.mode: needs pywebrtc_audio, which is not installed; pip install 'voiceterm[frontend]' "
            '(wheels for x86_64 and aarch64 only), or set frontend.mode = "auto" or "off" (then there is no '
            "echo cancellation: see audio.half_duplex)",
        ),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_missing_part_is_one_line_and_exit_78(
    plain_install: Path, tmp_path: Path, toml: str, line: str, command: str
) -> None:
    config = tmp_path / "voiceterm.toml"
    config.write_text(toml)
    done = _voiceterm(command, config=config)
    assert done.returncode == 78, done.stderr
    assert done.stderr == f"voiceterm: {config}: {line}\n"


def test_check_config_raises_the_same_error_in_process(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiozero", None)
    with pytest.raises(ConfigError, match=r"pip install gpiozero "):
        check_parts(Config())


@pytest.mark.bot
@pytest.mark.alsa
def test_a_plain_install_runs_a_turn_without_the_optional_parts(
    plain_install: Path, tmp_path: Path, shared_bot: BotProcess
) -> None:
    pytest.importorskip("alsaaudio")
    alsa = AlsaFileConfig(tmp_path / "alsa")
    write_raw(tmp_path / "mic.raw", noise(16000 * 30, seed=5, amplitude=6000))
    alsa.add_capture("mic", tmp_path / "mic.raw").add_playback("spk", tmp_path / "spk.raw")
    daemon = DaemonProcess(
        tmp_path / "d", bot_url=shared_bot.url, alsa=alsa, config={"gpio": {"enabled": False}}
    )
    daemon.start()
    try:
        daemon.wait_ready()
        daemon.wait_status(lambda s: s["link"]["state"] == "ready", 15, "the link")
        mark = shared_bot.mark()
        ctl = [
            str(Path(sys.executable).parent / "voiceterm"),
            "ctl",
            "--socket",
            daemon.events_path,
            "--json",
        ]
        start = subprocess.run(
            [*ctl, "talk", "start"], capture_output=True, text=True, timeout=10, check=False
        )
        assert json.loads(start.stdout)["result"] == {"turn": True}, start.stderr
        shared_bot.wait_for(event_is("audio_in"), 5, since=mark)
        stop = subprocess.run([*ctl, "talk", "stop"], capture_output=True, text=True, timeout=10, check=False)
        assert json.loads(stop.stdout)["result"] == {"turn": False}
        snap = daemon.status()
        assert snap is not None and snap["panel"]["gpio"] is False and snap["events"]["error"] is None
        # No DSP library: "auto" runs without the front-end and says why.
        assert snap["frontend"]["state"] == "unavailable"
        assert "pywebrtc_audio is not installed" in snap["frontend"]["error"]
    finally:
        daemon.signal(15)
        assert daemon.proc is not None
        daemon.proc.wait(10)
    log = daemon.log_tail()
    assert "Traceback" not in log and "ImportError" not in log and "ModuleNotFoundError" not in log
    assert daemon.proc.returncode == 0
    assert os.environ["PYTHONPATH"] == str(plain_install)  # the child ran with the imports blocked
