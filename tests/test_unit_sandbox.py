"""The real daemon runs inside the unit's sandbox, rebuilt from systemd/voiceterm.service without systemd.

No systemd runs here, so the settings that could break the daemon are applied by hand, read from the unit
file itself: User= (an unprivileged uid with the audio group), NoNewPrivileges=, UMask=,
MemoryDenyWriteExecute= (the kernel's PR_SET_MDWE, stricter than systemd's seccomp version),
SystemCallFilter= with SystemCallErrorNumber= (a seccomp allow-list expanded from systemd-analyze's own
groups), RestrictAddressFamilies=, ProtectSystem=strict (everything read-only but the RuntimeDirectory
and /dev), ProcSubset=pid with ProtectProc=invisible, RuntimeDirectory=, WorkingDirectory= and
Environment=. Not rebuilt: the device cgroup, PrivateTmp=, the kernel-protection mounts; they hide
things the daemon does not touch when its audio devices are ALSA file PCMs.

A probe first proves the sandbox is real (each restriction refuses something), then the daemon starts,
reports READY=1 and WATCHDOG=1 over sd_notify, answers on its status socket and stops on SIGTERM.
"""

from __future__ import annotations

import ast
import ctypes
import errno
import grp
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from voiceterm.events_cli import EventClient
from voiceterm.io.control import read_status
from voiceterm_devkit.alsa_files import AlsaFileConfig, noise, write_raw
from voiceterm_devkit.bot import BotProcess

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "voiceterm.service"
SYSCALL_HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
NOBODY = 65534
HOME_DIRS = ("/home", "/root", "/run/user")

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="building the sandbox needs root (mount namespaces, setuid)"
    ),
    pytest.mark.skipif(
        os.uname().machine != "x86_64" or not SYSCALL_HEADER.exists(),
        reason="the seccomp filter is built for x86_64 from linux-libc-dev's unistd_64.h",
    ),
    pytest.mark.skipif(
        shutil.which("systemd-analyze") is None, reason="needs systemd-analyze for syscall groups"
    ),
]

libc = ctypes.CDLL(None, use_errno=True)

# Kernel ABI constants (linux/prctl.h, linux/seccomp.h, linux/filter.h, linux/audit.h, linux/mount.h).
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
AUDIT_ARCH_X86_64 = 0xC000003E
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_BIND = 0x1000
MS_MOVE = 0x2000
MOUNT_ATTR_RDONLY = 1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
NR_MOUNT_SETATTR = 442
ADDRESS_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}


# --- reading the unit ---------------------------------------------------------------------------------


def service_settings() -> list[tuple[str, str]]:
    out, section = [], ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            out.append((key, value))
    return out


def setting(key: str) -> list[str]:
    return [v for k, v in service_settings() if k == key]


def syscall_groups() -> dict[str, list[str]]:
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = []
        elif current and line.startswith("    ") and not line.strip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def expand(items: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for item in items:
        out |= expand(groups[item], groups) if item.startswith("@") else {item}
    return out


def allowed_syscalls() -> set[str]:
    """SystemCallFilter= lines in order: the first plain one is the allow-list, `~` lines take away."""
    groups = syscall_groups()
    allowed: set[str] | None = None
    for value in setting("SystemCallFilter"):
        negate = value.startswith("~")
        names = expand(value.removeprefix("~").split(), groups)
        if negate:
            assert allowed is not None, "a deny-list alone is not what the unit uses"
            allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    assert allowed, "the unit has no SystemCallFilter= allow-list"
    return allowed


def syscall_numbers() -> dict[str, int]:
    numbers = {}
    for match in re.finditer(r"^#define __NR_(\w+) (\d+)$", SYSCALL_HEADER.read_text(), re.MULTILINE):
        numbers[match.group(1)] = int(match.group(2))
    return numbers


def seccomp_program() -> bytes:
    """BPF: native arch only; socket() only for RestrictAddressFamilies=; the allow-list; else the errno."""
    error = getattr(errno, setting("SystemCallErrorNumber")[0])
    families = [ADDRESS_FAMILIES[f] for f in setting("RestrictAddressFamilies")[0].split()]
    numbers = syscall_numbers()
    allowed = sorted(numbers[name] for name in allowed_syscalls() if name in numbers)
    assert numbers["socket"] in allowed

    def ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("<HBBI", code, jt, jf, k)

    prog = [
        ins(BPF_LD_W_ABS, 4),  # seccomp_data.arch
        ins(BPF_JEQ_K, AUDIT_ARCH_X86_64, jt=1),
        ins(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),  # SystemCallArchitectures=native
        ins(BPF_LD_W_ABS, 0),  # seccomp_data.nr
        ins(BPF_JEQ_K, numbers["socket"], jf=len(families) + 3),
        ins(BPF_LD_W_ABS, 16),  # args[0], low half: the address family
    ]
    for i, family in enumerate(families):
        prog.append(ins(BPF_JEQ_K, family, jt=len(families) - i))
    prog += [ins(BPF_RET_K, SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT), ins(BPF_RET_K, SECCOMP_RET_ALLOW)]
    for nr in allowed:
        prog += [ins(BPF_JEQ_K, nr, jf=1), ins(BPF_RET_K, SECCOMP_RET_ALLOW)]
    prog.append(ins(BPF_RET_K, SECCOMP_RET_ERRNO | error))
    assert len(prog) < 4096  # BPF_MAXINSNS
    return b"".join(prog)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class MountAttr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_attr(path: str, *, set_: int = 0, clear: int = 0) -> None:
    attr = MountAttr(set_, clear, 0, 0)
    _check(
        libc.syscall(
            NR_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
        ),
        f"mount_setattr {path}",
    )


def _protect_home(keep: str, stage: str) -> None:
    """ProtectHome=yes: empty /home, /root and /run/user, except the tree `keep` (the test interpreter,
    which this machine installs under /root; the real unit runs /opt/voiceterm/venv)."""
    covered = [d for d in HOME_DIRS if os.path.isdir(d)]
    inside = next((d for d in covered if keep.startswith(d + "/")), None)
    if inside:
        _check(libc.mount(keep.encode(), stage.encode(), None, MS_BIND | MS_REC, None), "stage interpreter")
    for directory in covered:
        _check(
            libc.mount(b"tmpfs", directory.encode(), b"tmpfs", 0, b"mode=0755,size=64k"), f"cover {directory}"
        )
    if inside:
        os.makedirs(keep)
        _check(libc.mount(stage.encode(), keep.encode(), None, MS_MOVE, None), "restore interpreter")


def sandbox(runtime_dir: str, stage: str) -> Callable[[], None]:
    """A preexec_fn entering the unit's sandbox; everything it needs is computed here, before the fork."""
    assert setting("ProtectSystem") == ["strict"] and setting("ProtectHome") == ["yes"]
    assert setting("ProcSubset") == ["pid"] and setting("ProtectProc") == ["invisible"]
    assert setting("NoNewPrivileges") == ["yes"] and setting("MemoryDenyWriteExecute") == ["yes"]
    umask = int(setting("UMask")[0], 8)
    groups = [grp.getgrnam(g).gr_gid for g in setting("SupplementaryGroups")[0].split() if _group_exists(g)]
    interpreter = os.path.realpath(sys.base_prefix)
    program = seccomp_program()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))

    def enter() -> None:
        assert buffer.raw == program  # keeps the program fprog points at alive until the fork
        # Runs in the forked child, as root, before exec. Mounts first (they need privilege), then the
        # identity, then the one-way doors: no_new_privs, MDWE, seccomp (which exec keeps).
        _check(libc.unshare(CLONE_NEWNS), "unshare")
        _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        _protect_home(interpreter, stage)
        _check(
            libc.mount(runtime_dir.encode(), runtime_dir.encode(), None, MS_BIND, None), "bind runtime dir"
        )
        _mount_attr("/", set_=MOUNT_ATTR_RDONLY)
        _mount_attr(runtime_dir, clear=MOUNT_ATTR_RDONLY)
        _mount_attr("/dev", clear=MOUNT_ATTR_RDONLY)  # API file systems stay writable under strict
        _check(libc.mount(b"proc", b"/proc", b"proc", 0, b"subset=pid,hidepid=invisible"), "mount proc")
        os.setgroups(groups)
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        os.umask(umask)
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0), "mdwe")
        _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")

    return enter


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


# --- the test -----------------------------------------------------------------------------------------


PROBE = r"""
import ctypes, errno, mmap, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
out = {}
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
    out["netlink"] = "allowed"
except OSError as e:
    out["netlink"] = errno.errorcode[e.errno]
out["inet"] = "allowed" if socket.socket(socket.AF_INET6, socket.SOCK_STREAM) else "?"
out["setpriority"] = "allowed" if libc.setpriority(0, 0, 5) == 0 else errno.errorcode[ctypes.get_errno()]
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    out["wx"] = "allowed"
except OSError as e:
    out["wx"] = errno.errorcode[e.errno]
for name, path in (("etc", "/etc/voiceterm-probe"), ("runtime", os.environ["RUNTIME_DIRECTORY"] + "/probe")):
    try:
        open(path, "w").close()
        out[name] = "writable"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
out["cpuinfo"] = os.path.exists("/proc/cpuinfo")
out["pid1"] = os.path.exists("/proc/1")
out["uid"] = os.getuid()
out["umask"] = oct(os.umask(0))
out["cwd"] = os.getcwd()
print(repr(out))
"""


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are root-only and the daemon runs as nobody.
    path = Path(tempfile.mkdtemp(prefix="voiceterm-sandbox-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _environment(sandbox_dir: Path, runtime: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    for value in setting("Environment"):
        for assignment in shlex.split(value):
            key, _, val = assignment.partition("=")
            env[key] = val.replace("/run/voiceterm", str(runtime))
    env["RUNTIME_DIRECTORY"] = str(runtime)
    env["HOME"] = "/nonexistent"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the venv is read-only in there anyway
    return env


def _stage(sandbox_dir: Path) -> str:
    stage = sandbox_dir / "stage"
    stage.mkdir(exist_ok=True)
    return str(stage)


def _runtime_dir(sandbox_dir: Path) -> Path:
    runtime = sandbox_dir / "run"
    runtime.mkdir(mode=int(setting("RuntimeDirectoryMode")[0], 8))
    os.chown(runtime, NOBODY, NOBODY)  # RuntimeDirectory= belongs to User=
    assert setting("WorkingDirectory") == ["/run/" + setting("RuntimeDirectory")[0]]
    return runtime


def test_the_sandbox_is_real(sandbox_dir: Path) -> None:
    runtime = _runtime_dir(sandbox_dir)
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=_environment(sandbox_dir, runtime),
        cwd=runtime,
        preexec_fn=sandbox(str(runtime), _stage(sandbox_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = ast.literal_eval(result.stdout)
    assert out == {
        "netlink": "EAFNOSUPPORT",  # RestrictAddressFamilies=
        "inet": "allowed",
        "setpriority": "EPERM",  # SystemCallFilter=~@resources, SystemCallErrorNumber=EPERM
        "wx": "EACCES",  # MemoryDenyWriteExecute=
        "etc": "EROFS",  # ProtectSystem=strict
        "runtime": "writable",  # RuntimeDirectory=
        "cpuinfo": False,  # ProcSubset=pid
        "pid1": False,  # ProtectProc=invisible
        "uid": NOBODY,
        "umask": "0o77",
        "cwd": str(runtime),
    }


def _wait_for(receiver: socket.socket, wanted: str, deadline: float, seen: list[str]) -> None:
    while time.monotonic() < deadline:
        receiver.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            message = receiver.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(message)
        if wanted in message.split("\n"):
            return
    pytest.fail(f"no {wanted} from the sandboxed daemon; got {seen}")


def _poll_status(sock: Path, ready: Callable[[dict], bool], deadline: float) -> dict:
    status: dict = {}
    while time.monotonic() < deadline:
        status = read_status(str(sock))
        if ready(status):
            return status
        time.sleep(0.05)  # polling a condition under a deadline, not waiting out a race
    pytest.fail(f"the sandboxed daemon never got there; last status: {status}")


def run_sandboxed_daemon(sandbox_dir: Path, bot_url: str, check: Callable[[Path], None]) -> str:
    """Start `voiceterm run` (the unit's ExecStart) in the sandbox, run `check(status_socket)` once it is
    READY and has fed the watchdog, stop it with SIGTERM; returns its log."""
    runtime = _runtime_dir(sandbox_dir)
    alsa = AlsaFileConfig(sandbox_dir / "alsa")
    write_raw(sandbox_dir / "alsa" / "mic.raw", noise(16000 * 30))
    # Playback into /dev/null: the sandbox's file system is read-only outside the runtime directory.
    alsa.add_capture("mic", sandbox_dir / "alsa" / "mic.raw").add_playback("speaker", "/dev/null")
    alsa.set_default("mic", "speaker").write()
    for path in (sandbox_dir / "alsa").iterdir():
        path.chmod(0o644)
    (sandbox_dir / "alsa").chmod(0o755)
    config = sandbox_dir / "voiceterm.toml"
    config.write_text(
        f'[bot]\nurl = "{bot_url}"\n[audio]\npacing = "wall-clock"\n[gpio]\nenabled = false\n'
        '[push_to_talk]\nmode = "always-on"\n'
    )
    config.chmod(0o644)

    notify_path = sandbox_dir / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    notify_path.chmod(0o777)  # systemd's notify socket accepts any sender; NotifyAccess= filters by pid
    env = _environment(sandbox_dir, runtime)
    env.update(alsa.env, NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="1000000")
    argv = shlex.split(setting("ExecStart")[0])
    argv[0] = str(Path(sys.executable).parent / "voiceterm")
    argv[argv.index("--config") + 1] = str(config)
    stderr_path = sandbox_dir / "stderr.log"
    sock = runtime / "status.sock"
    seen: list[str] = []
    with stderr_path.open("w") as stderr:
        daemon = subprocess.Popen(
            argv,
            env=env,
            cwd=runtime,
            preexec_fn=sandbox(str(runtime), _stage(sandbox_dir)),
            stderr=stderr,
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_for(receiver, "READY=1", time.monotonic() + 30, seen)
            _wait_for(receiver, "WATCHDOG=1", time.monotonic() + 5, seen)
            assert stat.S_IMODE(sock.stat().st_mode) == 0o660
            assert sock.stat().st_uid == NOBODY
            check(sock)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=10) == 0, stderr_path.read_text()
            _wait_for(receiver, "STOPPING=1", time.monotonic() + 2, seen)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            receiver.close()
    log = stderr_path.read_text()
    assert "Traceback" not in log, log
    assert not sock.exists() and not (sock.parent / "events.sock").exists()  # removed on the way out
    return log


def test_the_daemon_runs_in_the_sandbox_without_a_bot(sandbox_dir: Path) -> None:
    # A bot that is not there: the link keeps retrying, which exercises sockets and timers.
    def check(sock: Path) -> None:
        status = _poll_status(sock, lambda s: s["link"]["attempts"] >= 1, time.monotonic() + 10)
        assert status["link"]["state"] in ("connecting", "backing-off")
        assert status["audio"]["capture_fault"] is None
        assert status["audio"]["playback_fault"] is None

    log = run_sandboxed_daemon(sandbox_dir, "ws://127.0.0.1:9", check)
    assert "connection refused" in log


def test_the_sandboxed_daemon_talks_to_the_real_bot(sandbox_dir: Path, shared_bot: BotProcess) -> None:
    # Always-on mic against the Pipecat echo bot: a session, audio out, the echo back in.
    def check(sock: Path) -> None:
        status = _poll_status(
            sock,
            lambda s: s["link"]["state"] == "ready" and s["link"]["received_audio_total"] > 0,
            time.monotonic() + 20,
        )
        assert status["link"]["sent_audio_total"] > 0
        assert status["link"]["garbage_frames_total"] == 0
        # The event socket works under the unit's sandbox too, beside the status socket, mode 0660.
        assert status["events"]["error"] is None
        events = sock.parent / "events.sock"
        assert stat.S_IMODE(events.stat().st_mode) == 0o660
        with EventClient(str(events)) as client:
            reply = client.request("status")
        assert reply["ok"] and reply["result"]["link"]["state"] == "ready"

    run_sandboxed_daemon(sandbox_dir, shared_bot.url, check)
