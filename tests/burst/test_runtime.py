"""The fork-join master/worker handlers, with an in-process invoker and a real directory store."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import orjson
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

from burst.faas.base import Billing, InvokeError, InvokeResult  # noqa: E402
from burst.graph import build_graph  # noqa: E402
from burst.plan import make_plan  # noqa: E402
from burst.runtime import BurstError, reset_cache, run_master, run_worker  # noqa: E402
from burst.store.local_dir import LocalDirStore  # noqa: E402
from burst.tensors import encode_inline, receive  # noqa: E402
from burst.weights import prepare_plan  # noqa: E402

torch.set_num_threads(1)


class InProcessInvoker:
    """Calls run_worker directly; the first call per (stage, worker) reports a cold start."""

    def __init__(self, store, fail_worker: int | None = None):
        self.store = store
        self.fail_worker = fail_worker
        self.payloads: list[dict] = []
        self.seen: set = set()

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        event = orjson.loads(payload)
        self.payloads.append(event)
        if event["worker"] == self.fail_worker:
            raise InvokeError("worker ran out of memory", kind="OutOfMemory")
        body = await run_worker(event, self.store)
        slot = (event["stage"], event["worker"])
        cold = slot not in self.seen
        self.seen.add(slot)
        billed = max(1, int(body["total_ms"] + 0.999))
        return InvokeResult(
            orjson.dumps(body),
            Billing(
                duration_ms=body["total_ms"], billed_ms=billed, memory_mb=1024, cold_start=cold
            ),
        )

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def grouped():
    model = sm.build("grouped")
    x = torch.randn(2, *sm.input_shape("grouped"), generator=torch.Generator().manual_seed(1))
    program = sm.export(model, x)
    with torch.no_grad():
        ref = model(x)
    return program, build_graph(program, "grouped"), x, ref


async def _run(program, graph, x, tmp_path, **plan_kw):
    store = LocalDirStore(tmp_path / "store")
    plan = make_plan(graph, batch=x.shape[0], **plan_kw)
    await prepare_plan(program, plan, store, graph=graph)
    reset_cache()
    invoker = InProcessInvoker(store)
    result = await run_master(
        {"plan_id": plan.plan_id, "request_id": "r1", "inputs": [encode_inline(x)]}, invoker, store
    )
    return store, plan, invoker, result


def _keys(root: Path, prefix: str) -> list[str]:
    base = root / prefix
    return [str(p) for p in base.rglob("*") if p.is_file()] if base.exists() else []


@pytest.mark.parametrize("split,workers", [("spatial", 4), ("output", 3), ("auto", 2)])
async def test_master_output_matches_full_model(grouped, tmp_path, split, workers):
    program, graph, x, ref = grouped
    store, plan, invoker, result = await _run(
        program, graph, x, tmp_path, workers=workers, split=split
    )
    y = await receive(result["outputs"][0], store)
    assert (y - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    report = result["report"]
    split_stages = [s for s in plan.stages if s.split != "serial"]
    # the master computes leg 0 of every split stage itself: n-1 invocations per stage
    assert report["invocations"] == sum(s.workers - 1 for s in split_stages)
    assert report["invocations"] > 0 or split == "auto"  # auto may find splitting not worth it
    assert report["cold_starts"] == report["invocations"]  # first request: every slot cold
    assert 0.0 <= report["communication_share"] <= 1.0
    assert len(report["stages"]) == len(plan.stages)
    # tensors travel as base64 bytes, never JSON number lists
    for event in invoker.payloads:
        assert "b64" in event["input"] or "key" in event["input"]
    assert _keys(tmp_path / "store", "req") == []


async def test_store_transport_passes_keys_and_cleans_up(grouped, tmp_path):
    program, graph, x, ref = grouped
    store, plan, invoker, result = await _run(
        program, graph, x, tmp_path, workers=2, split="spatial", transport="store"
    )
    assert all(
        "key" in e["input"] and e["input"]["key"].startswith("req/r1/") for e in invoker.payloads
    )
    y = await receive(result["outputs"][0], store)
    assert (y - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    assert _keys(tmp_path / "store", "req/r1") == []


async def test_second_request_is_warm_and_reuses_weights(grouped, tmp_path):
    program, graph, x, _ = grouped
    store, plan, invoker, _ = await _run(program, graph, x, tmp_path, workers=2, split="output")
    again = await run_master(
        {"plan_id": plan.plan_id, "request_id": "r2", "inputs": [encode_inline(x)]}, invoker, store
    )
    assert again["report"]["cold_starts"] == 0
    loaded = [w for s in again["report"]["stages"] for w in s.get("worker_load_ms", [])]
    assert loaded and max(loaded) < 50.0  # served from the per-process cache


async def test_worker_failure_fails_request_and_cleans_up(grouped, tmp_path):
    program, graph, x, _ = grouped
    store = LocalDirStore(tmp_path / "store")
    plan = make_plan(graph, workers=2, split="spatial", transport="store", batch=2)
    await prepare_plan(program, plan, store, graph=graph)
    reset_cache()
    with pytest.raises(BurstError, match="OutOfMemory"):
        await run_master(
            {"plan_id": plan.plan_id, "request_id": "bad", "inputs": [encode_inline(x)]},
            InProcessInvoker(store, fail_worker=1),
            store,
        )
    assert _keys(tmp_path / "store", "req/bad") == []


async def test_unprepared_plan_and_bad_input_are_clear_errors(grouped, tmp_path):
    program, graph, x, _ = grouped
    store = LocalDirStore(tmp_path / "store")
    reset_cache()
    with pytest.raises(BurstError, match="prepare_plan"):
        await run_master(
            {"plan_id": "0123456789abcdef", "inputs": [encode_inline(x)]},
            InProcessInvoker(store),
            store,
        )
    plan = make_plan(graph, workers=2, split="spatial", batch=2)
    await prepare_plan(program, plan, store, graph=graph)
    with pytest.raises(BurstError, match="does not fit"):
        await run_master(
            {"plan_id": plan.plan_id, "inputs": [encode_inline(x[:, :, :5])]},
            InProcessInvoker(store),
            store,
        )
    with pytest.raises(BurstError, match="bad master event"):
        await run_master({"inputs": []}, InProcessInvoker(store), store)


async def test_output_split_worker_holds_only_its_slice(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8)
    ).eval()
    x = torch.randn(2, 64)
    program = sm.export(model, x)
    graph = build_graph(program, "mlp2")
    store = LocalDirStore(tmp_path / "store")
    plan = make_plan(graph, workers=4, split="output", batch=2)
    await prepare_plan(program, plan, store, graph=graph)
    from burst.weights import loads_tensors, worker_key

    first = plan.stages[0]
    sizes = []
    for j in range(4):
        w = loads_tensors(await store.get(worker_key(plan.plan_id, 0, j)))
        sizes.append(sum(t.numel() for t in w.values()))
    assert sizes == [64 * 64 + 64] * 4  # a quarter of 256x64 weights and 256 biases each
    assert first.weight_bytes == [(64 * 64 + 64) * 4] * 4
    reset_cache()
    result = await run_master(
        {"plan_id": plan.plan_id, "inputs": [encode_inline(x)]}, InProcessInvoker(store), store
    )
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(await receive(result["outputs"][0], store), ref, atol=1e-6)


async def test_worker_wrapper_builds_its_store_from_its_environment(grouped, tmp_path, monkeypatch):
    from burst.execute import run_worker_stage, worker_input
    from burst.graph import program_weights
    from burst.runtime import worker

    program, graph, x, _ = grouped
    store = LocalDirStore(tmp_path / "store")
    plan = make_plan(graph, workers=2, split="spatial", batch=2)
    await prepare_plan(program, plan, store, graph=graph)
    reset_cache()
    monkeypatch.setenv("TIDEGATE_FUNCTION_THREADS", "1")
    stage = next(s for s in plan.stages if s.split == "spatial")
    tile_in = worker_input(stage, 1, x)
    # the Lambda-style entry point is synchronous; it must also work under a running loop
    monkeypatch.setenv(
        "TIDEGATE_BURST_STORE", json.dumps({"kind": "dir", "root": str(tmp_path / "store")})
    )
    body = worker(
        {
            "plan_id": plan.plan_id,
            "request_id": "w1",
            "stage": stage.index,
            "worker": 1,
            "input": encode_inline(tile_in),
        }
    )
    json.dumps(body)  # a JSON-serialisable result
    got = await receive(body["output"], store)
    want = run_worker_stage(graph, stage, 1, tile_in, program_weights(program))
    assert torch.equal(got, want) and body["weights_loaded"] is True
    assert torch.get_num_threads() == 1


def test_lru_cache_stays_within_its_byte_budget():
    from burst.weights import LruCache

    cache = LruCache(budget_bytes=100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("c", "C", 40)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.used_bytes == 80
    cache.put("huge", "H", 500)  # bigger than the budget: kept alone, since it is in use
    assert len(cache) == 1 and cache.get("huge") == "H"


async def test_a_new_plan_s_weights_evict_old_ones_before_they_load(tmp_path, monkeypatch):
    """A warm instance switching plans must not hold the old weights beside the new ones while
    they load (a 2048 MB master running four VGG-16 plans in turn died of out-of-memory)."""
    import burst.runtime_cache as rc
    from burst.weights import dumps_tensors, tensors_nbytes

    store = LocalDirStore(tmp_path)
    blob = dumps_tensors({"w": torch.zeros(1000)})  # ~4 kB of float32
    await store.put("new/master", blob)
    cache = reset_cache(budget_bytes=2 * len(blob))
    cache.put("old-1", {"w": torch.zeros(1000)}, len(blob))
    cache.put("old-2", {"w": torch.zeros(1000)}, len(blob))
    held_while_loading = []
    real_loads = rc.loads_tensors
    monkeypatch.setattr(
        rc,
        "loads_tensors",
        lambda data: held_while_loading.append(cache.used_bytes) or real_loads(data),
    )
    got, loaded = await rc._cached(
        "new/master", lambda: rc._get_tensors(store, "new/master"), tensors_nbytes
    )
    assert loaded and torch.equal(got["w"], torch.zeros(1000))
    # room for the new blob was made first: the least recent entry went
    assert held_while_loading == [len(blob)] and "old-1" not in cache and "old-2" in cache
    assert cache.used_bytes <= cache.budget_bytes


class StragglingInvoker(InProcessInvoker):
    """Once armed, the first attempt of worker 1 never answers (a stuck instance) until it is
    cancelled; a hedge (attempt 2) answers normally."""

    def __init__(self, store):
        super().__init__(store)
        self.armed = False
        self.stuck = asyncio.Event()
        self.cancelled = 0

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        event = orjson.loads(payload)
        if self.armed and event["worker"] == 1 and event["attempt"] == 1:
            self.armed = False
            self.stuck.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return await super().invoke(function, payload)


async def test_a_straggling_worker_is_hedged_and_bounds_the_request(grouped, tmp_path):
    from burst.hedge import HedgePolicy, LegTimes

    program, graph, x, ref = grouped
    store = LocalDirStore(tmp_path / "store")
    plan = make_plan(graph, workers=2, split="output", batch=2)
    await prepare_plan(program, plan, store, graph=graph)
    reset_cache()
    invoker = StragglingInvoker(store)
    # a hedge no sooner than 1 s: a leg the host stalls for 3x its median (tens of ms on a
    # busy CI runner) is not hedged as well, so only the stuck leg is
    leg_times = LegTimes(HedgePolicy(factor=3.0, min_delay_ms=1000.0, min_samples=3))
    normal_ms = []
    for i in range(5):  # the first is cold (not learnt); then warm legs teach the stage times
        t0 = time.perf_counter()
        await run_master(
            {"plan_id": plan.plan_id, "request_id": f"warm{i}", "inputs": [encode_inline(x)]},
            invoker,
            store,
            leg_times=leg_times,
        )
        normal_ms.append((time.perf_counter() - t0) * 1000)
    stage = next(s for s in plan.stages if s.workers == 2)
    hedge_after_ms = leg_times.hedge_after_s(f"{plan.plan_id}/s{stage.index}") * 1000
    invoker.armed = True
    t0 = time.perf_counter()
    result = await asyncio.wait_for(
        run_master(
            {"plan_id": plan.plan_id, "request_id": "straggled", "inputs": [encode_inline(x)]},
            invoker,
            store,
            leg_times=leg_times,
        ),
        timeout=60,
    )
    hedged_ms = (time.perf_counter() - t0) * 1000
    assert invoker.stuck.is_set() and invoker.cancelled == 1  # the straggler was let go
    y = await receive(result["outputs"][0], store)
    assert (y - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    assert sum(s["hedged"] for s in result["report"]["stages"]) == 1
    normal_p50_ms = sorted(normal_ms[1:])[len(normal_ms[1:]) // 2]
    print(
        f"hedged request {hedged_ms:.0f} ms; normal p50 {normal_p50_ms:.0f} ms; "
        f"hedge after {hedge_after_ms:.0f} ms (the straggler would have taken forever)"
    )
    # the bound: the hedge delay plus about one more normal request
    assert hedged_ms <= hedge_after_ms + 3 * normal_p50_ms + 1000
    assert _keys(tmp_path / "store", "req") == []


class SignallingInvoker(InProcessInvoker):
    """Says when a request is on its way (as ``LocalInvoker`` does), a little after it is
    called, and logs that beside the master's own compute."""

    signals_sent = True

    def __init__(self, store, log: list):
        super().__init__(store)
        self.log = log

    async def invoke(self, function: str, payload: bytes, *, sent=None) -> InvokeResult:
        await asyncio.sleep(0.01)  # the request takes a moment to go out
        self.log.append(("sent", orjson.loads(payload)["stage"]))
        if sent is not None:
            sent.set()
        return await super().invoke(function, payload)


async def test_master_computes_its_leg_once_every_remote_leg_is_sent(
    grouped, tmp_path, monkeypatch
):
    import threading

    import burst.forkjoin as forkjoin

    program, graph, x, ref = grouped
    store = LocalDirStore(tmp_path / "store")
    plan = make_plan(graph, workers=3, split="spatial", batch=2)
    await prepare_plan(program, plan, store, graph=graph)
    reset_cache()
    log: list = []
    compute = forkjoin.compute_leg

    def logged_compute(graph_, stage, worker, x_, weights):
        log.append(("own", stage.index, threading.current_thread() is threading.main_thread()))
        return compute(graph_, stage, worker, x_, weights)

    monkeypatch.setattr(forkjoin, "compute_leg", logged_compute)
    result = await run_master(
        {"plan_id": plan.plan_id, "request_id": "r1", "inputs": [encode_inline(x)]},
        SignallingInvoker(store, log),
        store,
    )
    y = await receive(result["outputs"][0], store)
    assert (y - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    split = [s for s in plan.stages if s.split != "serial"]
    assert split
    for stage in split:
        own = next(i for i, e in enumerate(log) if e[:2] == ("own", stage.index))
        sends = [i for i, e in enumerate(log) if e == ("sent", stage.index)]
        assert len(sends) == stage.workers - 1 and max(sends) < own  # both remote legs first
        assert log[own][2]  # on the master's loop, not a thread beside it
    # the report says when the master's leg started, what of that was writing the remote
    # inputs, and how long it then waited on the remote legs (which leg held the stage up)
    for st in (s for s in result["report"]["stages"] if s["workers"] > 1):
        assert 0.0 < st["send_ms"] <= st["own_start_ms"] < st["wall_ms"]
        assert 0.0 <= st["own_wait_ms"] < st["wall_ms"]
