"""Reading request bodies from ASGI with bounds: per-request size, bytes in flight, time.

One reader for the gateway and the model server. A body is refused with 413 past the per-request
limit, with 503 + ``Retry-After`` when the bytes of all bodies in flight would pass the budget
(every body counts: a small one, up to 64 KiB, by its declared length from before its first
byte, a larger one by the bytes it has sent, so clients that declare 64 MB and send a byte cannot
hold the budget, while a declared length that would not fit beside what has come is refused
before its first byte; large ones may not take the budget's last sixteenth, kept for small
requests), and with 408 when it does
not arrive within the body timeout (a client that declared a large body and went silent is
answered and its connection closed). Memory goes back to the system
after large bodies (glibc keeps freed heap pages otherwise: after a flood of 60 MiB bodies the
gateway stayed at 4.3 GB, issue 9).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
import zlib

from vmpool.wire import CodecError, too_large_message

log = logging.getLogger("tidegate.body")
_CLOSE = {"connection": "close"}  # the rest of the refused body may still be on its way
# Bodies up to this size are small: they may use the whole budget, while larger ones leave its
# last sixteenth to them (a budget full of large bodies must not starve small requests). Every
# body counts: uncounted 64 KiB bodies let slow clients hold any number of them (issue: 0.08 MB
# budget, two 60 KB bodies in flight).
SMALL_BODY_BYTES = 64 << 10
SMALL_RESERVE_FRACTION = 1 / 16
TRIM_AFTER_BYTES = 32 << 20  # malloc_trim once this many body bytes were released since the last
_TRIM_MIN_INTERVAL_S = 1.0


class ClientGone(Exception):
    """The client disconnected before sending its whole request."""


class BodyBudget:
    """Bytes of request bodies in flight across the requests of one process (one event loop).

    ``limit_bytes=None`` means no cross-request bound (each body still has its own limit)."""

    def __init__(self, limit_bytes: int | None, *, retry_after_s: int = 1):
        self.limit_bytes = limit_bytes
        # what large bodies may fill (the rest is for small ones: SMALL_BODY_BYTES)
        self.large_limit_bytes = (
            None if limit_bytes is None else int(limit_bytes * (1 - SMALL_RESERVE_FRACTION))
        )
        self.retry_after_s = retry_after_s
        self.in_flight_bytes = 0
        self.peak_bytes = 0
        self.refused = 0
        self._released_since_trim = 0
        self._last_trim_s = 0.0
        self._trim_pending = False

    def lease(self) -> BodyLease:
        return BodyLease(self)

    def _take(self, size: int, body_bytes: int) -> None:
        """Count ``size`` more bytes of a body that then holds ``body_bytes``; 503 past the
        budget (a body alone is let through: its own limit bounds it)."""
        self._check(size, body_bytes)
        self.in_flight_bytes += size
        if self.in_flight_bytes > self.peak_bytes:
            self.peak_bytes = self.in_flight_bytes

    def _check(self, size: int, body_bytes: int) -> None:
        limit = self.limit_bytes
        if limit is not None and body_bytes > SMALL_BODY_BYTES:
            limit = self.large_limit_bytes
        # the bytes other requests hold: a body alone in flight is never refused for its own
        # earlier chunks (a lone body over the budget but within its own limit was a 503)
        others = self.in_flight_bytes - (body_bytes - size)
        if limit is not None and self.in_flight_bytes + size > limit and others > 0:
            self.refused += 1
            raise CodecError(
                f"the server is receiving {self.in_flight_bytes} bytes of request bodies, "
                f"its limit is {limit}: retry shortly",
                503,
                {"retry-after": str(self.retry_after_s), **_CLOSE},
            )

    def _give(self, size: int) -> None:
        self.in_flight_bytes -= size
        if size <= SMALL_BODY_BYTES:
            return  # small bodies' memory is reused by the next ones: no trim for them
        self._released_since_trim += size
        if self._released_since_trim >= TRIM_AFTER_BYTES and not self._trim_pending:
            self._trim_pending = True
            wait_s = self._last_trim_s + _TRIM_MIN_INTERVAL_S - time.monotonic()
            try:
                asyncio.get_running_loop().call_later(max(0.0, wait_s), self._trim)
            except RuntimeError:  # no loop (a synchronous caller): trim now
                self._trim()

    def _trim(self) -> None:
        """Give freed heap back, off the event loop (trimming a large heap takes milliseconds)."""
        self._trim_pending = False
        self._last_trim_s, self._released_since_trim = time.monotonic(), 0
        try:
            asyncio.get_running_loop().run_in_executor(None, release_memory)
        except RuntimeError:
            release_memory()


class BodyLease:
    """The bytes one request holds in a ``BodyBudget``; ``release()`` when the request is done."""

    __slots__ = ("budget", "bytes")

    def __init__(self, budget: BodyBudget):
        self.budget = budget
        self.bytes = 0

    def take(self, size: int) -> None:
        self.budget._take(size, self.bytes + size)
        self.bytes += size

    def admit(self, declared: int) -> None:
        """503 before a byte is read when the bytes in flight and ``declared`` more would
        pass the budget; nothing is held until the bytes come (``take``)."""
        self.budget._check(declared, declared)

    def release(self) -> None:
        if self.bytes:
            self.budget._give(self.bytes)
            self.bytes = 0


async def read_body(
    receive,
    content_length: bytes | str | None,
    limit_bytes: int,
    lease: BodyLease | None = None,
    timeout_s: float | None = None,
) -> bytes:
    """The whole body from an ASGI ``receive``, within ``limit_bytes`` and ``timeout_s``.

    ``content_length`` is the raw header (None for a chunked upload). Raises CodecError with
    413/503/408/400 (and ``connection: close``), or ClientGone."""
    declared = None
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise CodecError("invalid Content-Length", 400, dict(_CLOSE)) from None
        if declared > limit_bytes:
            raise CodecError(too_large_message(limit_bytes, declared), 413, dict(_CLOSE))
        if lease is not None and declared and declared <= SMALL_BODY_BYTES:
            lease.take(declared)  # before a byte: a slow client's small body counts whole
            lease = None  # (its bytes are counted)
        elif lease is not None and declared:
            lease.admit(declared)  # 503 now if what has come and this body would not fit
    message = await _receive(receive, timeout_s, time.monotonic())
    first = message.get("body", b"")
    if not message.get("more_body", False):  # the common case: one message, no copy
        if len(first) > limit_bytes:
            raise CodecError(too_large_message(limit_bytes), 413, dict(_CLOSE))
        if lease is not None and first:
            lease.take(len(first))
        return first
    return await _read_rest(receive, first, declared, limit_bytes, lease, timeout_s)


# Content-Encoding -> zlib's wbits (tritonclient's request_compression_algorithm sends these)
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_content(
    body: bytes, encoding: str | None, limit_bytes: int, lease: BodyLease | None = None
) -> bytes:
    """``body`` with its ``Content-Encoding`` (gzip or deflate, as Triton takes) undone,
    within ``limit_bytes`` once inflated (413 past it: a small bomb must not fill memory);
    415 for another coding, 400 for bytes that do not inflate."""
    if encoding is None:
        return body
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise CodecError(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none",
            415,
        )
    if coding == "deflate" and body[:1] and body[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate, as some clients send it
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit_bytes + 1)
    except zlib.error as exc:
        raise CodecError(f"request body is not valid {coding} data ({exc})") from None
    if len(out) > limit_bytes or inflater.unconsumed_tail:
        raise CodecError(
            f"request body inflates past the limit: {too_large_message(limit_bytes)}", 413
        )
    if not inflater.eof:
        raise CodecError(f"request body is truncated {coding} data")
    if inflater.unused_data:  # (they were dropped: the body was its first stream alone)
        raise CodecError(
            f"request body has {len(inflater.unused_data)} bytes after its {coding} data "
            f"(send one {coding} stream)"
        )
    if lease is not None:
        lease.take(len(out))
    return out


async def _read_rest(
    receive,
    first: bytes,
    declared: int | None,
    limit_bytes: int,
    lease: BodyLease | None,
    timeout_s: float | None,
) -> bytes:
    started = time.monotonic()
    if declared is not None:
        # One buffer of the declared size (no list of chunks and no join: half the peak memory;
        # its pages are the kernel's zero pages until written, so it costs what has come)
        buffer, filled = bytearray(declared), 0
        chunk = first
        while True:
            end = filled + len(chunk)
            if end > declared:
                raise CodecError(
                    f"request body is longer than its Content-Length {declared}", 400, dict(_CLOSE)
                )
            if lease is not None and chunk:
                lease.take(len(chunk))
            buffer[filled:end] = chunk
            filled = end
            message = await _receive(receive, timeout_s, started)
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                end = filled + len(chunk)
                if end != declared:
                    raise CodecError(
                        f"request body has {end} bytes but its Content-Length is {declared}",
                        400,
                        dict(_CLOSE),
                    )
                if lease is not None and chunk:
                    lease.take(len(chunk))
                buffer[filled:end] = chunk
                return buffer
    chunks, total = [first], len(first)
    if lease is not None:
        lease.take(len(first))
    while True:
        message = await _receive(receive, timeout_s, started)
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit_bytes:
            raise CodecError(too_large_message(limit_bytes), 413, dict(_CLOSE))
        if lease is not None:
            lease.take(len(chunk))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _receive(receive, timeout_s: float | None, started_s: float) -> dict:
    if timeout_s is None:
        message = await receive()
    else:
        remaining = started_s + timeout_s - time.monotonic()
        if remaining <= 0:
            raise _too_slow(timeout_s)
        # asyncio.timeout's logic with one timer and no context object (a tenth of the
        # gateway's body-read time per request): the timer cancels the task; a cancellation
        # it caused (and only that one) becomes the 408
        task = asyncio.current_task()
        fired: list[bool] = []
        timer = task.get_loop().call_later(remaining, _cancel_for_timeout, task, fired)
        try:
            message = await receive()
        except asyncio.CancelledError:
            if fired and task.uncancel() == 0:
                raise _too_slow(timeout_s) from None
            raise
        finally:
            timer.cancel()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    return message


def _cancel_for_timeout(task: asyncio.Task, fired: list[bool]) -> None:
    fired.append(True)
    task.cancel()


def _too_slow(timeout_s: float) -> CodecError:
    return CodecError(f"the request body did not arrive within {timeout_s:g} s", 408, dict(_CLOSE))


_libc = None


def release_memory() -> bool:
    """Hand freed heap pages back to the system (glibc ``malloc_trim``); False elsewhere."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if not _libc or not hasattr(_libc, "malloc_trim"):
        return False
    return bool(_libc.malloc_trim(0))
