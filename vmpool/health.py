"""The pool's health machinery: replica probes and the boot-failure backoff."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp

from .provisioners.base import LIVE_STATES

if TYPE_CHECKING:
    from .pool import ReplicaPool

log = logging.getLogger("tidegate.pool")


class BootBackoff:
    """Keeps the desired count; a replica that keeps failing to boot is retried with
    exponential backoff instead of in a tight crash loop."""

    def __init__(self, pool: "ReplicaPool"):
        self.pool = pool
        self.backoff_s = pool.health_interval_s
        self.retry_at_s = 0.0
        self.failures_seen = 0

    async def keep_desired(self) -> None:
        pool = self.pool
        prov = pool.provisioner
        live = sum(r.state in LIVE_STATES and r.id not in pool._draining for r in prov.replicas())
        now = pool._clock()
        if live >= pool.desired or now < self.retry_at_s:
            return
        failures = prov.boot_failures
        if failures > self.failures_seen:
            log.warning("a replica failed to boot; retrying in %.0f s", self.backoff_s)
            self.backoff_s = min(self.backoff_s * 2, pool.max_boot_backoff_s)
        else:
            self.backoff_s = pool.health_interval_s
        self.failures_seen, self.retry_at_s = failures, now + self.backoff_s
        await prov.scale_to(pool.desired + len(pool._draining))


async def probe(session: aiohttp.ClientSession, url: str, raw: bool = False) -> bool:
    try:
        async with session.get(url if raw else url + "/v2/health/ready") as resp:
            return resp.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False
