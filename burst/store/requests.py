"""Billable store requests by kind, for the ledger: object-store PUT/LIST and GET classes, and
queue (SQS) requests, which cost a twelfth of a PUT and bill each started 64 KiB of a payload.

``CountingStore`` counts one object request per call on stores that bill per call. A store whose
calls are not one object request each (``burst.store.sqs``: a send, a receive, a queue made or
deleted, a claim check in its backing store) counts its own requests into the counter of the call
it serves (``count_queue``, ``count_objects``), found through a context variable so that it
reaches through wrappers (``burst.store.encrypted``) and concurrent sub-tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class StoreRequests:
    object_puts: int = 0  # PUT, and the LIST that finds a prefix's keys
    object_gets: int = 0
    queue_requests: int = 0  # billed SQS requests: each started 64 KiB of a payload is one
    self_counted: bool = False  # the store counted its own requests (no one-per-call default)


_CURRENT: ContextVar[StoreRequests | None] = ContextVar("tidegate_store_requests", default=None)


@contextmanager
def counting() -> Iterator[StoreRequests]:
    """The requests of the store call made inside the ``with``."""
    requests = StoreRequests()
    token = _CURRENT.set(requests)
    try:
        yield requests
    finally:
        _CURRENT.reset(token)


def count_queue(n: int = 1) -> None:
    """``n`` billed queue requests for the call being served (nothing outside ``counting``)."""
    requests = _CURRENT.get()
    if requests is not None:
        requests.queue_requests += n
        requests.self_counted = True


def count_objects(puts: int = 0, gets: int = 0) -> None:
    """Object-store requests a self-counting store made for the call being served."""
    requests = _CURRENT.get()
    if requests is not None:
        requests.object_puts += puts
        requests.object_gets += gets
        requests.self_counted = True
