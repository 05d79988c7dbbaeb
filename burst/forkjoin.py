"""One split stage of a request, run by the master: fork the legs, join, stitch.

The master runs leg 0 itself while the other legs run in their worker functions (n-1
invocations per stage instead of n, and the master's core is not idle during the stage). A leg
that straggles past what the stage's legs usually take is hedged (``burst.hedge``). An instance
that crashed is retried by the invoker (``burst.faas.lambda_wire.retry_invoke_on``).

On the local runtime the master computes leg 0 on its event loop once the remote legs' requests
are sent (``_own_leg``): a hedge's timer then fires at the earliest when leg 0 is done, which is
no loss, since the stage cannot end before leg 0 either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
import torch

from burst.execute import run_worker_stage, stitch, worker_input
from burst.faas.base import InvokeError
from burst.hedge import LegTimes, hedged
from burst.packed_conv import packing
from burst.plan import worker_function_name
from burst.plan_schema import stage_transport
from burst.report import LegBill, StageReport
from burst.tensors import receive, send


# the longest the master waits for its remote legs' requests to be sent before its own leg
SEND_WAIT_S = 0.5


class StageFailed(Exception):
    """A leg of a split stage failed (after retries and hedges)."""


@dataclass
class ForkJoin:
    """What the stages of one request share."""

    plan: object
    graph: object
    invoker: object
    store: object
    request_id: str
    leg_times: LegTimes
    leg_weights: Callable[[int, int], Awaitable[dict]]  # (stage, worker) -> its weight slice
    extra_event: dict  # fields every worker event carries (the request's tensor key)
    master_leg: bool = True


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def compute_leg(graph, stage, worker: int, x, weights):
    with torch.no_grad(), packing(stage.packed):  # convs packed as the plan says
        return run_worker_stage(graph, stage, worker, x, weights)


async def _send_inputs(fj: ForkJoin, stage, x, first_remote: int) -> tuple[dict, float]:
    """Each remote leg's input window as a tensor ref; ({worker: ref}, send_ms)."""
    t0 = time.perf_counter()
    refs = {
        j: await send(
            worker_input(stage, j, x),
            fj.store,
            f"req/{fj.request_id}/s{stage.index}/w{j}/in",
            transport=stage_transport(fj.plan, stage),
            limit_bytes=fj.plan.inline_limit_bytes,
        )
        for j in range(first_remote, stage.workers)
    }
    return refs, _ms(t0)


def _raise_failures(stage, refs: dict, results: list) -> None:
    """StageFailed naming the first failed worker, if any leg failed."""
    failures = [(j, r) for j, r in zip(refs, results, strict=True) if isinstance(r, BaseException)]
    if failures:
        j, err = failures[0]
        kind = err.kind if isinstance(err, InvokeError) else type(err).__name__
        raise StageFailed(
            f"stage {stage.index}: {len(failures)} of {len(results)} workers "
            f"failed; worker {j}: {kind}: {err}"
        ) from err


async def _all_sent(legs: list, sent: list, timeout_s: float = SEND_WAIT_S) -> None:
    """Until every remote leg's request is on the wire (or its task ended, or ``timeout_s``)."""
    pairs = [
        (asyncio.ensure_future(ev.wait()), leg)
        for ev, leg in zip(sent, legs, strict=True)
        if not ev.is_set() and not leg.done()
    ]
    pending = {t for pair in pairs for t in pair}
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while any(not w.done() and not leg.done() for w, leg in pairs):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            _, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
    finally:
        for w, _ in pairs:
            w.cancel()


async def _own_leg(fj: ForkJoin, stage, x, legs: list, sent: list) -> tuple[object, float]:
    """The master's leg 0: (output, compute ms). With an invoker that says when a request is
    sent, it computes on the loop once every remote leg is on its way (no thread to fight the
    loop for the GIL while it sends; nothing else runs in the master meanwhile, and answers
    wait in their sockets); otherwise in a thread beside the loop."""
    weights = await fj.leg_weights(stage.index, 0)
    inline = getattr(fj.invoker, "signals_sent", False)
    if inline:
        await _all_sent(legs, sent)
    t_own = time.perf_counter()
    leg_x = worker_input(stage, 0, x, copy=False)
    if inline:
        out = compute_leg(fj.graph, stage, 0, leg_x, weights)
    else:
        out = await asyncio.to_thread(compute_leg, fj.graph, stage, 0, leg_x, weights)
    return out, _ms(t_own)


async def run_stage(fj: ForkJoin, stage, env: dict) -> StageReport:
    t_stage = time.perf_counter()
    x = env[stage.input]
    first_remote = 1 if fj.master_leg else 0
    refs, send_ms = await _send_inputs(fj, stage, x, first_remote)
    t0 = time.perf_counter()
    sent = [asyncio.Event() for _ in refs]
    legs = [
        asyncio.ensure_future(_remote_leg(fj, stage, j, ref, ev))
        for (j, ref), ev in zip(refs.items(), sent)
    ]
    own_out, own_compute_ms, own_start_ms = None, None, 0.0
    try:
        if fj.master_leg:
            own_out, own_compute_ms = await _own_leg(fj, stage, x, legs, sent)
            own_start_ms = _ms(t_stage) - own_compute_ms
        own_end_ms = _ms(t0)  # the master then waits on its remote legs
        results = await asyncio.gather(*legs, return_exceptions=True)
    except BaseException:
        for leg in legs:
            leg.cancel()
        raise
    invoke_ms = _ms(t0)
    _raise_failures(stage, refs, results)
    t0 = time.perf_counter()
    bodies = [body for body, _, _ in results]
    outs = ([own_out] if fj.master_leg else []) + [
        await receive(b["output"], fj.store) for b in bodies
    ]
    recv_ms = _ms(t0)
    t0 = time.perf_counter()
    shape = list(x.shape[:1]) + list(fj.graph.node(stage.output).shape[1:])
    env[stage.output] = stitch(stage, outs, shape)
    stitch_ms = _ms(t0)
    compute = ([own_compute_ms] if fj.master_leg else []) + [float(b["compute_ms"]) for b in bodies]
    wall_ms = _ms(t_stage)
    compute_ms = max(compute) + stitch_ms
    return StageReport(
        index=stage.index,
        split=stage.split.value,
        workers=stage.workers,
        wall_ms=wall_ms,
        compute_ms=compute_ms,
        comm_ms=max(wall_ms - compute_ms, 0.0),
        invoke_ms=invoke_ms,
        master_transfer_ms=send_ms + recv_ms,
        worker_compute_ms=compute,
        worker_transfer_ms=[float(b["transfer_ms"]) for b in bodies],
        worker_load_ms=[float(b["load_ms"]) for b in bodies],
        billing=[bill for _, bill, _ in results],
        store_puts=sum(int(b["store_puts"]) for b in bodies),
        store_gets=sum(int(b["store_gets"]) for b in bodies),
        queue_requests=sum(int(b.get("queue_requests", 0)) for b in bodies),
        hedged=sum(1 for _, _, attempt in results if attempt > 1),
        hop_in_ms=[b["hops_ms"][0] for b in bodies],
        hop_out_ms=[b["hops_ms"][1] for b in bodies],
        own_start_ms=own_start_ms,
        send_ms=send_ms,
        own_wait_ms=invoke_ms - own_end_ms if fj.master_leg else 0.0,
    )


def _hops_ms(sent_at: float, body: dict) -> tuple[float, float]:
    """(send -> the worker's handler starts, its handler ends -> the master has the answer)."""
    try:
        started, ended = float(body["started_at"]), float(body["ended_at"])
    except (KeyError, TypeError, ValueError):  # an older worker: no timeline
        return 0.0, 0.0
    return (started - sent_at) * 1000.0, (time.monotonic() - ended) * 1000.0


async def _remote_leg(fj: ForkJoin, stage, worker: int, ref: dict, sent: asyncio.Event):
    """(worker's result body, its bill, the attempt that answered); ``sent`` is set once the
    first attempt's request is on its way."""
    key = f"{fj.plan.plan_id}/s{stage.index}"
    function = worker_function_name(fj.plan, worker)

    async def attempt(n: int):
        # each attempt writes its own output key: a late straggler never overwrites a hedge's
        event = {
            "plan_id": fj.plan.plan_id,
            "request_id": fj.request_id,
            "stage": stage.index,
            "worker": worker,
            "attempt": n,
            "input": ref,
            **fj.extra_event,
        }
        payload = orjson.dumps(event)
        if n == 1 and getattr(fj.invoker, "signals_sent", False):
            return await fj.invoker.invoke(function, payload, sent=sent)
        sent.set()
        return await fj.invoker.invoke(function, payload)

    t0 = time.perf_counter()
    sent_at = time.monotonic()
    result, answered_by = await hedged(attempt, fj.leg_times.hedge_after_s(key))
    if not result.billing.cold_start:  # a cold start says nothing about a warm leg's time
        fj.leg_times.record(key, _ms(t0))
    try:
        body = orjson.loads(result.payload)
    except orjson.JSONDecodeError as exc:
        raise StageFailed(f"stage {stage.index} worker {worker} returned invalid JSON") from exc
    body["hops_ms"] = _hops_ms(sent_at, body)
    b = result.billing
    return (
        body,
        LegBill(
            billed_ms=b.billed_ms,
            memory_mb=b.memory_mb,
            cold_start=b.cold_start,
            max_memory_used_mb=b.max_memory_used_mb,
            duration_ms=b.duration_ms,
            init_ms=b.init_ms,
        ),
        answered_by,
    )
