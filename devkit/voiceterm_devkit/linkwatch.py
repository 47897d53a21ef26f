"""Test and benchmark helpers that watch a running `Link`: its status history and the events it delivers.

`run_link` runs a link in a nursery for the length of a block and closes it after. `StatusRecorder`
subscribes to the link and keeps every status with the time it arrived (time.monotonic(), or trio's clock
for tests in virtual time), so a test can wait for a state (deadline included) and measure how long a
recovery took. `EventCollector`
drains `link.events` (optionally slowly, or not at all) and keeps what came, audio per session.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from voiceterm.core.linkstate import LinkState, LinkStatus
from voiceterm.io.link import Link, SessionEnded, SessionStarted
from voiceterm.protocol.events import AudioChunk


@dataclass(frozen=True, slots=True)
class Seen:
    at: float  # the recorder's clock: time.monotonic() unless told otherwise
    status: LinkStatus


class StatusRecorder:
    """Every status the link publishes, in order, with its arrival time on `clock`."""

    def __init__(self, link: Link, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.link = link
        self.clock = clock
        self.history: list[Seen] = [Seen(clock(), link.status)]
        self._changed = trio.Event()
        link.subscribe(self._on_status)

    def _on_status(self, status: LinkStatus) -> None:
        self.history.append(Seen(self.clock(), status))
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    def mark(self) -> int:
        """An index into `history`; pass it as `since` to wait only for later statuses."""
        return len(self.history)

    async def wait_for(
        self, predicate: Callable[[LinkStatus], bool], timeout: float, *, since: int = 0
    ) -> Seen:
        """The first status at index >= `since` satisfying `predicate`; trio.TooSlowError after `timeout`."""
        index = since
        with trio.fail_after(timeout):
            while True:
                while index < len(self.history):
                    seen = self.history[index]
                    index += 1
                    if predicate(seen.status):
                        return seen
                await self._changed.wait()

    async def wait_state(self, state: LinkState, timeout: float, *, since: int = 0) -> Seen:
        return await self.wait_for(lambda s: s.state is state, timeout, since=since)

    def states(self, since: int = 0) -> list[str]:
        return [seen.status.state.value for seen in self.history[since:]]

    def timeline(self, since: int = 0) -> list[tuple[float, str]]:
        """(time, state) of every status from `since` on."""
        return [(seen.at, seen.status.state.value) for seen in self.history[since:]]


@dataclass
class EventCollector:
    """Drains `link.events`: run `collect` in a nursery. `delay` makes it a slow consumer; `paused` stops it."""

    link: Link
    delay: float = 0.0
    events: list[tuple[float, Any]] = field(default_factory=list)
    audio_bytes: dict[int, int] = field(default_factory=dict)  # per session
    audio: dict[int, list[AudioChunk]] = field(default_factory=dict)
    session: int = 0
    paused: bool = False
    keep_audio: bool = True
    _resume: trio.Event = field(default_factory=trio.Event)
    _arrived: trio.Event = field(default_factory=trio.Event)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._resume.set()

    async def collect(self) -> None:
        async for event in self.link.events:
            if isinstance(event, SessionStarted):
                self.session = event.session
            if isinstance(event, AudioChunk):
                self.audio_bytes[self.session] = self.audio_bytes.get(self.session, 0) + len(event.pcm)
                if self.keep_audio:
                    self.audio.setdefault(self.session, []).append(event)
            else:
                self.events.append((time.monotonic(), event))
            arrived, self._arrived = self._arrived, trio.Event()
            arrived.set()
            if self.delay:
                await trio.sleep(self.delay)
            while self.paused:
                self._resume = trio.Event()
                await self._resume.wait()

    def of_type(self, kind: type) -> list[Any]:
        return [event for _, event in self.events if isinstance(event, kind)]

    def sessions_started(self) -> list[int]:
        return [e.session for e in self.of_type(SessionStarted)]

    def sessions_ended(self) -> list[SessionEnded]:
        return self.of_type(SessionEnded)

    async def wait_for(self, predicate: Callable[[EventCollector], bool], timeout: float) -> None:
        """Until `predicate(self)` holds, re-checked after every event; trio.TooSlowError after `timeout`."""
        with trio.fail_after(timeout):
            while not predicate(self):
                await self._arrived.wait()


@asynccontextmanager
async def run_link(link: Link, *, collect: EventCollector | None = None) -> AsyncIterator[trio.Nursery]:
    """Run `link` (and `collect`, if given) for the block; close the link gracefully when it ends."""
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        if collect is not None:
            nursery.start_soon(collect.collect)
        try:
            yield nursery
        finally:
            with trio.CancelScope(shield=True):
                await link.close()
            nursery.cancel_scope.cancel()
