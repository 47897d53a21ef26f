"""The process exit statuses of every `voiceterm` command and of the daemon, in one place.

The values are sysexits.h's where one fits (the systemd unit keys on them: it does not restart on
EX_CONFIG), argparse's 2 for a command line it cannot use, and the shell's 130 for Ctrl-C.
"""

from __future__ import annotations

EX_OK = 0
EX_FAILURE = 1  # the command ran and the answer is "no" (the daemon refused a control command ...)
EX_USAGE = 2  # a command line the command cannot use (argparse's status, kept for every usage error)
EX_UNAVAILABLE = 69  # sysexits: a service the command needs is not there (no daemon answers, no device)
EX_SOFTWARE = 70  # sysexits: an internal error; systemd restarts on it
EX_CONFIG = 78  # sysexits: a configuration error; systemd's RestartPreventExitStatus= stops the loop on it
EX_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

__all__ = ["EX_CONFIG", "EX_FAILURE", "EX_INTERRUPTED", "EX_OK", "EX_SOFTWARE", "EX_UNAVAILABLE", "EX_USAGE"]
