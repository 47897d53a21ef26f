"""What the link's state machine (core/linkmachine.py) is told and says: its settings, the events the trio
shell feeds it, each carrying the time `now`, and the actions it answers for the shell to perform. Plain
frozen values."""

from __future__ import annotations

from typing import Any, Union

from voiceterm.core.linkevents import SessionEnded, SessionStarted
from voiceterm.core.linkstate import LinkStatus
from voiceterm.record import record

__all__ = [
    "CLOSE_GRACE",
    "AbortSession",
    "Action",
    "AttemptFailed",
    "BotErrorSeen",
    "BotReadySeen",
    "CancelAttempt",
    "Close",
    "Closed",
    "Connect",
    "Deliver",
    "EndSession",
    "Event",
    "Failure",
    "Halt",
    "LinkSettings",
    "Note",
    "Opened",
    "Pong",
    "Publish",
    "ReconnectNow",
    "SendPing",
    "SessionOver",
    "Start",
    "Tick",
    "Wake",
]


CLOSE_GRACE = 0.4  # seconds for disconnect-bot and the close handshake when a session ends on purpose


@record
class LinkSettings:
    """What the machine needs from [bot] and [heartbeat]."""

    url: str = ""  # masked, shown until a session says where it went
    serializer: str = "protobuf"
    connect_timeout: float = 10.0
    ready_timeout: float = 5.0
    heartbeat_interval: float = 0.0  # 0 = no pings
    heartbeat_timeout: float = 5.0
    close_grace: float = CLOSE_GRACE

    @classmethod
    def from_config(cls, config: Any, *, serializer: str, url: str) -> LinkSettings:
        """From a `voiceterm.config.Config` (its [bot] and [heartbeat])."""
        bot, heartbeat = config.bot, config.heartbeat
        return cls(
            url=url,
            serializer=serializer,
            connect_timeout=bot.connect_timeout,
            ready_timeout=bot.ready_timeout,
            heartbeat_interval=heartbeat.interval,
            heartbeat_timeout=heartbeat.timeout,
        )


# --- events (in) --------------------------------------------------------------------------------------


@record
class Failure:
    """Why an attempt or a session failed, in one line for a person, and whether a retry can help."""

    reason: str
    unfixable: bool = False


@record
class Start:
    now: float


@record
class Opened:
    """The WebSocket is upgraded and the opening messages are sent; `url` is masked."""

    now: float
    url: str
    rtvi: bool  # the wire format carries RTVI (so bot-ready is worth waiting for)


@record
class AttemptFailed:
    now: float
    failure: Failure


@record
class BotReadySeen:
    now: float
    session: int
    version: str


@record
class BotErrorSeen:
    """An RTVI ``error``; `text` is the bot's, untrusted."""

    now: float
    session: int
    text: str
    fatal: bool


@record
class Pong:
    now: float
    session: int


@record
class Closed:
    """The session's socket is closed: by the peer or the network (`failure`), or by our own close (None)."""

    now: float
    session: int
    failure: Failure | None


@record
class SessionOver:
    """The session's tasks and socket are torn down: the next attempt may begin."""

    now: float
    session: int


@record
class Tick:
    """The shell's timer: `deadline` has come."""

    now: float


@record
class Wake:
    """A button press: leave FAILED."""

    now: float


@record
class ReconnectNow:
    now: float


@record
class Close:
    now: float
    graceful: bool = True


@record
class Halt:
    """run() is over whatever the state (cancelled from outside)."""

    now: float


Event = Union[
    Start,
    Opened,
    AttemptFailed,
    BotReadySeen,
    BotErrorSeen,
    Pong,
    Closed,
    SessionOver,
    Tick,
    Wake,
    ReconnectNow,
    Close,
    Halt,
]


# --- actions (out) ------------------------------------------------------------------------------------


@record
class Publish:
    status: LinkStatus


@record
class Note:
    """A log line: `fields` as key=value, between `prefix` and `suffix`. Untrusted text is escaped already."""

    level: int
    fields: dict[str, Any]
    prefix: str = ""
    suffix: str = ""


@record
class Deliver:
    event: SessionStarted | SessionEnded


@record
class Connect:
    """Begin an attempt: target, stream, upgrade, opening messages; report Opened or AttemptFailed."""


@record
class CancelAttempt:
    """Give up the attempt under way (timed out, or closing); report nothing for it."""


@record
class SendPing:
    """Ping the bot; report Pong when the answer comes."""


@record
class EndSession:
    """End the session on purpose: disconnect-bot first when `goodbye`, the serializer's closing messages,
    the close handshake; report Closed(failure=None) when the socket is closed."""

    goodbye: bool


@record
class AbortSession:
    """Tear the session down now; report SessionOver when it is."""


Action = Union[Publish, Note, Deliver, Connect, CancelAttempt, SendPing, EndSession, AbortSession]
