"""The `voiceterm` command: run the daemon, check the configuration, and the installer's diagnostics.

Every error a person can cause ends in one line on stderr and a documented exit status (78 for configuration
errors, as sysexits' EX_CONFIG, which the systemd unit refuses to restart on), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from voiceterm import __version__
from voiceterm.config import EX_CONFIG, Config, ConfigError, config_path_from, load_config

EX_OK = 0
EX_FAILURE = 1
EX_UNAVAILABLE = 69  # sysexits: a service the command needs is not there (no daemon, no device)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: $VOICETERM_CONFIG or /etc/voiceterm/voiceterm.toml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiceterm",
        description="Push-to-talk voice terminal for a Pipecat bot.",
    )
    parser.add_argument("--version", action="version", version=f"voiceterm {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    _add_common(run)
    run.add_argument(
        "--keyboard",
        action="store_true",
        help="use this terminal as the button (space: talk, m: mute, r: reconnect, q: quit)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="override [logging] level",
    )

    check = sub.add_parser("check-config", help="validate the configuration and print it, secrets masked")
    _add_common(check)
    check.add_argument("--json", action="store_true", help="print JSON instead of TOML")

    devices = sub.add_parser("devices", help="list ALSA capture and playback devices")
    _add_common(devices)

    meter = sub.add_parser("meter", help="show a live microphone level bar (to set mic_gain_db)")
    _add_common(meter)
    meter.add_argument(
        "--seconds", type=float, default=0.0, help="stop after this long (default: until Ctrl-C)"
    )

    status = sub.add_parser("status", help="state and counters of the running daemon")
    _add_common(status)
    status.add_argument("--json", action="store_true", help="print the raw JSON document")
    status.add_argument("--socket", metavar="PATH", help="status socket (default: from the configuration)")
    return parser


def _load(args: argparse.Namespace) -> Config:
    return load_config(config_path_from(getattr(args, "config", None)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "run":
            from voiceterm.app import run_daemon

            return run_daemon(_load(args), keyboard=args.keyboard, log_level=args.log_level)
        if args.command == "devices":
            return _devices(args)
        if args.command == "meter":
            from voiceterm.meter import run_meter

            return run_meter(_load(args), seconds=args.seconds)
        if args.command == "status":
            return _status(args)
    except ConfigError as e:
        print(f"voiceterm: {e}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2  # pragma: no cover


def _check_config(args: argparse.Namespace) -> int:
    from voiceterm.config import effective_config, render_toml

    cfg = _load(args)
    if args.json:
        print(json.dumps(effective_config(cfg), indent=2))
    else:
        print(f"# effective configuration from {cfg.source} (secrets masked)")
        print(render_toml(cfg), end="")
    return EX_OK


def _devices(args: argparse.Namespace) -> int:
    from voiceterm.io.alsa import list_devices

    path = config_path_from(getattr(args, "config", None))
    try:
        cfg = load_config(path)
    except ConfigError as e:
        # Listing devices is how one fixes a bad device name: a broken config must not stop it.
        print(f"voiceterm: {e} (showing devices anyway)", file=sys.stderr)
        cfg = Config()
    info = list_devices()
    configured = {
        "capture": cfg.audio.capture_device,
        "playback": cfg.audio.playback_device,
    }
    for kind in ("capture", "playback"):
        print(f"{kind} PCMs:")
        names = info.get(kind, [])
        for name in names:
            mark = "  <- configured" if name == configured[kind] else ""
            print(f"  {name}{mark}")
        if configured[kind] not in names:
            print(f"  ({configured[kind]} is configured but not listed: it may be a plug/hw name)")
    print("cards:")
    for card in info.get("cards", []):
        print(f"  {card}")
    return EX_OK


def _status(args: argparse.Namespace) -> int:
    from voiceterm.io.control import default_socket_path, read_status

    path = args.socket
    if not path:
        try:
            path = _load(args).status.socket or default_socket_path()
        except ConfigError:
            path = default_socket_path()
    try:
        snap = read_status(path)
    except (OSError, ValueError) as e:
        print(f"voiceterm: no daemon answers on {path}: {e}", file=sys.stderr)
        return EX_UNAVAILABLE
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True))
        return EX_OK
    for line in format_status(snap):
        print(line)
    return EX_OK


def format_status(snap: dict, prefix: str = "") -> list[str]:
    """Flatten the daemon's status document into `key: value` lines for a person."""
    lines: list[str] = []
    for key, value in snap.items():
        if isinstance(value, dict):
            lines.extend(format_status(value, f"{prefix}{key}."))
        else:
            lines.append(f"{prefix}{key}: {value}")
    return lines


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
