"""What the microphone and the speaker share: opening an ALSA PCM by name with one-line errors, keeping
alsa-lib's own stderr chatter out of the journal, the wall-clock pacer for unclocked PCMs, the device
thread that reopens a vanished device with backoff, and the device listing for `voiceterm devices`.

Each device is owned by one plain thread that opens, reads or writes, and closes its PCM; nothing else
touches the handle. Blocking ALSA calls never run on the trio thread, and the PCM's poll descriptors are
never handed to trio (file PCMs poll on /dev/null, which epoll refuses).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import trio

from voiceterm.io.lograte import RepeatSuppressor
from voiceterm.logs import kv

log = logging.getLogger("voiceterm.audio")

CAPTURE = "capture"
PLAYBACK = "playback"

EPIPE = -errno.EPIPE  # pyalsaaudio >= 0.11: read()/write() return this on an overrun/underrun

JOIN_TIMEOUT_S = 2.0  # how long shutdown waits for a device thread to close its PCM
UNCLOCKED_READS = 50  # consecutive reads that decide whether a capture PCM is clocked
UNCLOCKED_WRITES = 20  # consecutive writes that decide whether a playback PCM is clocked


class AudioDeviceError(Exception):
    """An ALSA device could not be opened or failed; the message is one line a person can act on."""


def _alsaaudio() -> Any:
    import alsaaudio  # imported lazily: `voiceterm check-config` must work without it

    return alsaaudio


# --- alsa-lib's stderr -----------------------------------------------------------------------------

_stderr_lock = threading.Lock()


@contextlib.contextmanager
def alsa_stderr_captured() -> Iterator[list[str]]:
    """Collect what alsa-lib prints on fd 2 (e.g. `ALSA lib pcm.c:...: Unknown PCM foo`) during the block.

    alsa-lib writes its errors straight to fd 2, and pyalsaaudio gives no way to install
    snd_lib_error_set_handler. A reopen loop would print such a line every attempt, so fd 2 points at a
    temporary file during the non-blocking probe open of a PCM (only then: it is rare, short and cannot
    hang). The ALSA lines are returned for the debug log; anything else written meanwhile (a log line
    from another thread) goes back to stderr afterwards. Errors mid-stream are left alone: they happen
    once per failure.
    """
    lines: list[str] = []
    with _stderr_lock:
        with contextlib.suppress(AttributeError, OSError, ValueError):  # stderr closed or replaced
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # pragma: no cover - no fd 2 at all
            yield lines
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", "replace")
                other: list[str] = []
                for line in text.splitlines():
                    (lines if line.startswith("ALSA lib ") else other).append(line)
                if other:
                    with contextlib.suppress(OSError):
                        os.write(2, ("\n".join(other) + "\n").encode())


# --- opening ----------------------------------------------------------------------------------------


def _alsa_reason(exc: BaseException) -> str:
    """'No such file or directory' from pyalsaaudio's 'No such file or directory [plughw:2]'."""
    text = str(exc)
    if text.endswith("]") and " [" in text:
        text = text[: text.rindex(" [")]
    return text.strip() or exc.__class__.__name__


def describe_open_error(kind: str, device: str, reason: str) -> str:
    """One line naming the device, what went wrong and what to do."""
    what = f'{kind} device "{device}"'
    low = reason.lower()
    if "no such file" in low or "no such device" in low:
        return f"{what} not found (ALSA: {reason}); check `voiceterm devices`"
    if "busy" in low:
        return f"{what} is busy (ALSA: {reason}); another program is using it"
    if "permission" in low:
        return f"{what} is not accessible (ALSA: {reason}); add the user to the audio group"
    return f"{what} cannot be opened (ALSA: {reason}); check `voiceterm devices`"


def describe_failure(kind: str, device: str, reason: str) -> str:
    return f'{kind} device "{device}" failed (ALSA: {reason}); reopening'


class AlsaPcm:
    """One open PCM: S16_LE mono at a fixed rate, with the period and buffer ALSA granted.

    Used only from the device thread that opened it.
    """

    def __init__(self, kind: str, device: str, rate: int, period_frames: int, periods: int) -> None:
        alsaaudio = _alsaaudio()
        self.kind = kind
        self.device = device
        self.rate = rate

        def construct(mode: int) -> Any:
            return alsaaudio.PCM(
                alsaaudio.PCM_CAPTURE if kind == CAPTURE else alsaaudio.PCM_PLAYBACK,
                mode,
                device=device,
                rate=rate,
                channels=1,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=period_frames,
                periods=periods,
            )

        # A blocking open of a busy hw: device waits until the other program lets go, silently and
        # for ever. So probe with a non-blocking open first (busy -> EBUSY at once, a clear fault), and
        # keep alsa-lib's stderr captured only around that probe, which cannot hang.
        error: AudioDeviceError | None = None
        with alsa_stderr_captured() as alsa_lines:
            try:
                probe = construct(alsaaudio.PCM_NONBLOCK)
            except alsaaudio.ALSAAudioError as e:
                error = AudioDeviceError(describe_open_error(kind, device, _alsa_reason(e)))
        if alsa_lines:
            log.debug("alsa-lib said %s", kv(device=device, text=" | ".join(alsa_lines)))
        if error is not None:
            raise error
        # pyalsaaudio takes the nearest values the device offers without complaint; a hw: device that
        # cannot do our format would otherwise record at the wrong speed.
        info = probe.info()
        with contextlib.suppress(Exception):
            probe.close()
        got = (info.get("rate"), info.get("channels"), info.get("format"))
        if got != (rate, 1, alsaaudio.PCM_FORMAT_S16_LE):
            raise AudioDeviceError(
                f'{kind} device "{device}" cannot do S16_LE mono at {rate} Hz '
                f"(it offers {info.get('format_name')} x{info.get('channels')} at {info.get('rate')} Hz); "
                f'use a "plughw:" or "default" device'
            )
        try:
            pcm = construct(alsaaudio.PCM_NORMAL)
        except alsaaudio.ALSAAudioError as e:  # it went away (or got busy) since the probe
            raise AudioDeviceError(describe_open_error(kind, device, _alsa_reason(e))) from None
        info = pcm.info()
        self._pcm = pcm
        self.period_frames = int(info["period_size"])
        buffer_size = int(info.get("buffer_size") or 0)
        self.buffer_frames = buffer_size if buffer_size > 0 else self.period_frames * periods
        self._state_xrun = alsaaudio.PCM_STATE_XRUN
        self._state_setup = alsaaudio.PCM_STATE_SETUP
        self._error_type = alsaaudio.ALSAAudioError
        self._in_xrun = False
        self.xruns = 0  # device underruns seen by fill()

    @property
    def error_type(self) -> type[Exception]:
        return self._error_type

    def read(self) -> tuple[int, bytes]:
        return self._pcm.read()

    def readable(self) -> int:
        """Capture: frames that a read returns without waiting (negative errno after an overrun)."""
        return self._pcm.avail()

    def write(self, data: bytes) -> int:
        return self._pcm.write(data)

    def fill(self) -> int:
        """Frames written and not yet played (playback, device clock); 0 after an xrun or drop()."""
        state = self._pcm.state()
        if state == self._state_xrun:
            if not self._in_xrun:
                self._in_xrun = True
                self.xruns += 1
            return 0
        self._in_xrun = False
        if state == self._state_setup:
            return 0
        avail = self._pcm.avail()
        if avail < 0:
            if avail == EPIPE:
                return 0
            raise self._error_type(f"{os.strerror(-avail)} [{self.device}]")
        return max(0, self.buffer_frames - avail)

    def drop(self) -> None:
        """Discard what the device holds now (playback: silence at once)."""
        self._pcm.drop()

    def close(self) -> None:
        """Close without draining: whatever is still queued is not worth waiting for."""
        with contextlib.suppress(Exception):
            if self.kind == PLAYBACK:
                self._pcm.drop()
        with contextlib.suppress(Exception):
            self._pcm.close()


# --- pacing -----------------------------------------------------------------------------------------


class PlaybackPacer:
    """A device clock for an unclocked playback PCM: frames drain at `rate` frames per second.

    `fill()` is what a real device would still hold; the writer keeps it within the ALSA buffer, so it
    never runs more than the buffer ahead of real time. If the writer falls behind, the emulated device
    underruns and restarts from empty, as hardware does after an xrun.
    """

    def __init__(self, rate: int, now: Callable[[], float] = time.perf_counter) -> None:
        self.rate = rate
        self._now = now
        self._base = 0.0  # when the emulated device started playing (first write after empty)
        self._written = 0  # frames written since then
        self.underruns = 0

    def fill(self) -> int:
        if self._written == 0:
            return 0
        played = (self._now() - self._base) * self.rate
        left = self._written - played
        if left <= 1e-6:
            self.underruns += 1
            self.reset()
            return 0
        return math.ceil(left - 1e-6)  # a frame being played still occupies the buffer

    def wrote(self, n: int) -> None:
        if self._written == 0:
            self._base = self._now()
        self._written += n

    def reset(self) -> None:
        """The device was emptied (drop() or an underrun)."""
        self._written = 0


class CapturePacer:
    """A device clock for an unclocked capture PCM: one period becomes readable per period of wall time.

    A reader that falls more than `max_lag_periods` behind is resynchronised (a real device would have
    overrun; a file has lost nothing, so no period is dropped).
    """

    def __init__(
        self,
        period_s: float,
        *,
        max_lag_periods: int = 8,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.period_s = period_s
        self.max_lag_periods = max_lag_periods
        self._now = now
        self._next: float | None = None

    def delay(self) -> float:
        """Seconds to wait before the next period is due (0 when it is due already)."""
        now = self._now()
        if self._next is None:
            self._next = now + self.period_s
        elif now - self._next > self.max_lag_periods * self.period_s:
            self._next = now
        return max(0.0, self._next - now)

    def consumed(self) -> None:
        assert self._next is not None
        self._next += self.period_s

    def due(self) -> int:
        """Whole periods readable now without waiting (a reader that sleeps through several reads them
        in one go)."""
        delay = self.delay()
        if delay > 0:
            return 0
        assert self._next is not None
        return 1 + int((self._now() - self._next) / self.period_s)


class UnclockedDetector:
    """Notices a PCM that returns faster than real time although pacing is "device" (a file/null PCM)."""

    def __init__(self, needed: int) -> None:
        self.needed = needed
        self._fast = 0
        self.tripped = False

    def observe(self, fast: bool) -> bool:
        """Feed one read/write; True exactly once, when `needed` consecutive ones were too fast."""
        if self.tripped:
            return False
        self._fast = self._fast + 1 if fast else 0
        if self._fast >= self.needed:
            self.tripped = True
            return True
        return False


# --- the device thread -------------------------------------------------------------------------------


class Bell:
    """The wake-up of a device thread that sleeps with a timeout: `ring()` (any thread) ends the current
    `wait()` at once, or the next one when the thread is not waiting (a ring is never lost; rings while one
    is pending merge). A plain lock used as a one-token semaphore: a wait on it costs about half the CPU of
    a Condition's or an Event's (measured here: 25 against 45-50 us per wake-up), and a device thread
    sleeps and wakes tens of times a second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def ring(self) -> None:
        with contextlib.suppress(RuntimeError):  # rung already, not waited for yet
            self._lock.release()

    def wait(self, timeout: float) -> bool:
        """Sleep until rung (True) or for `timeout` seconds (False)."""
        return self._lock.acquire(True, max(0.0, timeout))


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` (15 bytes at most) in /proc/PID/task/TID/comm, so `top -H` and
    per-thread CPU figures say which thread is which: Python before 3.14 names its threads for itself only."""
    path = f"/proc/self/task/{threading.get_native_id()}/comm"
    with contextlib.suppress(OSError), open(path, "w", encoding="ascii") as f:  # not Linux: a nicety
        f.write(name[:15])


class DeviceWorker:
    """Runs one device's thread: open with backoff, report the fault state to trio, stop promptly.

    Subclasses implement `_serve(pcm)` (read or write until the device fails or stop is requested) and
    `_open()`. `fault`, `on_fault` and the counters are touched on the trio thread only; the device
    thread hands changes over with `TrioToken.run_sync_soon`, which never blocks it.
    """

    kind = CAPTURE

    def __init__(
        self,
        device: str,
        *,
        reopen_min_s: float,
        reopen_max_s: float,
        on_fault: Callable[[str | None], None] | None,
    ) -> None:
        self.device = device
        self.reopen_min_s = reopen_min_s
        self.reopen_max_s = max(reopen_min_s, reopen_max_s)
        self.fault: str | None = None
        self._on_fault = on_fault
        self._stop = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._trio_offset = 0.0
        self._first_attempt: trio.Event | None = None
        self._done: trio.Event | None = None
        self._crash: BaseException | None = None
        self._fault_seen = False  # thread side: a fault is reported and not cleared yet
        self._opened_before = False
        self._reopens = 0
        self._suppressor = RepeatSuppressor()

    # --- trio side ----------------------------------------------------------------------------

    async def _run_worker(self, task_status: trio.TaskStatus[None]) -> None:
        if self._token is not None:
            raise RuntimeError(f"{self.kind} device is already running")
        self._token = trio.lowlevel.current_trio_token()
        # trio's clock is perf_counter plus an offset; the thread stamps times on trio's scale with it.
        self._trio_offset = trio.current_time() - time.perf_counter()
        self._first_attempt = trio.Event()
        self._done = trio.Event()
        self._stop.clear()
        thread = threading.Thread(target=self._thread_main, name=f"voiceterm-{self.kind}", daemon=True)
        thread.start()
        try:
            # The thread sets _first_attempt after its first open attempt, whatever the outcome, and
            # again when it ends, so this never waits for a missing device.
            await self._first_attempt.wait()
            task_status.started()
            await self._done.wait()
            if self._crash is not None:
                raise self._crash
        finally:
            self._stop.set()
            self._wake()
            with trio.CancelScope(shield=True), trio.move_on_after(JOIN_TIMEOUT_S):
                await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
            if thread.is_alive():  # pragma: no cover - a wedged driver
                log.warning("%s device thread did not stop %s", self.kind, kv(device=self.device))
            self._token = None

    def _apply_fault(self, message: str | None) -> None:
        if message == self.fault:
            return
        self.fault = message
        if self._on_fault is not None:
            self._on_fault(message)

    def _thread_crashed(self, exc: BaseException) -> None:
        self._crash = exc

    def _fail(self, exc: BaseException) -> None:
        """End `run()` with `exc` (trio thread): the device thread is stopped on the way out."""
        self._crash = exc
        if self._done is not None:
            self._done.set()

    def _wake(self) -> None:
        """Wake the thread if it waits on something besides the stop event (subclasses)."""

    def _trio_time(self) -> float:
        return time.perf_counter() + self._trio_offset

    # --- thread side --------------------------------------------------------------------------

    def _post(self, fn: Callable[..., object], *args: object) -> bool:
        token = self._token
        if token is None:
            return False
        try:
            token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            self._stop.set()
            return False
        return True

    def _thread_main(self) -> None:
        name_os_thread(f"vt-{self.kind}")
        try:
            while not self._stop.is_set():
                pcm = self._open_with_backoff()
                if pcm is None:
                    break
                try:
                    self._serve(pcm)
                except pcm.error_type as e:
                    self._device_failed(_alsa_reason(e))
                finally:
                    pcm.close()
                    self._closed()
                if not self._stop.is_set():
                    self._stop.wait(self.reopen_min_s)
        except BaseException as e:
            log.exception("%s device thread crashed %s", self.kind, kv(device=self.device))
            self._post(self._thread_crashed, e)
        finally:
            if self._first_attempt is not None:
                self._post(self._first_attempt.set)
            if self._done is not None:
                self._post(self._done.set)

    def _open_with_backoff(self) -> AlsaPcm | None:
        delay = self.reopen_min_s
        while not self._stop.is_set():
            try:
                pcm = self._open()
            except AudioDeviceError as e:
                self._report_fault(str(e))
                self._first_attempt_done()
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, self.reopen_max_s)
                continue
            if self._opened_before:
                self._reopens += 1
            self._opened_before = True
            if self._fault_seen:
                self._fault_seen = False
                self._suppressor.clear()
                log.info("%s device is back %s", self.kind, kv(device=self.device))
                self._post(self._apply_fault, None)
            self._opened(pcm)
            self._first_attempt_done()
            return pcm
        return None

    def _first_attempt_done(self) -> None:
        if self._first_attempt is not None:
            self._post(self._first_attempt.set)

    def _report_fault(self, message: str) -> None:
        self._fault_seen = True
        report = self._suppressor.failure(message, time.monotonic())
        if report is not None:
            if report.kind == "new":
                log.warning("%s", message)
            else:
                log.warning("%s %s", message, kv(still_failing_s=round(time.monotonic() - report.since)))
        else:
            log.debug("%s", message)
        self._post(self._apply_fault, message)

    def _device_failed(self, reason: str) -> None:
        self._report_fault(describe_failure(self.kind, self.device, reason))

    # --- for subclasses -----------------------------------------------------------------------

    def _open(self) -> AlsaPcm:
        raise NotImplementedError

    def _serve(self, pcm: AlsaPcm) -> None:
        raise NotImplementedError

    def _opened(self, pcm: AlsaPcm) -> None:
        """Called on the device thread after a successful open."""

    def _closed(self) -> None:
        """Called on the device thread after the PCM was closed."""


# --- listing ---------------------------------------------------------------------------------------


def list_devices() -> dict[str, Any]:
    """The PCM names ALSA advertises for capture and playback, and the sound cards, for `voiceterm devices`.

    Returns {"capture": [names], "playback": [names], "cards": [{"index", "id", "name", "longname"}]}. Names
    come from ALSA's hints, so plain `hw:N,M`/`plughw:N,M` also work for every card listed.
    """
    alsaaudio = _alsaaudio()
    with alsa_stderr_captured():
        capture = list(alsaaudio.pcms(alsaaudio.PCM_CAPTURE))
        playback = list(alsaaudio.pcms(alsaaudio.PCM_PLAYBACK))
        cards: list[dict[str, Any]] = []
        # cards() and card_indexes() walk the same snd_card_next() sequence, so they pair up.
        for index, card_id in zip(alsaaudio.card_indexes(), alsaaudio.cards(), strict=False):
            try:
                name, longname = alsaaudio.card_name(index)
            except alsaaudio.ALSAAudioError:  # pragma: no cover - card vanished while listing
                continue
            cards.append({"index": index, "id": card_id, "name": name, "longname": longname})
    return {"capture": capture, "playback": playback, "cards": cards}
