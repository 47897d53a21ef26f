#!/usr/bin/env bash
# Install voiceterm as a systemd service on Raspberry Pi OS (Bookworm, Trixie) or Debian/Ubuntu, from this
# repository checkout: apt packages, a virtualenv in PREFIX/venv (it sees apt's python3-lgpio), the
# voiceterm system user (groups audio, gpio), /etc/voiceterm/voiceterm.toml (only if absent), the unit,
# /usr/local/bin/voiceterm, and `systemctl enable` (`--now` when systemd runs the machine). Idempotent: a
# second run changes nothing.
#
# Usage: sudo scripts/install.sh [--prefix DIR] [--no-apt] [--no-venv] [--root DIR]
#        sudo scripts/install.sh --uninstall [--purge]
# Environment: VOICETERM_INSTALL_PIP_ARGS  extra `pip install` arguments (e.g. --no-deps --no-index)
#              VOICETERM_PYTHON            interpreter for the venv (default /usr/bin/python3)
#              VOICETERM_INSTALL_EXTRAS    optional parts to install (default endpoint,frontend; "" = plain)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=""
PREFIX="/opt/voiceterm"
DEFAULT_PREFIX="/opt/voiceterm"
DO_APT=1
DO_VENV=1
UNINSTALL=0
PURGE=0
PIP_ARGS="${VOICETERM_INSTALL_PIP_ARGS:-}"
# A device gets the start endpoint and the audio front-end (echo cancellation: pywebrtc-audio, whose wheels
# exist for x86_64 and aarch64; pip skips it elsewhere); a plain install sets this empty.
EXTRAS="${VOICETERM_INSTALL_EXTRAS-endpoint,frontend}"
APT_BASE=(python3-venv python3-dev gcc libasound2-dev alsa-utils)

# Temporary files and directories, removed however the script ends.
TMP_PATHS=()
cleanup() { ((${#TMP_PATHS[@]} == 0)) || rm -rf "${TMP_PATHS[@]}"; }
trap cleanup EXIT

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
Usage: scripts/install.sh [options]

Installs voiceterm from this checkout ($REPO) as a systemd service.

  --prefix DIR   where the virtualenv goes (default $DEFAULT_PREFIX; the venv is DIR/venv)
  --no-apt       do not install apt packages (python3-venv, python3-dev, gcc, libasound2-dev,
                 alsa-utils, python3-lgpio where the apt sources have it)
  --no-venv      do not create or update the virtualenv
  --root DIR     stage everything under DIR (like DESTDIR) and touch nothing outside it: no apt, the
                 user is written to DIR/etc/passwd by systemd-sysusers --root, the unit is enabled with
                 systemctl --root. For packaging and tests; a venv staged there works only at that path.
  --uninstall    disable and remove the unit, the venv, /usr/local/bin/voiceterm and the udev and
                 sysusers files; keeps /etc/voiceterm and the voiceterm user
  --purge        with --uninstall (implies it): also remove /etc/voiceterm (configuration and token)
  -h, --help     this text

Environment: VOICETERM_INSTALL_PIP_ARGS (extra pip arguments), VOICETERM_PYTHON (venv interpreter),
VOICETERM_INSTALL_EXTRAS (optional parts, default endpoint,frontend; empty for a plain install).
EOF
}

while (($#)); do
    case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#*=}"; shift ;;
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --no-apt) DO_APT=0; shift ;;
    --no-venv) DO_VENV=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) UNINSTALL=1; PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

case "$PREFIX" in
/?*) PREFIX="${PREFIX%/}" ;;
*) die "--prefix must be an absolute path other than /, got '$PREFIX'" ;;
esac
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" != "/" ] || ROOT=""
fi
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or stage into a directory with --root DIR"
fi

VENV="$ROOT$PREFIX/venv"
CONF_DIR="$ROOT/etc/voiceterm"
UNIT_DST="$ROOT/etc/systemd/system/voiceterm.service"
SYSUSERS_DST="$ROOT/etc/sysusers.d/voiceterm.conf"
UDEV_DST="$ROOT/etc/udev/rules.d/60-voiceterm-gpio.rules"
CLI_LINK="$ROOT/usr/local/bin/voiceterm"
UNIT_NAME="voiceterm.service"

# systemd is the running init (sd_booted()): only then may we start, stop or reload anything.
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

# Write SRC to DST with MODE only when the content or mode differs, so a re-run keeps mtimes.
# Sets CHANGED=1 when it wrote.
CHANGED=0
put_file() {
    local src="$1" dst="$2" mode="$3"
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
        if [ "$(stat -c %a "$dst")" != "${mode#0}" ]; then chmod "$mode" "$dst"; fi
        return 0
    fi
    install -D -m "$mode" "$src" "$dst"
    say "wrote ${dst}"
    CHANGED=1
}

pick_python() {
    if [ -n "${VOICETERM_PYTHON:-}" ]; then
        printf '%s\n' "$VOICETERM_PYTHON"
    elif [ -x /usr/bin/python3 ]; then
        # The distribution's interpreter: the one apt's python3-lgpio is built for.
        printf '%s\n' /usr/bin/python3
    else
        command -v python3 || die "no python3 found; install python3 (apt-get install python3-venv)"
    fi
}

# A digest of the files pip installs from: the venv is rebuilt only when they change.
source_digest() {
    (
        cd "$REPO"
        find pyproject.toml README.md daemon -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-32
    )
}

apt_step() {
    if [ -n "$ROOT" ] || [ "$DO_APT" -eq 0 ]; then
        say "skipping apt packages${ROOT:+ (--root)}"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this installer is for Debian, Ubuntu and Raspberry Pi OS (use --no-apt to skip)"
    local missing=() pkg
    for pkg in "${APT_BASE[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})) || ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
        say "apt-get update"
        apt-get update -qq
    fi
    if ! dpkg -s python3-lgpio >/dev/null 2>&1; then
        if apt-cache show python3-lgpio >/dev/null 2>&1; then
            missing+=(python3-lgpio)
        else
            # Only Raspberry Pi OS and Ubuntu ship it. Building lgpio needs its C library, which no
            # Debian release packages: without it gpiozero falls back to its other pin factories.
            say "note: python3-lgpio is not in the apt sources; GPIO will use gpiozero's fallback factories" \
                "(set [gpio] pin_factory, or [gpio] enabled = false on a board without GPIO)"
        fi
    fi
    if ((${#missing[@]})); then
        say "apt-get install ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

venv_step() {
    if [ "$DO_VENV" -eq 0 ]; then
        say "skipping the virtualenv (--no-venv)"
        return 0
    fi
    local python stamp want build
    python="$(pick_python)"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating ${VENV} (with system site-packages, for apt's python3-lgpio)"
        mkdir -p "$(dirname "$VENV")"
        "$python" -m venv --system-site-packages "$VENV"
    fi
    stamp="$VENV/.voiceterm-source"
    want="$(source_digest) ${PIP_ARGS} [${EXTRAS}]"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "voiceterm in ${VENV} is up to date"
        return 0
    fi
    # Build from a clean copy: an in-tree build would leave build/ and egg-info in the checkout.
    build="$(mktemp -d)"
    TMP_PATHS+=("$build")
    tar -C "$REPO" --exclude='__pycache__' --exclude='*.pyc' --exclude='*.egg-info' \
        -cf - pyproject.toml README.md daemon | tar -C "$build" -xf -
    case ",$EXTRAS," in
    *,frontend,*)
        case "$(uname -m)" in
        x86_64 | aarch64) ;;
        *) say "note: no pywebrtc-audio wheel for $(uname -m): the audio front-end (echo cancellation) stays off;" \
            "in always-on mode with a loudspeaker set [audio] half_duplex = true (see README)" ;;
        esac
        ;;
    esac
    say "installing voiceterm into ${VENV}"
    # PIP_ARGS is a list of options on purpose: split it on spaces.
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_ARGS "$build${EXTRAS:+[$EXTRAS]}"
    printf '%s\n' "$want" >"$stamp"
    VENV_CHANGED=1
}

# True when the voiceterm user exists and belongs to audio and gpio (in ROOT's files under --root).
users_ok() {
    local group
    if [ -n "$ROOT" ]; then
        grep -q '^voiceterm:' "$ROOT/etc/passwd" 2>/dev/null || return 1
        for group in audio gpio; do
            grep -Eq "^${group}:[^:]*:[^:]*:(.*,)?voiceterm(,|$)" "$ROOT/etc/group" 2>/dev/null || return 1
        done
        return 0
    fi
    getent passwd voiceterm >/dev/null || return 1
    for group in audio gpio; do
        id -nG voiceterm | tr ' ' '\n' | grep -qx "$group" || return 1
    done
}

users_step() {
    put_file "$REPO/systemd/voiceterm.sysusers" "$SYSUSERS_DST" 0644
    # Skip the tools when all is there: systemd-sysusers rewrites /etc even when it has nothing to do.
    if users_ok; then
        say "user voiceterm is in groups audio and gpio"
        return 0
    fi
    if [ -n "$ROOT" ]; then
        if command -v systemd-sysusers >/dev/null 2>&1; then
            systemd-sysusers --root="$ROOT" "$SYSUSERS_DST"
        else
            say "would create the system user voiceterm in groups audio and gpio (no systemd-sysusers here)"
        fi
        return 0
    fi
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$SYSUSERS_DST"
    else
        getent group gpio >/dev/null || groupadd --system gpio
        getent group audio >/dev/null || groupadd --system audio
        if ! getent passwd voiceterm >/dev/null; then
            useradd --system --user-group --home-dir /nonexistent --no-create-home \
                --shell /usr/sbin/nologin --comment "voiceterm push-to-talk daemon" voiceterm
        fi
    fi
    # Also covers a voiceterm user made before this installer: make sure of both memberships.
    local group
    for group in audio gpio; do
        if ! id -nG voiceterm | tr ' ' '\n' | grep -qx "$group"; then
            usermod -a -G "$group" voiceterm
            say "added voiceterm to group $group"
        fi
    done
}

udev_step() {
    CHANGED=0
    put_file "$REPO/systemd/60-voiceterm-gpio.rules" "$UDEV_DST" 0644
    if [ "$CHANGED" -eq 1 ] && [ -z "$ROOT" ] && command -v udevadm >/dev/null 2>&1 && [ -S /run/udev/control ]; then
        udevadm control --reload-rules || true
        udevadm trigger --subsystem-match=gpio --action=add || true
    fi
}

config_step() {
    install -d -m 0750 "$CONF_DIR"
    [ -n "$ROOT" ] || chgrp voiceterm "$CONF_DIR"
    if [ -e "$CONF_DIR/voiceterm.toml" ]; then
        say "kept ${CONF_DIR}/voiceterm.toml"
    else
        # Group-readable for the daemon; it may hold a token, so nobody else reads it.
        install -m 0640 "$REPO/config/voiceterm.toml" "$CONF_DIR/voiceterm.toml"
        [ -n "$ROOT" ] || chgrp voiceterm "$CONF_DIR/voiceterm.toml"
        say "wrote ${CONF_DIR}/voiceterm.toml: set [bot] url or endpoint there"
    fi
    if [ ! -e "$CONF_DIR/token" ]; then
        say "no bot token file; if the bot needs one: install -m 0600 /dev/stdin /etc/voiceterm/token"
    fi
}

unit_step() {
    local unit prefix
    unit="$(mktemp)"
    TMP_PATHS+=("$unit")
    # The unit names the venv; follow --prefix (escaped for sed's replacement text).
    prefix="$(printf '%s' "$PREFIX" | sed 's/[&|\\]/\\&/g')"
    sed "s|/opt/voiceterm/venv/|${prefix}/venv/|g" "$REPO/systemd/voiceterm.service" >"$unit"
    CHANGED=0
    put_file "$unit" "$UNIT_DST" 0644
    UNIT_CHANGED=$CHANGED
}

# `voiceterm status`, `check-config`, `devices` and `meter` on the PATH, as the README shows them.
link_step() {
    local target="$PREFIX/venv/bin/voiceterm"
    if [ "$(readlink "$CLI_LINK" 2>/dev/null)" = "$target" ]; then
        return 0
    fi
    if [ -e "$CLI_LINK" ] && [ ! -L "$CLI_LINK" ]; then
        say "note: $CLI_LINK exists and is not ours; run $target instead"
        return 0
    fi
    mkdir -p "$(dirname "$CLI_LINK")"
    ln -sfn "$target" "$CLI_LINK"
    say "linked $CLI_LINK -> $target"
}

enable_step() {
    if [ -n "$ROOT" ]; then
        if command -v systemctl >/dev/null 2>&1; then
            # stderr dropped: it only warns that multi-user.target is not in the staged tree.
            systemctl --root="$ROOT" --quiet enable "$UNIT_NAME" 2>/dev/null ||
                die "systemctl --root=$ROOT enable $UNIT_NAME failed"
        else
            mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
            ln -sfn "/etc/systemd/system/$UNIT_NAME" "$ROOT/etc/systemd/system/multi-user.target.wants/$UNIT_NAME"
        fi
        say "enabled $UNIT_NAME under $ROOT"
        return 0
    fi
    if ! systemd_running; then
        # e.g. building an image in a chroot: enable works offline, starting waits for the boot.
        systemctl --quiet enable "$UNIT_NAME"
        say "enabled $UNIT_NAME; systemd is not running here, so it starts at the next boot"
        return 0
    fi
    [ "$UNIT_CHANGED" -eq 0 ] || systemctl daemon-reload
    if systemctl --quiet is-active "$UNIT_NAME"; then
        systemctl --quiet enable "$UNIT_NAME"
        if [ "$UNIT_CHANGED" -eq 1 ] || [ "$VENV_CHANGED" -eq 1 ]; then
            say "restarting $UNIT_NAME for the new version"
            systemctl restart "$UNIT_NAME" || say "warning: restart failed; see journalctl -u voiceterm"
        fi
    elif systemctl --quiet enable --now "$UNIT_NAME"; then
        say "enabled and started $UNIT_NAME (voiceterm status shows how it is)"
    else
        say "warning: enabled, but it did not start; see: journalctl -u voiceterm -n 20"
    fi
}

uninstall() {
    if [ -e "$UNIT_DST" ]; then
        if [ -n "$ROOT" ]; then
            if command -v systemctl >/dev/null 2>&1; then
                systemctl --root="$ROOT" --quiet disable "$UNIT_NAME" 2>/dev/null || true
            fi
            rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/$UNIT_NAME"
            rmdir "$ROOT/etc/systemd/system/multi-user.target.wants" 2>/dev/null || true
        elif systemd_running; then
            systemctl --quiet disable --now "$UNIT_NAME" || true
        else
            systemctl --quiet disable "$UNIT_NAME" || true
        fi
        rm -f "$UNIT_DST"
        say "removed $UNIT_DST"
        if systemd_running; then systemctl daemon-reload; fi
    fi
    # Only a directory that is a venv: a typo in --prefix must not delete anything else.
    if [ -f "$VENV/pyvenv.cfg" ]; then
        rm -rf "$VENV"
        say "removed $VENV"
        rmdir "$ROOT$PREFIX" 2>/dev/null || true
    fi
    if [ "$(readlink "$CLI_LINK" 2>/dev/null)" = "$PREFIX/venv/bin/voiceterm" ]; then
        rm -f "$CLI_LINK"
        say "removed $CLI_LINK"
    fi
    local f
    for f in "$UDEV_DST" "$SYSUSERS_DST"; do
        if [ -e "$f" ]; then rm -f "$f"; say "removed $f"; fi
    done
    if [ "$PURGE" -eq 1 ] && [ -d "$CONF_DIR" ]; then
        rm -rf "$CONF_DIR"
        say "removed $CONF_DIR (--purge)"
    elif [ -d "$CONF_DIR" ]; then
        say "kept $CONF_DIR (remove it with --purge)"
    fi
    # Like Debian packages, leave the system user: files it owned may still exist.
    say "kept the voiceterm user and the gpio group"
}

VENV_CHANGED=0
UNIT_CHANGED=0
if [ "$UNINSTALL" -eq 1 ]; then
    uninstall
    exit 0
fi
apt_step
venv_step
users_step
udev_step
config_step
unit_step
link_step
enable_step
say "done"
