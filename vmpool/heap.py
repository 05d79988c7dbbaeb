"""glibc's ``malloc_trim``: the heap a process freed, back to the system (``gateway/memory.py``
says why; the model server trims once its models are loaded).

Large answers are trimmed after too (``answer_sent``). Servers run with ``tune_allocator``
(``ops/process_tuning.py``): buffers up to 64 MiB live on the heap and glibc gives its top back
only past 256 MiB free, so the pages of a burst of large answers stayed resident once it was
over. Measured (gateway, 120 resnet18 batch-64 requests, JSON and binary, clients closing
before reading): RSS 281 MB before, 396 MB after and still 396 MB after a quiet minute; a trim
gave 31 MB of it back at once. Request bodies have their own trim (``vmpool/body.py``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time

LARGE_ANSWER_BYTES = 64 << 10  # smaller answers' memory is reused by the next ones
TRIM_AFTER_ANSWER_BYTES = 8 << 20  # trim once this many bytes of large answers went out
TRIM_MIN_INTERVAL_S = 1.0  # at most one trim a second (it walks every arena)


def trim_heap() -> bool | None:
    """``malloc_trim(0)``: True if memory went back to the system, None without glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to do
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


class AnswerTrim:
    """Counts the bytes of large answers a server sent and trims the heap on a thread after
    them: once ``after_bytes`` went since the last trim (no sooner than ``min_interval_s``
    after it), or once ``min_interval_s`` passed without a large answer (the end of a burst)."""

    def __init__(
        self,
        after_bytes: int = TRIM_AFTER_ANSWER_BYTES,
        min_interval_s: float = TRIM_MIN_INTERVAL_S,
    ):
        self.after_bytes = after_bytes
        self.min_interval_s = min_interval_s
        self.sent_bytes = 0  # large answers' bytes since the last trim
        self.trims = 0
        self._pending: asyncio.AbstractEventLoop | None = None  # the loop a trim waits on
        self._last_s = -1e18
        self._last_sent_s = -1e18

    def sent(self, nbytes: int) -> None:
        if nbytes < LARGE_ANSWER_BYTES:
            return
        self.sent_bytes += nbytes
        self._last_sent_s = time.monotonic()
        if not self._is_pending():
            self._schedule()

    def _schedule(self) -> None:
        wait_s = max(0.0, self._last_s + self.min_interval_s - time.monotonic())
        try:
            self._pending = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): trim now
            self._trim()
            return
        self._pending.call_later(wait_s, self._trim)

    def dropped(self) -> None:
        """A connection closed with an answer unread: its buffer is freed now (a trim when
        it was sent may have come before)."""
        if not self._is_pending():
            self._schedule()

    def _is_pending(self) -> bool:
        """A trim is scheduled on a loop that still runs (one a test ended never fires)."""
        return self._pending is not None and not self._pending.is_closed()

    def _trim(self) -> None:
        # a burst's last answers (and the requests that asked for them) are freed after the
        # trim its first ones brought: below ``after_bytes``, the trim waits for a quiet
        # interval, so that it comes after them
        quiet_s = self._last_sent_s + self.min_interval_s - time.monotonic()
        if self.sent_bytes < self.after_bytes and quiet_s > 0:
            try:
                asyncio.get_running_loop().call_later(quiet_s, self._trim)
                return
            except RuntimeError:
                pass
        self._pending, self.sent_bytes = None, 0
        self._last_s = time.monotonic()
        self.trims += 1
        try:
            asyncio.get_running_loop().run_in_executor(None, trim_heap)
        except RuntimeError:
            trim_heap()


# one per process: the heap is the process's (the gateway's and the model server's protocols)
ANSWERS = AnswerTrim()


def answer_sent(nbytes: int) -> None:
    """An answer of ``nbytes`` went to the transport (it frees the buffer once it is sent)."""
    ANSWERS.sent(nbytes)


def answer_dropped() -> None:
    """A connection closed with an answer it had not read (its buffer is freed now)."""
    ANSWERS.dropped()
