"""Compressed infer answers: an ``Accept-Encoding`` of gzip or deflate (tritonclient.http's
``response_compression_algorithm``) is answered with that ``Content-Encoding``, as Triton does.

``Inference-Header-Content-Length`` still gives the uncompressed JSON header's length: a client
inflates the body, then splits it (tritonclient, KServe's httpx and aiohttp all do). Small
answers go as they are: most clients (httpx, aiohttp) accept gzip on every request, and an
mlp's 600-byte answer compresses to nothing worth a compressor's call. So do answers that would
not shrink (an ``Accept-Encoding`` allows a coding, it does not demand one): a model's raw float
outputs are mostly noise to zlib (random FP32: 93 % of their size) and cost ~10 ms a MiB of a
core at level 1, for every httpx or aiohttp client that never asked; three 4 KiB samples decide.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib

# Answers from this size on are compressed when the client takes it; from OFF_LOOP_BYTES on,
# on a thread (level 1: a 4 MB JSON answer in ~20 ms, 3.5x smaller; a float tensor's raw bytes
# shrink little, but a client that asks is answered as it asked).
MIN_BYTES = 16 << 10
OFF_LOOP_BYTES = 1 << 20
_LEVEL = 1
_SAMPLE = 4 << 10
_WORTH = 0.85  # the samples must shrink to this share of their size for the answer to be coded


def response_coding(accept_encoding: str | None) -> str | None:
    """``gzip`` or ``deflate`` if ``accept_encoding`` takes it (q above 0; ``*`` counts), gzip
    first; None to answer uncompressed (also for a header that names neither)."""
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for part in accept_encoding.split(",")[:32]:
        coding, *params = part.split(";")
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0  # unreadable: not taken
        weights[coding.strip().lower()] = weight
    anything = weights.get("*", 0.0)
    for coding in ("gzip", "deflate"):
        if weights.get(coding, anything) > 0:
            return coding
    return None


def worth_compressing(body: bytes) -> bool:
    """Whether ``body`` shrinks enough to be worth coding, judged on three samples past its
    first quarter (a binary answer's JSON header, which always shrinks, is at its start)."""
    n = len(body)
    sample = b"".join(body[i : i + _SAMPLE] for i in (n // 4, n // 2, max(0, n - _SAMPLE)))
    return len(zlib.compress(sample, _LEVEL)) <= _WORTH * len(sample)


def _compress(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body, compresslevel=_LEVEL, mtime=0)
    return zlib.compress(body, _LEVEL)  # HTTP's deflate is the zlib format (RFC 9110 8.4.1.2)


async def encode_content(body: bytes, headers: dict[str, str], accept_encoding: str | None):
    """``body`` compressed as ``accept_encoding`` asks when it is at least MIN_BYTES and
    shrinks (its ``content-encoding`` and ``vary`` set in ``headers``), else ``body`` itself."""
    if len(body) < MIN_BYTES:
        return body
    coding = response_coding(accept_encoding)
    if coding is None:
        return body
    headers["vary"] = "Accept-Encoding"
    if not worth_compressing(body):
        return body
    if len(body) >= OFF_LOOP_BYTES:
        body = await asyncio.to_thread(_compress, body, coding)
    else:
        body = _compress(body, coding)
    headers["content-encoding"] = coding
    return body
