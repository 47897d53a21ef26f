"""The bot link's observable state and counters: small pure values shared by the link, the status view and the app."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

from voiceterm.record import record


class LinkState(enum.Enum):
    """Where the link to the bot is in its life."""

    OFFLINE = "offline"  # not started yet, or closed on purpose
    CONNECTING = "connecting"  # start endpoint call or WebSocket handshake under way
    CONNECTED = "connected"  # socket open, client-ready sent, bot-ready not seen yet
    READY = "ready"  # bot-ready seen (or handshake wait gave up: the session works anyway)
    BACKING_OFF = "backing-off"  # waiting before the next attempt
    FAILED = "failed"  # attempt budget spent; waits for a wake-up (button press)

    @property
    def is_up(self) -> bool:
        """True when audio can flow to the bot."""
        return self in (LinkState.CONNECTED, LinkState.READY)


@record
class LinkStatus:
    """A snapshot of the link, as the rest of the daemon sees it."""

    state: LinkState = LinkState.OFFLINE
    attempt: int = 0  # consecutive failed attempts since the last good session
    last_error: str | None = None  # one line, never holds a secret
    unfixable: bool = False  # the last failure is one a retry cannot fix (401/403, 4003, TLS)
    connects_total: int = 0  # sessions opened since start
    since: float = 0.0  # trio/monotonic time the state was entered
    retry_in: float | None = None  # BACKING_OFF: the delay before the next attempt, seconds


@dataclass(slots=True)
class LinkCounters:
    """The link's monotonic counters, for the status socket and the metrics file. The state machine counts
    its decisions (connects, failures, pings, ready timeouts); the shell and the queues count the traffic."""

    sent_audio_total: int = 0
    sent_audio_bytes_total: int = 0
    dropped_outgoing_audio_total: int = 0
    sent_messages_total: int = 0
    dropped_messages_total: int = 0
    received_audio_total: int = 0
    received_audio_bytes_total: int = 0
    received_events_total: int = 0
    dropped_incoming_total: int = 0
    dropped_incoming_audio_bytes_total: int = 0  # the audio share of dropped_incoming_total, in bytes
    garbage_frames_total: int = 0
    connects_total: int = 0
    failures_total: int = 0
    start_calls_total: int = 0
    pings_sent_total: int = 0
    pings_timed_out_total: int = 0
    ready_timeouts_total: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
