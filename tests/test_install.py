"""scripts/install.sh staged under --root: the tree it builds, a second run that changes nothing, an edited
configuration that survives, and --uninstall / --purge. Runs a copy of the checkout, so the test sees one
consistent source tree and proves the installer leaves the checkout clean.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT_REL = "etc/systemd/system/voiceterm.service"
WANTS_REL = "etc/systemd/system/multi-user.target.wants/voiceterm.service"
HOST_PATHS = [Path("/etc/systemd/system/voiceterm.service"), Path("/etc/voiceterm"), Path("/opt/voiceterm")]
# Fast, offline pip for the test: no dependencies (the venv sees the system's site-packages), no index,
# the system's setuptools as the build backend.
FAST_PIP = "--no-deps --no-build-isolation --no-index"

Listing = dict[str, tuple]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("scripts", "systemd", "config", "daemon"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore, symlinks=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    return src


def install(
    checkout: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(checkout / "scripts" / "install.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, f"install.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def listing(root: Path) -> Listing:
    """Every path under root with its type, mode, size, mtime and link target: any write shows up."""
    out: Listing = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, target)
    return out


def host_state() -> list[tuple]:
    return [
        (p, p.exists() or p.is_symlink(), p.lstat().st_mtime_ns if p.exists() else None) for p in HOST_PATHS
    ]


def test_staged_install_is_complete_idempotent_and_uninstalls(checkout: Path, tmp_path: Path) -> None:
    host_before = host_state()
    root = tmp_path / "root"
    out = install(checkout, "--root", str(root), "--no-apt", "--no-venv").stdout
    assert "skipping apt packages (--root)" in out

    unit = root / UNIT_REL
    assert unit.read_text() == (ROOT / "systemd" / "voiceterm.service").read_text()
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    wants = root / WANTS_REL
    assert wants.is_symlink() and os.readlink(wants) == "/etc/systemd/system/voiceterm.service"
    cli = root / "usr/local/bin/voiceterm"
    assert os.readlink(cli) == "/opt/voiceterm/venv/bin/voiceterm"

    config = root / "etc/voiceterm/voiceterm.toml"
    assert config.read_text() == (ROOT / "config" / "voiceterm.toml").read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640  # it may hold a token
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o750
    assert (root / "etc/sysusers.d/voiceterm.conf").read_text() == (
        ROOT / "systemd/voiceterm.sysusers"
    ).read_text()
    assert (root / "etc/udev/rules.d/60-voiceterm-gpio.rules").exists()
    if shutil.which("systemd-sysusers"):
        passwd = {
            line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
        }
        assert passwd["voiceterm"][6] == "/usr/sbin/nologin"
        groups = {
            line.split(":")[0]: line.split(":")[3].split(",")
            for line in (root / "etc/group").read_text().splitlines()
        }
        assert "voiceterm" in groups["audio"]
        assert "voiceterm" in groups["gpio"]

    # A second run changes nothing at all: same paths, modes, sizes, mtimes, link targets.
    first = listing(root)
    out = install(checkout, "--root", str(root), "--no-apt", "--no-venv").stdout
    assert "wrote" not in out
    assert listing(root) == first

    # The administrator's edits to the configuration survive a reinstall.
    config.write_text(config.read_text() + '\n[logging]\nlevel = "debug"\n')
    edited = listing(root)
    out = install(checkout, "--root", str(root), "--no-apt", "--no-venv").stdout
    assert f"kept {config}" in out
    assert listing(root) == edited
    assert config.read_text().endswith('level = "debug"\n')

    # Uninstall: unit, enablement, udev and sysusers files go; the configuration and the user stay.
    install(checkout, "--root", str(root), "--uninstall")
    assert not unit.exists()
    assert not wants.is_symlink()
    assert not cli.is_symlink()
    assert not (root / "etc/udev/rules.d/60-voiceterm-gpio.rules").exists()
    assert not (root / "etc/sysusers.d/voiceterm.conf").exists()
    assert config.read_text().endswith('level = "debug"\n')
    # --purge also removes /etc/voiceterm.
    install(checkout, "--root", str(root), "--uninstall", "--purge")
    assert not config.parent.exists()
    # Nothing outside the staging root was touched.
    assert host_state() == host_before


def test_prefix_moves_the_venv_and_the_unit_follows(checkout: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(checkout, "--root", str(root), "--no-apt", "--no-venv", "--prefix", "/srv/vt/")
    exec_start = [
        line for line in (root / UNIT_REL).read_text().splitlines() if line.startswith("ExecStart=")
    ]
    assert exec_start == ["ExecStart=/srv/vt/venv/bin/voiceterm run --config /etc/voiceterm/voiceterm.toml"]
    assert os.readlink(root / "usr/local/bin/voiceterm") == "/srv/vt/venv/bin/voiceterm"


def test_full_venv_install(checkout: Path, tmp_path: Path) -> None:
    python = "/usr/bin/python3"
    probe = subprocess.run([python, "-c", "import setuptools, ensurepip"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(
            f"{python} lacks setuptools or ensurepip (apt-get install python3-venv python3-setuptools)"
        )
    root = tmp_path / "root"
    env = {"VOICETERM_INSTALL_PIP_ARGS": FAST_PIP}
    before = listing(checkout)
    install(checkout, "--root", str(root), "--no-apt", env=env)
    venv = root / "opt/voiceterm/venv"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg  # apt's python3-lgpio must be importable
    assert listing(checkout) == before  # no build/ or egg-info left in the checkout

    first = listing(root)
    out = install(checkout, "--root", str(root), "--no-apt", env=env).stdout
    assert "is up to date" in out
    assert listing(root) == first

    version = subprocess.run(
        [str(venv / "bin/voiceterm"), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("voiceterm ")

    # A changed source tree is reinstalled.
    init = checkout / "daemon/voiceterm/__init__.py"
    original = init.read_text()
    try:
        init.write_text(original + "\n# changed\n")
        out = install(checkout, "--root", str(root), "--no-apt", env=env).stdout
        assert "installing voiceterm into" in out
    finally:
        init.write_text(original)

    install(checkout, "--root", str(root), "--uninstall")
    assert not (root / "opt/voiceterm").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option '--bogus'"),
        (["--prefix", "relative/dir"], "--prefix must be an absolute path"),
        (["--prefix", "/"], "--prefix must be an absolute path"),
    ],
)
def test_bad_options_fail_with_one_line(
    checkout: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        ["bash", str(checkout / "scripts/install.sh"), "--root", str(tmp_path / "r"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "r" / "etc").exists()
