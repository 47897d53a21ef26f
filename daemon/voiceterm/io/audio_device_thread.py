"""The thread that owns one audio device: it opens the PCM (with backoff while the device is missing),
reads or writes it, closes it, and reports the fault state to trio.

Each device is owned by one plain thread that opens, reads or writes, and closes its PCM; nothing else
touches the handle. The microphone (`io/mic.py`) and the speaker (`io/speaker.py`) subclass `DeviceWorker`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import trio

from voiceterm.core.lograte import RepeatSuppressor
from voiceterm.io.alsa import CAPTURE, AlsaPcm, AudioDeviceError, alsa_reason, describe_failure
from voiceterm.logs import kv

__all__ = ["JOIN_TIMEOUT_S", "DeviceWorker"]

log = logging.getLogger("voiceterm.audio")

JOIN_TIMEOUT_S = 2.0  # how long shutdown waits for a device thread to close its PCM


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
                    self._device_failed(alsa_reason(e))
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
