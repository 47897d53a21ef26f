"""Reading the bot token from a file (`bot.token_file`, or systemd's `LoadCredential=`), with the checks a
secret on disk deserves: a plain file of bounded size, not writable by everyone (anyone could swap the
token), and a warning when its group or others may read it."""

from __future__ import annotations

import os
import stat

__all__ = ["MAX_TOKEN_FILE_BYTES", "TokenFileError", "read_token_file"]

MAX_TOKEN_FILE_BYTES = 64 * 1024  # a token is a line; anything longer is the wrong file


class TokenFileError(ValueError):
    """The token file cannot be used; str() is the rest of one line after the setting's name."""


def read_token_file(path: str) -> tuple[str, str | None]:
    """The token in `path` (stripped) and a one-line warning when others may read the file, or None.

    Raises TokenFileError when the file is missing, unreadable, not a plain file, too big, not UTF-8, or
    writable by everyone. The mode is checked on the open file, so what is checked is what is read.
    """
    try:
        # O_NONBLOCK: a FIFO named by mistake must not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TokenFileError(f"{path} does not exist") from None
    except PermissionError:
        raise TokenFileError(f"{path} is not readable by this user; fix its permissions") from None
    except OSError as e:
        raise TokenFileError(f"cannot read {path}: {e.__class__.__name__}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenFileError(f"cannot read {path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & stat.S_IWOTH:
            raise TokenFileError(
                f"{path} is writable by everyone (mode {mode:04o}), so anyone could swap the token; "
                f"run chmod 600 {path}, or hand it over with LoadCredential=token:{path}"
            )
        raw = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
    except OSError as e:
        raise TokenFileError(f"cannot read {path}: {e.__class__.__name__}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_TOKEN_FILE_BYTES:
        raise TokenFileError(f"{path} is over {MAX_TOKEN_FILE_BYTES} bytes; put only the token in it")
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise TokenFileError(f"cannot read {path}: {e.__class__.__name__}") from None
    warning = None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        who = "everyone" if mode & stat.S_IROTH else "its group" if mode & stat.S_IRGRP else "others"
        warning = (
            f"{path} is open to {who} (mode {mode:04o}); run chmod 600 {path} (owned by the daemon's "
            f"user), or hand it over with LoadCredential=token:{path}"
        )
    return token, warning
