"""Callbacks sent beside the consumers: a receiver that is slow or hangs holds no consumer.

A delivery runs in a task of its own; the job is marked delivered once a 2xx came back, so one
cut short by a stop or a crash is sent again at the next start (``undelivered_callbacks``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from ..errors import TidegateError
from ..state import GatewayState
from . import callback
from .config import AsyncQueueSettings
from .jobs import Job, JobQueue

log = logging.getLogger("tidegate.async")


class CallbackSender:
    def __init__(
        self,
        queue: JobQueue,
        gateway: GatewayState,
        settings: AsyncQueueSettings,
        answer: Callable[[Job], Awaitable[bytes]],
        clock: Callable[[], float],
    ):
        self.queue, self.gateway, self.settings = queue, gateway, settings
        self._answer, self._clock = answer, clock
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._session = callback.new_session(self.settings.callback_allow_private)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def secret(self, tenant_name: str) -> str | None:
        tenant = self.gateway.tenants.get(tenant_name)
        own = tenant.settings.callback_secret if tenant is not None else None
        return own or self.settings.callback_secret

    def send(self, job: Job) -> None:
        """Deliver ``job``'s answer in the background."""
        task = asyncio.get_running_loop().create_task(self._send(job), name=f"callback-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, job: Job) -> None:
        secret = self.secret(job.tenant)
        if secret is None or self._session is None:
            log.error("callback for %s not sent: no signing secret", job.id)
            return
        try:
            job = dataclasses.replace(job, result=await self._answer(job))
        except TidegateError as exc:
            log.error("callback for %s not sent: %s", job.id, exc.message)
            return
        if await callback.deliver(
            self._session,
            job,
            secret,
            self._clock(),
            attempts=self.settings.callback_attempts,
            timeout_s=self.settings.callback_timeout_s,
            allow_private=self.settings.callback_allow_private,
        ):
            await self.queue.mark_callback_delivered(job.id)
