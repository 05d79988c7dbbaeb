"""Platform-neutral fork-join handlers: ``master(event)`` and ``worker(event)``.

The master runs a prepared plan stage by stage: serial stages itself, split stages by invoking
the worker function once per worker concurrently, then stitching. Events and results are
JSON-serialisable dicts; tensors travel as binary (see ``burst.tensors``).

Master event: ``{"plan_id", "inputs": [tensor ref, ...], "request_id"?}`` (plus the request's
tensor key when the store seals tensors). Result: ``{"outputs": [tensor ref, ...], "report":
{...}}``. Outputs too large to inline go to ``resp/{request_id}/`` and the caller deletes them.
Functions find their platform and store in their environment, never in an event.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import torch

from burst.execute import run_nodes
from burst.plan_memory import release_points
from burst.forkjoin import ForkJoin, StageFailed, compute_leg, run_stage
from burst.hedge import HedgePolicy, LegTimes
from burst.packed_conv import packing
from burst.report import MasterReport, StageReport
from burst.runtime_cache import (  # BurstError and reset_cache are public here too
    BurstError,
    _check_id,
    _load_plan,
    _ms,
    _weights,
    reset_cache,  # noqa: F401  (re-exported: tests and callers import it from here)
)
from burst.plan_schema import stage_transport
from burst.store.counting import CountingStore
from burst.tensors import receive, send
from burst.store.encrypted import EVENT_FIELD as TENSOR_KEY_FIELD, bind_request_key
from burst.weights import master_key, worker_key

PLATFORM_ENV = "TIDEGATE_BURST_PLATFORM"  # burst.service sets these on the functions it registers
STORE_ENV = "TIDEGATE_BURST_STORE"
# Leg times the master has seen, per plan stage: what a straggler is measured against.
_LEG_TIMES = LegTimes(HedgePolicy())


async def run_worker(event: dict, store) -> dict:
    """One worker's share of one split stage."""
    t_start = time.perf_counter()
    started_at = time.monotonic()  # system-wide: the master compares it with its own
    store = CountingStore(bind_request_key(store, event))  # the request's tensor key, if sealed
    try:
        plan_id = _check_id(event["plan_id"], "plan_id")
        request_id = _check_id(event["request_id"], "request_id")
        stage_index, worker = int(event["stage"]), int(event["worker"])
        attempt = int(event.get("attempt", 1))  # a hedge writes its own output key
        ref = event["input"]
    except (KeyError, TypeError, ValueError) as exc:
        raise BurstError(f"bad worker event: {exc!r}") from exc
    plan, graph = await _load_plan(store, plan_id)
    if not 0 <= stage_index < len(plan.stages):
        raise BurstError(f"plan {plan_id} has no stage {stage_index}")
    stage = plan.stages[stage_index]
    if not 0 <= worker < stage.workers:
        raise BurstError(f"stage {stage_index} has no worker {worker}")
    t0 = time.perf_counter()

    weights, weights_loaded = await _weights(
        store, plan_id, f"s{stage_index}/w{worker}", worker_key(plan_id, stage_index, worker)
    )
    load_ms = _ms(t0)
    t0 = time.perf_counter()
    x = await receive(ref, store)
    transfer_ms = _ms(t0)
    t0 = time.perf_counter()
    # on the instance's own loop: nothing else runs in a worker meanwhile, and a thread hop
    # can wait for a core on a loaded machine
    y = compute_leg(graph, stage, worker, x, weights)
    compute_ms = _ms(t0)
    t0 = time.perf_counter()
    out = await send(
        y,
        store,
        f"req/{request_id}/s{stage_index}/w{worker}/a{attempt}/out",
        transport=stage_transport(plan, stage),
        limit_bytes=plan.inline_limit_bytes,
    )
    transfer_ms += _ms(t0)
    return {
        "output": out,
        "compute_ms": compute_ms,
        "transfer_ms": transfer_ms,
        "load_ms": load_ms,
        "weights_loaded": weights_loaded,
        "total_ms": _ms(t_start),
        "started_at": started_at,
        "ended_at": time.monotonic(),
        "store_puts": store.puts,
        "store_gets": store.gets,
        "queue_requests": store.queue_requests,
    }


def _serial(graph, names, env, weights, drop_after):
    with torch.no_grad():
        run_nodes(graph, names, env, weights, drop_after)


async def run_master(
    event: dict, invoker, store, *, leg_times: LegTimes | None = None, master_leg: bool = True
) -> dict:
    """Run a prepared plan on ``event["inputs"]``; return outputs and a timing/billing report
    (``MasterReport.to_json``). ``master_leg``: the master computes leg 0 of each split stage
    itself (n-1 invocations per stage)."""
    t_start = time.perf_counter()
    try:
        plan_id = _check_id(event["plan_id"], "plan_id")
        request_id = _check_id(event.get("request_id") or uuid.uuid4().hex, "request_id")
        in_refs = event["inputs"]
        if not isinstance(in_refs, list):
            raise TypeError("inputs must be a list of tensor references")
    except (KeyError, TypeError) as exc:
        raise BurstError(f"bad master event: {exc!r}") from exc
    store = CountingStore(bind_request_key(store, event))  # the request's tensor key, if sealed
    extra = {TENSOR_KEY_FIELD: event[TENSOR_KEY_FIELD]} if event.get(TENSOR_KEY_FIELD) else {}
    report = None
    try:
        outputs, report = await _run_master(
            plan_id,
            request_id,
            in_refs,
            invoker,
            store,
            t_start,
            extra,
            leg_times or _LEG_TIMES,
            master_leg,
        )
    finally:
        # per-request tensors go whether the join succeeded or not (a LIST: not when none
        # can be there, every tensor inline)
        if report is None or _stored_under_req(in_refs, report, store):
            await store.delete_prefix(f"req/{request_id}/")
    report.store_puts += store.puts
    report.store_gets += store.gets
    report.queue_requests += store.queue_requests
    return {"outputs": outputs, "report": report.to_json()}


def _stored_under_req(in_refs: list, report: MasterReport, store) -> bool:
    """Whether ``req/`` may hold a tensor: an input sent by key, or a tensor the master
    (``store``'s counts) or a worker (the report's) sent through the store or a queue."""
    by_key = any(isinstance(ref, dict) and "key" in ref for ref in in_refs)
    sent = store.puts + store.queue_requests + report.store_puts + report.queue_requests
    return by_key or sent > 0


async def _receive_inputs(plan, graph, in_refs, store) -> tuple[list, float]:
    """The request's input tensors, checked against the plan's shapes; (tensors, input_ms)."""
    t0 = time.perf_counter()
    xs = [await receive(r, store) for r in in_refs]
    input_ms = _ms(t0)
    for x, want, name in zip(xs, plan.input_shapes, graph.inputs, strict=True):
        if list(x.shape[1:]) != list(want[1:]) or x.shape[0] > plan.batch:
            raise BurstError(
                f"input {name}: shape {list(x.shape)} does not fit the plan "
                f"(expects {want}, batch up to {plan.batch})"
            )
    return xs, input_ms


async def _send_outputs(plan, graph, env, store, request_id) -> tuple[list[dict], float]:
    """The graph's outputs as tensor refs (large ones under ``resp/``); (refs, output_ms)."""
    t0 = time.perf_counter()
    outputs = [
        await send(
            env[o].contiguous(),
            store,
            f"resp/{request_id}/output{i}",
            transport="auto",
            limit_bytes=plan.inline_limit_bytes,
        )
        for i, o in enumerate(graph.outputs)
    ]
    return outputs, _ms(t0)


async def _run_master(
    plan_id, request_id, in_refs, invoker, store, t_start, extra, leg_times, master_leg
) -> tuple[list[dict], MasterReport]:
    plan, graph = await _load_plan(store, plan_id)
    weights, loaded = await _weights(store, plan_id, "master", master_key(plan_id))
    loads = [loaded]  # blobs this request read from the store: none once warm
    if len(in_refs) != len(graph.inputs):
        raise BurstError(
            f"model {plan.model} takes {len(graph.inputs)} input(s), got {len(in_refs)}"
        )
    xs, input_ms = await _receive_inputs(plan, graph, in_refs, store)

    async def leg_weights(stage_index: int, worker: int) -> dict:
        key = worker_key(plan_id, stage_index, worker)
        value, loaded = await _weights(store, plan_id, f"s{stage_index}/w{worker}", key)
        loads.append(loaded)
        return value

    fj = ForkJoin(
        plan, graph, invoker, store, request_id, leg_times, leg_weights, extra, master_leg
    )
    env = dict(zip(graph.inputs, xs, strict=True))
    del xs  # env holds the inputs until their last reader
    after_node, after_stage = release_points(graph, plan)  # values go after their last reader
    stages: list[StageReport] = []
    for stage in plan.stages:
        t_stage = time.perf_counter()
        if stage.split == "serial":
            with packing(stage.packed):  # convs packed as the plan says
                _serial(graph, stage.nodes, env, weights, after_node)  # no thread hop
            stages.append(StageReport(stage.index, "serial", _ms(t_stage), _ms(t_stage)))
            continue
        try:
            stages.append(await run_stage(fj, stage, env))
        except StageFailed as exc:
            raise BurstError(str(exc)) from exc
        for value in after_stage.get(stage.index, ()):
            env.pop(value, None)
    outputs, output_ms = await _send_outputs(plan, graph, env, store, request_id)
    return outputs, MasterReport(
        plan_id=plan_id,
        request_id=request_id,
        wall_ms=_ms(t_start),
        compute_ms=sum(s.compute_ms for s in stages),
        comm_ms=sum(s.comm_ms for s in stages) + input_ms + output_ms,
        stages=stages,
        # the workers' store requests; the master adds its own once it has cleaned up
        store_puts=sum(s.store_puts for s in stages),
        store_gets=sum(s.store_gets for s in stages),
        queue_requests=sum(s.queue_requests for s in stages),
        weights_loaded=sum(loads),
    )


def _set_threads() -> None:
    torch.set_num_threads(int(os.environ.get("TIDEGATE_FUNCTION_THREADS", "1")))


# A function instance keeps one event loop and, per platform/store config, one client across
# invocations (as Lambda code keeps clients in globals): no new loop, connection pool or store
# client per request. Called under a running loop (an embedding runtime) it uses fresh ones.
_LOOP: asyncio.AbstractEventLoop | None = None
_CLIENTS: dict[str, object] = {}


def _handle(coro_fn):
    """Run ``coro_fn(shared)`` to completion; ``shared`` says whether clients may be reused."""
    global _LOOP
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if _LOOP is None or _LOOP.is_closed():
            _LOOP = asyncio.new_event_loop()
        return _LOOP.run_until_complete(coro_fn(True))
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn(False)).result()


def _client(kind: str, cfg: dict, factory, shared: bool):
    if not shared:
        return factory(cfg)
    key = kind + json.dumps(cfg, sort_keys=True)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = factory(cfg)
    return client


async def _close_unshared(shared: bool, *clients) -> None:
    if not shared:
        for c in clients:
            await c.close()


def _env_config(name: str, default: dict) -> dict:
    """A function's platform or store, from its own environment (set when it was deployed or
    registered): events carry names only, never credentials."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        cfg = json.loads(raw)
    except ValueError as exc:
        raise BurstError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise BurstError(f"{name} must be a JSON object with a 'kind'")
    return cfg


def master(event: dict, context=None) -> dict:
    """Lambda-style master entry point; its invoker and store come from its environment
    (``TIDEGATE_BURST_PLATFORM``, ``TIDEGATE_BURST_STORE``)."""
    from burst.faas.factory import make_invoker
    from burst.store.factory import make_store

    _set_threads()

    async def go(shared: bool):
        invoker = _client(
            "invoker", _env_config(PLATFORM_ENV, {"kind": "local"}), make_invoker, shared
        )
        store = _client("store", _env_config(STORE_ENV, {"kind": "dir"}), make_store, shared)
        try:
            return await run_master(event, invoker, store)
        finally:
            await _close_unshared(shared, invoker, store)

    return _handle(go)


def worker(event: dict, context=None) -> dict:
    """Lambda-style worker entry point; its store comes from its environment."""
    from burst.store.factory import make_store

    _set_threads()

    async def go(shared: bool):
        store = _client("store", _env_config(STORE_ENV, {"kind": "dir"}), make_store, shared)
        try:
            return await run_worker(event, store)
        finally:
            await _close_unshared(shared, store)

    return _handle(go)
