"""Running a routed request on its path: a VM replica (through the pool), or the burst service
(one master invocation that forks its workers). Each answer comes back as an ``InferResult``
with its cost; failures become the gateway's errors, with the status a client should see."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from burst.exchange import BurstUnavailable
from burst.instance_gate import request_slo_ms
from policies.costs import function_cost_usd, store_cost_usd, vm_request_cost_usd
from vmpool.artifact import ModelConfig
from vmpool.client import ReplicaError
from vmpool.codec import InferRequest
from vmpool.codec_params import TimedInputs
from vmpool.pool import NoReplicaError

from .call import CallContext, InferResult
from .deferred import later
from .errors import BadRequest, GatewayTimeout, TidegateError, Unavailable

if TYPE_CHECKING:
    from .dispatch import Dispatcher


async def on_vm(
    d: Dispatcher,
    ctx: CallContext,
    cfg: ModelConfig,
    req: InferRequest,
    batch: int,
    predicted_ms: float | None = None,
    second_look=None,
) -> InferResult:
    start = time.perf_counter()
    inputs = req.inputs
    if req.parameters.get("timeout"):  # Triton's queue timeout (us): the replica applies it
        inputs = TimedInputs(inputs, time.monotonic() + req.parameters["timeout"] / 1e6)
    look = {"second_look": second_look} if second_look else {}  # (gateway/replica_look.py)
    try:
        answer = await d.pool.infer(
            cfg.name, inputs, request_id=ctx.request_id or None, timeout_s=d.vm_timeout_s, **look
        )
    except ReplicaError as exc:
        if exc.status == 504:
            raise GatewayTimeout(str(exc)) from None
        if 400 <= exc.status < 500:
            raise TidegateError(str(exc), exc.status) from None
        raise Unavailable(str(exc)) from None
    except NoReplicaError as exc:
        raise Unavailable(str(exc)) from None
    if d.live is not None:
        path_ms = (time.perf_counter() - start) * 1000.0  # boot wait and retries included
        later(ctx, _learn, d, cfg.name, batch, answer, predicted_ms, path_ms)
    cost = vm_request_cost_usd(d.prices, answer.service_ms, batch)
    return InferResult(answer.outputs, "vm", cost, timings_ms={"vm": answer.service_ms})


def _learn(d: Dispatcher, model: str, batch: int, answer, predicted_ms, path_ms: float) -> None:
    """What the live view learns from a VM answer (may wait until it is written)."""
    d.live.on_vm_answer(
        model,
        batch,
        answer.service_ms,
        answer.queued_ahead,
        predicted_ms,
        path_ms,
        reported=answer.batch,
    )


async def on_burst(
    d: Dispatcher, ctx: CallContext, cfg: ModelConfig, req: InferRequest, workers: int | None
) -> InferResult:
    workers = workers or d.default_workers
    live, answer, failed_after_ms = d.live, None, None
    token = live.burst_started(workers) if live is not None else None
    request_slo_ms.set(ctx.tenant.settings.slo_ms or cfg.slo_ms)  # the instance wait's SLO
    start = time.perf_counter()
    try:
        answer = await asyncio.wait_for(
            # no client id: the request's object-store keys must be its own (two clients
            # may send the same "id"), so the burst service makes a fresh one
            d.burst.infer(cfg.name, req.inputs, workers=workers, request_id=None),
            d.burst_timeout_s,
        )
    except asyncio.TimeoutError:
        failed_after_ms = (time.perf_counter() - start) * 1e3  # routing learns it (cold_start)
        raise GatewayTimeout(f"burst path did not answer in {d.burst_timeout_s:g} s") from None
    except BurstUnavailable as exc:
        failed_after_ms = (time.perf_counter() - start) * 1e3
        raise _burst_error(d, ctx, refusal_key(cfg.name, workers, req), exc) from None
    finally:
        if live is not None:
            live.burst_finished(
                cfg.name,
                answer.total_ms if answer else None,
                answer.cold_starts if answer else 0,
                token=token,
                failed_after_ms=failed_after_ms,
            )
    d.no_burst.discard(cfg.name)
    d.no_burst.discard(refusal_key(cfg.name, workers, req))
    fn_cost = function_cost_usd(d.prices, answer.invocations)
    st_cost = store_cost_usd(d.prices, answer.store_puts, answer.store_gets, answer.queue_requests)
    return InferResult(
        answer.outputs,
        "burst",
        fn_cost + st_cost,
        workers=answer.workers,
        cold_starts=answer.cold_starts,
        function_cost_usd=fn_cost,
        store_cost_usd=st_cost,
        billed_ms=sum(ms for ms, _ in answer.invocations),
        timings_ms={"burst": answer.total_ms, "comm": answer.comm_ms},
    )


def refusal_key(model: str, workers: int, req: InferRequest) -> tuple[str, int, int]:
    """What a plan the burst path refused was asked for: the model, its workers and batch."""
    batch = int(next(iter(req.inputs.values())).shape[0]) if req.inputs else 1
    return (model, workers, batch)


def _burst_error(
    d: Dispatcher, ctx: CallContext, key: tuple[str, int, int], exc: BurstUnavailable
) -> TidegateError:
    """The gateway's error for a burst path that could not take the request: a refusal
    (``exc.refused``: the graph or the plan, not an outage) is remembered, so routing sends the
    model's requests to the VMs until a burst of it runs: all of them for a graph it cannot
    run (``model_wide``), those asking for the same workers and batch for a plan that fits no
    function. Forced there, no retry can help: a client error."""
    if exc.bad_input:  # the request's own values (ids past an embedding table): a client error
        return BadRequest(str(exc))
    if exc.refused:
        d.no_burst.add(key[0] if exc.model_wide else key)
        if ctx.forced_route:
            return BadRequest(f"{exc}; send it without X-Tidegate-Route: burst")
    retry_s = exc.retry_after_s
    return Unavailable(
        str(exc), headers={"Retry-After": str(max(1, round(retry_s)))} if retry_s else None
    )
