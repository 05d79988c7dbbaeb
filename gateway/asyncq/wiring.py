"""What an async service is built from: its queue backend, payload codec and gauges."""

from __future__ import annotations

import weakref

from prometheus_client import Gauge

from burst.store.factory import make_store, with_default_roots

from .jobs import JobQueue
from .payload import PayloadCodec


def make_queue(settings) -> JobQueue:
    """The queue backend ``settings.async_queue.backend`` names."""
    backend = settings.async_queue.backend
    if backend == "redis":
        if not settings.redis_url:
            raise ValueError("async_queue.backend = 'redis' needs redis_url")
        from .redis_queue import RedisJobQueue, consumer_name

        return RedisJobQueue(
            settings.redis_url,
            result_ttl_s=settings.async_queue.result_ttl_s,
            consumer=consumer_name(settings.data_dir),
        )
    if backend == "sqs":
        from .sqs_queue import SqsJobQueue

        return SqsJobQueue(settings.async_queue.sqs, settings.data_dir / "async-queue.sqlite")
    from .sqlite_queue import SQLiteJobQueue

    return SQLiteJobQueue(settings.data_dir / "async-queue.sqlite")


def store_config(settings) -> dict:
    """The claim-check store: ``async_queue.store``, else the burst path's store (an SQS burst
    store's backing store: claim checks are objects). The codec seals payloads itself."""
    chosen = settings.async_queue.store or settings.burst.store
    cfg = chosen.as_config() if hasattr(chosen, "as_config") else dict(chosen)
    if cfg.get("kind") == "sqs":
        cfg = dict(cfg.get("backing") or {"kind": "dir"})
    cfg = with_default_roots(cfg, settings.data_dir / "objects")
    return {**cfg, "encrypt": False}


def make_payloads(settings) -> PayloadCodec:
    aq = settings.async_queue
    return PayloadCodec(make_store(store_config(settings)), aq.inline_limit_bytes, aq.encrypt)


_GAUGES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gauges(registry) -> tuple[Gauge, Gauge]:
    """The queue gauges of an app's registry (made once: a lifespan may start again)."""
    if registry not in _GAUGES:
        _GAUGES[registry] = (
            Gauge(
                "tidegate_async_queue_depth", "Async jobs by state.", ["state"], registry=registry
            ),
            Gauge(
                "tidegate_async_oldest_pending_seconds",
                "Age of the oldest pending async job.",
                registry=registry,
            ),
        )
    return _GAUGES[registry]
