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
    """Counts the bytes of large answers a server sent; past ``after_bytes`` since the last
    trim, trims the heap on a thread, no sooner than ``min_interval_s`` after the last one
    (so the trim of a burst comes after its answers, not once per answer)."""

    def __init__(
        self,
        after_bytes: int = TRIM_AFTER_ANSWER_BYTES,
        min_interval_s: float = TRIM_MIN_INTERVAL_S,
    ):
        self.after_bytes = after_bytes
        self.min_interval_s = min_interval_s
        self.sent_bytes = 0  # large answers' bytes since the last trim
        self.trims = 0
        self._pending = False
        self._last_s = -1e18

    def sent(self, nbytes: int) -> None:
        if nbytes < LARGE_ANSWER_BYTES:
            return
        self.sent_bytes += nbytes
        if self.sent_bytes >= self.after_bytes and not self._pending:
            self._schedule()

    def _schedule(self) -> None:
        self._pending = True
        wait_s = max(0.0, self._last_s + self.min_interval_s - time.monotonic())
        try:
            asyncio.get_running_loop().call_later(wait_s, self._trim)
        except RuntimeError:  # no loop (a synchronous caller): trim now
            self._trim()

    def dropped(self) -> None:
        """A connection closed with an answer unread: its buffer is freed now (a trim when
        it was sent may have come before)."""
        if not self._pending:
            self._schedule()

    def _trim(self) -> None:
        self._pending, self.sent_bytes = False, 0
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
