"""The installed package is the daemon only: the wheel built from the checkout holds `voiceterm` and its
metadata, nothing of the developer kit (test bots, proxies, benchmarks, the demo), and it depends on what
the shipped example configuration needs (gpiozero), so a plain `pip install` accepts that file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "daemon", src / "daemon", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("voiceterm-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_the_daemon_and_nothing_else(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"voiceterm"}
    shipped = {name for name in names if name.startswith("voiceterm/") and name.endswith(".py")}
    source = {
        str(p.relative_to(ROOT / "daemon"))
        for p in (ROOT / "daemon/voiceterm").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert shipped == source  # every daemon module, and no other
    assert not [n for n in names if "devkit" in n or "/testing/" in n or n.endswith("/demo.py")]
    assert "voiceterm/protocol/frames.proto" in names


def test_a_plain_install_brings_gpiozero(wheel: zipfile.ZipFile) -> None:
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel.read(meta).decode()).get_all("Requires-Dist")
    unconditional = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("gpiozero") for r in unconditional), requires


def test_the_shipped_example_passes_check_config() -> None:
    exe = Path(sys.executable).with_name("voiceterm")
    result = subprocess.run(
        [str(exe), "check-config", "--config", str(ROOT / "config/voiceterm.toml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_pipecat_helper_ships_behind_its_extra_and_the_daemon_never_imports_it(
    wheel: zipfile.ZipFile,
) -> None:
    assert "voiceterm/pipecat_ptt.py" in wheel.namelist()
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(wheel.read(meta).decode()).get_all("Requires-Dist")
    assert [r for r in requires if r.startswith("pipecat-ai")] == ['pipecat-ai>=1.14; extra == "pipecat"']
    # the daemon's whole import graph, with pipecat made unimportable: nothing reaches for it
    code = (
        "import sys\n"
        "sys.modules['pipecat'] = None\n"
        "import voiceterm.app, voiceterm.cli, voiceterm.events_cli, voiceterm.meter\n"
        "assert 'voiceterm.pipecat_ptt' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_path_to_ready_imports_no_websocket_stack_numpy_or_installed_metadata() -> None:
    # What the daemon imports before READY=1 is its start-up time (~10x on a Pi Zero). The WebSocket stack is
    # imported by the link's first attempt after READY, numpy and soxr by a resampler or the front-end, the
    # installed distributions' metadata only for a serializer that is not built in.
    code = (
        "import sys\n"
        "import voiceterm.app, voiceterm.cli\n"
        "from voiceterm.protocol.registry import get_serializer\n"
        "get_serializer('protobuf'); get_serializer('twilio')\n"
        "late = {'trio_websocket', 'wsproto', 'h11', 'numpy', 'soxr', 'importlib.metadata', 'voiceterm.protocol.rtvi_events'}\n"
        "print(sorted(late & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
