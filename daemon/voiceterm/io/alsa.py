"""What the microphone and the speaker share of ALSA: opening a PCM by name with one-line errors, keeping
alsa-lib's own stderr chatter out of the journal, and the device listing for `voiceterm devices`.

The wall-clock pacers for unclocked PCMs are `io/alsa_pacing.py`; the device thread that owns a PCM and
reopens a vanished device with backoff is `io/audio_device_thread.py`. Blocking ALSA calls never run on the
trio thread, and the PCM's poll descriptors are never handed to trio (file PCMs poll on /dev/null, which
epoll refuses).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from voiceterm.logs import kv

log = logging.getLogger("voiceterm.audio")

CAPTURE = "capture"
PLAYBACK = "playback"

EPIPE = -errno.EPIPE  # pyalsaaudio >= 0.11: read()/write() return this on an overrun/underrun


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


def alsa_reason(exc: BaseException) -> str:
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
                error = AudioDeviceError(describe_open_error(kind, device, alsa_reason(e)))
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
            raise AudioDeviceError(describe_open_error(kind, device, alsa_reason(e))) from None
        info = pcm.info()
        self._pcm = pcm
        # The device's own read and write, bound here: a capture or playback thread calls one of them every
        # period, and the methods below would add a Python frame to each call.
        self.read = pcm.read  # type: ignore[method-assign]
        self.write = pcm.write  # type: ignore[method-assign]
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
