"""The `voiceterm` command: run the daemon, check the configuration, and the installer's diagnostics.

Every error a person can cause ends in one line on stderr and a documented exit status (78 for configuration
errors, as sysexits' EX_CONFIG, which the systemd unit refuses to restart on), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from voiceterm import __version__
from voiceterm.config import Config, ConfigError
from voiceterm.config_load import config_path_from, load_config
from voiceterm.exitcodes import EX_CONFIG, EX_FAILURE, EX_INTERRUPTED, EX_OK, EX_UNAVAILABLE, EX_USAGE


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

    events = sub.add_parser(
        "events", help="follow the running daemon's events (conversation and state changes)"
    )
    _add_common(events)
    events.add_argument("--json", action="store_true", help="print the raw JSON lines")
    events.add_argument("--event", "-e", action="append", metavar="NAME", help="only this event (repeatable)")
    events.add_argument("--socket", metavar="PATH", help="event socket (default: from the configuration)")

    ctl = sub.add_parser(
        "ctl",
        help="send a command to the running daemon",
        description="Commands: talk start|stop, mute, unmute, toggle-mute, volume [PERCENT], "
        "send-text TEXT, client-message TYPE [DATA], request TYPE [DATA [TIMEOUT_S]], ui-event NAME [PAYLOAD], "
        "dtmf KEYS, functions, reconnect, status, help. DATA and PAYLOAD are JSON (or a plain string).",
    )
    _add_common(ctl)
    ctl.add_argument("--json", action="store_true", help="print the raw JSON reply")
    ctl.add_argument("--socket", metavar="PATH", help="event socket (default: from the configuration)")
    ctl.add_argument("ctl_command", metavar="COMMAND")
    ctl.add_argument("ctl_args", metavar="ARG", nargs="*")
    return parser


def _load(args: argparse.Namespace) -> Config:
    return load_config(config_path_from(getattr(args, "config", None)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EX_USAGE
    command = _COMMANDS.get(args.command)
    if command is None:  # pragma: no cover - argparse knows the same names
        parser.error(f"unknown command {args.command}")
    try:
        return command(args)
    except ConfigError as e:
        print(f"voiceterm: {e}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return EX_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from voiceterm.app import run_daemon
    from voiceterm.parts import check_parts

    cfg = _load(args)
    check_parts(cfg)
    remember_config_secrets(cfg)
    return run_daemon(cfg, keyboard=args.keyboard, log_level=args.log_level)


def _meter(args: argparse.Namespace) -> int:
    from voiceterm.meter import run_meter

    return run_meter(_load(args), seconds=args.seconds)


def remember_config_secrets(cfg: Config) -> None:
    """Have every mask in this process (logs, status, events, listings) hide the configured secrets by value."""
    from voiceterm.config_render import secret_values
    from voiceterm.masking import remember_secrets

    remember_secrets(secret_values(cfg))


def _check_config(args: argparse.Namespace) -> int:
    from voiceterm.config_render import effective_config, render_toml
    from voiceterm.masking import scrub_known
    from voiceterm.parts import check_parts

    cfg = _load(args)
    check_parts(cfg)
    remember_config_secrets(cfg)
    for warning in cfg.warnings:
        print(f"voiceterm: warning: {warning}", file=sys.stderr)
    if args.json:
        text = json.dumps(effective_config(cfg), indent=2) + "\n"
    else:
        text = f"# effective configuration from {cfg.source} (secrets masked)\n" + render_toml(cfg)
    # The masks work by name and shape; a secret value that slipped past them is still caught here.
    print(scrub_known(text), end="")
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


def _events_socket(args: argparse.Namespace) -> str:
    from voiceterm.io.control import default_socket_path
    from voiceterm.io.event_socket import SOCKET_NAME

    if args.socket:
        return args.socket
    try:
        configured = _load(args).events.socket
    except ConfigError:
        configured = ""
    return configured or default_socket_path(name=SOCKET_NAME)


def _events(args: argparse.Namespace) -> int:
    from voiceterm.core.device_events import EVENT_NAMES
    from voiceterm.events_cli import follow

    for name in args.event or ():
        if name not in EVENT_NAMES:
            print(
                f"voiceterm: unknown event {name!r}; known: {', '.join(sorted(EVENT_NAMES))}", file=sys.stderr
            )
            return EX_USAGE
    path = _events_socket(args)
    try:
        return follow(path, raw=args.json, names=args.event)
    except (OSError, ValueError) as e:
        print(f"voiceterm: no event stream on {path}: {e}", file=sys.stderr)
        return EX_UNAVAILABLE


def ctl_request(command: str, words: Sequence[str]) -> dict:
    """The request for `voiceterm ctl COMMAND ARG...`; ValueError (one line) for wrong arguments."""
    from voiceterm.core.control_commands import COMMANDS
    from voiceterm.events_cli import ctl_message_request

    message = ctl_message_request(command, words)  # client-message, request, ui-event, dtmf, functions
    if message is not None:
        return message

    if command not in COMMANDS or command in ("subscribe", "unsubscribe"):
        known = ", ".join(c for c in COMMANDS if c not in ("subscribe", "unsubscribe"))
        raise ValueError(f"unknown command {command!r}; known: {known}")
    if command == "talk":
        if len(words) != 1 or words[0] not in ("start", "stop"):
            raise ValueError("usage: voiceterm ctl talk start|stop")
        return {"cmd": "talk", "state": words[0]}
    if command == "volume":
        if len(words) > 1:
            raise ValueError("usage: voiceterm ctl volume [PERCENT]")
        if not words:
            return {"cmd": "volume"}
        try:
            return {"cmd": "volume", "percent": float(words[0].rstrip("%"))}
        except ValueError:
            raise ValueError(f"volume: {words[0]!r} is not a number") from None
    if command == "send-text":
        if not words:
            raise ValueError("usage: voiceterm ctl send-text TEXT")
        return {"cmd": "send-text", "content": " ".join(words)}
    if words:
        raise ValueError(f"{command} takes no arguments")
    return {"cmd": command}


def _ctl(args: argparse.Namespace) -> int:
    from voiceterm.events_cli import EventClient, await_outcome

    try:
        request = ctl_request(args.ctl_command, args.ctl_args)
    except ValueError as e:
        print(f"voiceterm: {e}", file=sys.stderr)
        return EX_USAGE
    path = _events_socket(args)
    try:
        with EventClient(path) as client:
            cmd = request.pop("cmd")
            reply = client.request(cmd, **request)
            reply = await_outcome(client, cmd, reply)  # a request's reply from the bot
    except (OSError, ValueError) as e:
        print(f"voiceterm: no daemon answers on {path}: {e}", file=sys.stderr)
        return EX_UNAVAILABLE
    if args.json:
        print(json.dumps(reply, sort_keys=True))
    elif reply.get("ok"):
        for line in format_status(reply.get("result") or {}):
            print(line)
    if not reply.get("ok"):
        from voiceterm.logs import printable

        print(f"voiceterm: {cmd}: {printable(reply.get('error'))}", file=sys.stderr)
        return EX_FAILURE
    return EX_OK


# Each subcommand's handler (the parser's subcommands, by name).
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "check-config": _check_config,
    "devices": _devices,
    "meter": _meter,
    "status": _status,
    "events": _events,
    "ctl": _ctl,
}


def format_status(snap: dict, prefix: str = "") -> list[str]:
    """Flatten the daemon's status document into `key: value` lines for a person."""
    from voiceterm.logs import printable

    lines: list[str] = []
    for key, value in snap.items():
        if isinstance(value, dict):
            lines.extend(format_status(value, f"{prefix}{key}."))
        else:
            # Values may hold text from the bot or an endpoint (errors): one line, no terminal controls.
            lines.append(printable(f"{prefix}{key}: {value}", 1000))
    return lines


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
