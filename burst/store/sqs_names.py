"""Which SQS queue carries a per-request tensor key (pure naming, no I/O).

One queue per request and per stage leg: ``req/R/s1/w2/in`` (the master's input for worker 2
of stage 1) and ``req/R/s1/w2/a1/out`` (that worker's answer) share ``{prefix}req_R_s1_w2_``;
the request's inputs use ``{prefix}req_R_`` and its outputs ``{prefix}resp_R_``. So a queue
holds a handful of messages that one request wrote, concurrent requests never share a queue,
and every queue of a request is found by a name prefix (``delete_prefix("req/R/")``).
"""

from __future__ import annotations

import hashlib
import re

from burst.store.base import check_key, check_prefix

REQUEST_PREFIXES = ("req/", "resp/")
QUEUE_NAME_MAX = 80  # SQS: 1-80 characters of [A-Za-z0-9_-]
_CHANNEL_SEGMENTS = 4  # req / request id / stage / worker
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9-]{1,36}")


# a per-request key ending so travels through the object store even where queues carry the
# others (a stage whose plan says "store": burst.tensors.send)
OBJECT_SUFFIX = ".obj"


def per_request(key: str) -> bool:
    return key.startswith(REQUEST_PREFIXES)


def object_key(key: str) -> str:
    return key if key.endswith(OBJECT_SUFFIX) else key + OBJECT_SUFFIX


def queued(key: str) -> bool:
    """Whether a queue store carries ``key`` (per-request, not marked for the object store)."""
    return per_request(key) and not key.endswith(OBJECT_SUFFIX)


def _segment(text: str) -> str:
    """A key segment as a queue-name part: itself when short and plain, else a digest (the
    same on every side, so names stay prefix-consistent with keys)."""
    if _PLAIN_SEGMENT.fullmatch(text):
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_queue_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{0,24}", prefix):
        raise ValueError(f"queue_prefix must be at most 24 of [A-Za-z0-9_-], got {prefix!r}")
    return prefix


def queue_name(queue_prefix: str, key: str) -> str:
    """The queue that carries per-request ``key``."""
    segments = check_key(key).split("/")[:-1][:_CHANNEL_SEGMENTS]
    name = queue_prefix + "".join(_segment(s) + "_" for s in segments)
    if len(name) > QUEUE_NAME_MAX:  # cannot happen with the limits above; fail loudly if it does
        raise ValueError(f"queue name for {key!r} is longer than {QUEUE_NAME_MAX}")
    return name


def queue_name_prefix(queue_prefix: str, prefix: str) -> str | None:
    """The queue-name prefix of every queue under key ``prefix`` (complete segments, ending in
    '/'), or None when ``prefix`` cannot name whole queues (then only the backing store holds
    its keys)."""
    check_prefix(prefix)
    if prefix == "":
        return queue_prefix
    if not prefix.endswith("/") or not per_request(prefix):
        return None
    segments = prefix[:-1].split("/")[:_CHANNEL_SEGMENTS]
    return queue_prefix + "".join(_segment(s) + "_" for s in segments)
