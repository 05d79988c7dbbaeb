"""Async inference: accept a request into the durable queue, serve it when VMs have room.

``POST .../infer`` with ``Prefer: respond-async`` is validated and admitted (tenant, rate
limit, quota) as a synchronous call would be, written to the queue (durable before the 202),
and answered ``202`` with ``Location: /v2/requests/{id}``. Consumers take jobs only while the
ready VM replicas have spare slots, run them through ``Dispatcher.infer`` on the VM path, and
record the answer (status, body, headers, exactly what the synchronous call would have given).
The first recorded answer wins, so a job served twice after a crash still has one result.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import orjson

from policies.routing.async_class import serve_now
from vmpool.codec import CodecError, validate_inputs

from .. import protocol
from ..errors import BadRequest, NotFound, TidegateError
from ..model_version import find_model
from ..state import GatewayState
from . import callback, placement, serve
from .callback_sender import CallbackSender
from .capacity import Claim, VmShare
from .config import AsyncQueueSettings
from .idempotency import IDEMPOTENCY_HEADER, body_digest, first_request_id, idempotent_id
from .jobs import Job, JobQueue, JobState, QueueStats
from .payload import Part, PayloadCodec
from .wiring import gauges as _gauges
from .wiring import make_payloads, make_queue

log = logging.getLogger("tidegate.async")
REQUESTS_PATH = "/v2/requests/"
CALLBACK_HEADER = "x-tidegate-callback"
_POLL_S = 0.02  # how often a consumer waiting for VM capacity looks again
_HOUSEKEEPING_S = 1.0


def wants_async(prefer: str | None) -> bool:
    """``Prefer: respond-async`` (RFC 7240; other preferences may sit beside it)."""
    if not prefer:
        return False
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in prefer.split(","))


class AsyncService:
    def __init__(
        self,
        queue: JobQueue,
        gateway: GatewayState,
        settings: AsyncQueueSettings,
        clock=time.time,
        payloads: PayloadCodec | None = None,
    ):
        self.queue = queue
        # payloads at rest: sealed per request, large ones through the object store
        self.payloads = payloads or PayloadCodec(None, settings.inline_limit_bytes, False)
        self.gateway = gateway
        self.settings = settings
        self.clock = clock
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.callbacks = CallbackSender(queue, gateway, settings, self.answer, clock)
        self.depth, self.oldest_age = _gauges(gateway.metrics.registry)
        self.stats = QueueStats(0, 0, 0.0)  # as housekeeping last measured it
        # the tightest deadline any tenant's jobs have: past its urgent share, jobs stop waiting
        self.min_deadline_s = placement.min_deadline_s(gateway.settings.tenants, settings)
        self.share = VmShare(gateway, settings)  # interactive requests have the VMs first

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        taken_back = await self.queue.requeue_running()
        if taken_back:
            log.warning(
                "async queue: %d job(s) held by the previous process are pending again", taken_back
            )
        self.callbacks.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._consume(i), name=f"async-consumer-{i}")
            for i in range(self.settings.consumers)
        ]
        self._tasks.append(loop.create_task(self._housekeeping(), name="async-housekeeping"))
        for task in self._tasks:
            task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        """Consumers stop; jobs they were serving stay RUNNING and are retried at next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.callbacks.stop()
        await self.queue.close()
        await self.payloads.close()

    # -- HTTP side -----------------------------------------------------------------------------

    async def submit(
        self, headers: dict[str, str], model: str, version: str | None, read_body
    ) -> tuple[bytes, dict[str, str]]:
        """Validate, admit and enqueue; the 202 body and headers. ``read_body()`` reads the
        request body within the endpoint's limits."""
        dispatcher = self.gateway.require_dispatcher()
        tenant = dispatcher.tenants.authenticate(
            headers.get("authorization"), headers.get("x-api-key")
        )
        # 403 before the model is looked up or the body read or checked (HTTP infer's order)
        dispatcher.tenants.check_model(tenant, model)
        cfg = find_model(dispatcher, model, version)
        version = version and cfg.version  # as found: "01" is version "1", as on the sync path
        if headers.get("x-tidegate-route") or headers.get("x-tidegate-workers"):
            raise BadRequest(
                "async requests are served on the VM path; drop X-Tidegate-Route "
                "and X-Tidegate-Workers"
            )
        callback_url = headers.get(CALLBACK_HEADER)
        if callback_url is not None:
            callback.check_callback_url(callback_url, self.settings.callback_allow_private)
            if self.callbacks.secret(tenant.name) is None:
                raise BadRequest(
                    "callbacks need a signing secret: set the tenant's "
                    "callback_secret (or async_queue.callback_secret)"
                )
        body = await read_body()
        key = headers.get(IDEMPOTENCY_HEADER)
        job_id = idempotent_id(tenant.name, key) if key else uuid.uuid4().hex
        if key and (earlier := await self.queue.get(job_id)) is not None:
            return await self._retry(earlier, body, headers, cfg.name)
        header_length = protocol.header_length(headers)
        req = protocol.decode_infer(body, header_length)
        try:  # bad input is a 400 now, not a failed job later
            validate_inputs(req, cfg)
        except CodecError as exc:
            raise BadRequest(str(exc)) from None
        await dispatcher.tenants.admit(tenant, route_override=False, model=cfg.name)
        sealed = await self.payloads.pack(job_id, Part.REQUEST, body, self.payloads.new_key())
        job = Job(
            id=job_id,
            tenant=tenant.name,
            model=cfg.name,
            version=version,
            body=sealed,
            header_length=header_length,
            created_s=self.clock(),
            callback_url=callback_url,
            body_sha256=body_digest(body),
        )
        if await self.queue.put(job):
            self._wakeup.set()
            return _accepted(job.id, job.state, req.id or job.id)
        await self.payloads.discard(sealed)  # the same key raced us: its job stands (or a 422)
        earlier = await self.queue.get(job_id)
        if earlier is None:  # (already served, expired and purged)
            return _accepted(job.id, job.state, req.id or job.id)
        return await self._retry(earlier, body, headers, cfg.name)

    async def _retry(self, earlier: Job, body: bytes, headers: dict[str, str], model: str):
        """A retry: the same job, not a new one, and the first request's id (422 for a key
        sent again with another request)."""
        request_id = await first_request_id(self.payloads, earlier, body, headers, model)
        return _accepted(earlier.id, earlier.state, request_id)

    def takes(self, headers: dict[str, str], model: str, version: str | None) -> bool:
        """Whether an infer call goes to the queue: ``Prefer: respond-async``, or a tenant of
        the async SLO class whose deadline the queue meets (placement.py)."""
        return wants_async(headers.get("prefer")) or placement.queues(
            self.gateway, self.settings, headers, model, version
        )

    async def lookup(self, job_id: str, headers: dict[str, str]) -> Job:
        """The caller's job (404 for an unknown id or another tenant's)."""
        dispatcher = self.gateway.require_dispatcher()
        tenant = dispatcher.tenants.authenticate(
            headers.get("authorization"), headers.get("x-api-key")
        )
        job = await self.queue.get(job_id)
        if job is None or job.tenant != tenant.name:
            raise NotFound(f"no async request {job_id!r} (unknown, expired or deleted)")
        return job

    async def cancel(self, job_id: str, headers: dict[str, str]) -> JobState:
        """DELETE: cancel a pending/running job, or drop a finished one's result."""
        job = await self.lookup(job_id, headers)
        if job.state.finished:
            await self.queue.delete(job_id)
            await self.payloads.discard_job(job_id)
            return job.state
        before = await self.queue.cancel(job_id)
        if before is None:
            raise NotFound(f"no async request {job_id!r}")
        await self.payloads.discard(job.body)
        return JobState.CANCELLED

    async def answer(self, job: Job) -> bytes:
        """A finished job's answer, unsealed (PayloadError, a 500, if it was tampered with)."""
        return await self.payloads.unpack(job.id, Part.RESULT, job.result or b"")

    # -- consumers -----------------------------------------------------------------------------

    def _urgent(self) -> bool:
        """The oldest job is past the urgent share of the tightest deadline: serve it now."""
        return self.stats.pending > 0 and serve_now(
            self.stats.oldest_pending_age_s, self.min_deadline_s, self.settings.urgent_fraction
        )

    async def _wait_for_capacity(self) -> None:
        """Poll every 20 ms while jobs wait; with none queued (as of the last look, and no
        submit since), sleep until a submit or the next housekeeping pass instead: 16 idle
        consumers polling the share 50 times a second each cost the interactive path ~7 % of
        the gateway's CPU while the VMs were busy."""
        if self.stats.pending or self._wakeup.is_set():
            await asyncio.sleep(_POLL_S)
            return
        try:
            await asyncio.wait_for(self._wakeup.wait(), _HOUSEKEEPING_S)
        except asyncio.TimeoutError:
            pass

    async def _consume(self, index: int) -> None:
        while True:
            while not (self.share.may_take() or self._urgent()):
                await self._wait_for_capacity()
            claim = self.share.take()  # counted before the first await: others see it
            try:
                job = await self.queue.claim(self.clock(), self.settings.lease_s)
            except BaseException:
                claim.done()
                raise
            if job is None:
                claim.done()
                self._wakeup.clear()
                try:  # a submit wakes us; the timeout catches leases that ran out
                    await asyncio.wait_for(self._wakeup.wait(), _HOUSEKEEPING_S)
                except asyncio.TimeoutError:
                    pass
                continue
            await self._serve(job, claim)

    async def _serve(self, job: Job, claim: Claim) -> None:
        dispatcher = self.gateway.require_dispatcher()
        try:
            body = await self.payloads.unpack(job.id, Part.REQUEST, job.body)
            outcome = await serve.run(dispatcher, job, body, on_dispatch=claim.dispatched)
        except TidegateError as exc:  # the payload: tampered with, or its object gone
            outcome = serve.failed(job, exc)
        finally:
            claim.done()  # the pool answered: its row is gone
        # the path is down for now, or the model is not loaded right now (an unload then a
        # load: jobs accepted before it were all a final 404): try again later
        gone = isinstance(outcome.error, NotFound)
        if (outcome.status == 503 or gone) and job.attempts < self.settings.max_attempts:
            await asyncio.sleep(self.settings.retry_delay_s)
            await self.queue.release(job.id)
            self._wakeup.set()
            return
        key = self.payloads.key_of(job.body) or self.payloads.new_key()
        result = await self.payloads.pack(job.id, Part.RESULT, outcome.body, key)
        recorded = await self.queue.finish(
            job.id, outcome.state, outcome.status, result, outcome.headers, self.clock()
        )
        # the request's object is not needed once answered; a losing answer's object goes too
        await self.payloads.discard(job.body if recorded else result)
        if recorded and job.callback_url:
            done = await self.queue.get(job.id)
            if done is not None:
                self.callbacks.send(done)

    async def _housekeeping(self) -> None:
        """Expire old results, redeliver callbacks a crash interrupted, export queue metrics."""
        for job in await self.queue.undelivered_callbacks():
            self.callbacks.send(job)
        while True:
            try:
                await self._tick()
            except Exception as exc:  # a store or queue outage: the next tick tries again
                log.warning("async housekeeping failed (trying again): %s", exc)
            await asyncio.sleep(_HOUSEKEEPING_S)

    async def _tick(self) -> None:
        now_s = self.clock()
        await self.queue.purge(now_s - self.settings.result_ttl_s, self.payloads.discard_expired)
        self.stats = stats = await self.queue.stats(now_s)
        self.depth.labels("pending").set(stats.pending)
        self.depth.labels("running").set(stats.running)
        self.oldest_age.set(stats.oldest_pending_age_s)
        live = self.gateway.dispatcher.live if self.gateway.dispatcher else None
        if live is not None:  # routing and autoscaling see the queue (QueueState)
            live.on_queue_stats(
                stats.pending, stats.running, stats.oldest_pending_age_s, self.settings.consumers
            )


async def start_for_gateway(gateway: GatewayState) -> AsyncService | None:
    """The async service a gateway's settings ask for, started (None when disabled)."""
    settings = gateway.settings.async_queue
    if not settings.enabled:
        return None
    service = AsyncService(
        make_queue(gateway.settings), gateway, settings, payloads=make_payloads(gateway.settings)
    )
    await service.start()
    return service


def _accepted(job_id: str, state: JobState, request_id: str):
    location = REQUESTS_PATH + job_id
    answer = orjson.dumps(
        {"id": job_id, "state": state.value, "location": location, "request_id": request_id}
    )
    return answer, {
        "content-type": "application/json",
        "location": location,
        "preference-applied": "respond-async",
        "x-request-id": job_id,
    }


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("async queue task %s crashed", task.get_name(), exc_info=task.exception())
