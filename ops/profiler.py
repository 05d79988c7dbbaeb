"""Measurements behind ``tidegate profile``: node compute, transfers, invocations, VM service.

Each function measures one thing on this machine and returns plain numbers; ``ops.commands.
profile`` assembles them into a ``policies.profile.Profile``. Torch work runs with one thread,
as a function instance does (a 1,769 MB Lambda has one vCPU).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
from pathlib import Path

import numpy as np

NOOP_HANDLER = "ops.profiler:noop"


def noop(event: dict, context=None) -> dict:
    """A function that does nothing: its round trip is the platform's invocation overhead."""
    return {"ok": True}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def node_times_ms(graph, program, x, reps: int, packed: bool = True) -> dict[str, float]:
    """Median single-thread time of every node at the example input's batch: CPU time of this
    thread, so other processes on a shared machine do not inflate it (how much slower legs run
    when they share cores is measured separately, on real plans: ``slowdowns``). Convs run
    packed, or plain with ``packed`` False (a stage its plan leaves plain)."""
    import torch

    from burst.packed_conv import packing  # as a function instance runs a node
    from burst.graph import program_weights
    from ops.process_tuning import tune_allocator

    # as in a function instance (burst.local_functions.ALLOCATOR_ENV): activations stay on the
    # heap between passes; default glibc could fault them in afresh on every pass
    tune_allocator()
    weights = program_weights(program)
    samples: dict[str, list[float]] = {n.name: [] for n in graph.nodes}
    torch.set_num_threads(1)
    with packing(packed):
        for _ in range(reps + 1):  # the first pass warms allocators and kernels
            for name, ms in node_pass_ms(graph, weights, x).items():
                samples[name].append(ms)
    return {n: statistics.median(v[1:]) for n, v in samples.items()}


def node_pass_ms(graph, weights, x) -> dict[str, float]:
    """One pass over the graph on this thread: each node's thread CPU time."""
    import torch

    from burst.execute import run_op

    out: dict[str, float] = {}
    with torch.no_grad():
        env = dict(zip(graph.inputs, [x]))
        for node in graph.nodes:
            t0 = time.thread_time()
            env[node.name] = run_op(node, env, weights)
            out[node.name] = (time.thread_time() - t0) * 1000.0
    return out


def fit_compute(graph, node_ms: dict[str, float]) -> tuple[dict[str, float], float]:
    """Least-squares ms per GMAC per op family and one fixed ms per node, from node times."""
    from policies.profile import op_family

    families = ["conv", "linear", "pool", "other"]
    rows, ys = [], []
    for n in graph.nodes:
        row = [0.0] * (len(families) + 1)
        row[families.index(op_family(n.op))] = n.macs / 1e9
        row[-1] = 1.0
        rows.append(row)
        ys.append(node_ms[n.name])
    coef, *_ = np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)
    # a family the model lacks gets the conv rate (never zero: unmeasured work is not free)
    rates = {f: float(max(c, 0.0)) for f, c in zip(families, coef[:-1])}
    for f in families:
        if rates[f] <= 0.0:
            rates[f] = rates["conv"] or 20.0
    return rates, float(max(coef[-1], 0.0))


async def transfer_fit(
    store,
    inline: bool,
    sizes: list[int],
    reps: int,
    *,
    transport: str | None = None,
    prefix: str = "profile/",
) -> tuple[float, float]:
    """(fixed ms, ms per MB) of send + receive through ``store`` (or inline base64).
    ``transport`` "queue" with an SQS store and a ``req/...`` prefix times its queues: each
    tensor on a queue of its own, made by its send, as a stage leg's is (ops/queue_fit.py)."""
    import torch

    from burst.tensors import receive, send

    transport = transport or ("inline" if inline else "store")
    xs, ys = [], []
    for size in sizes:
        t = torch.zeros(size // 4, dtype=torch.float32)
        for i in range(reps):
            t0 = time.perf_counter()
            ref = await send(
                t, store, f"{prefix}t{size}/{i}/x", transport=transport, limit_bytes=1 << 40
            )
            await receive(ref, store)
            xs.append(size / 1e6)
            ys.append(_ms(t0))
    if not inline:
        await store.delete_prefix(prefix)
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(max(intercept, 0.0)), float(max(slope, 0.0))


def vm_service_ms(
    program, example, batches: list[int], reps: int, threads: int
) -> dict[int, list[float]]:
    """A VM replica's compute per batch size (the whole model, ``threads`` torch threads)."""
    import torch

    torch.set_num_threads(threads)
    module = program.module()
    out: dict[int, list[float]] = {}
    with torch.no_grad():
        for b in batches:
            x = example[:1].repeat(b, *([1] * (example.dim() - 1)))
            module(x)
            samples = []
            for _ in range(reps):
                t0 = time.perf_counter()
                module(x)
                samples.append(_ms(t0))
            out[b] = samples
    torch.set_num_threads(1)
    return out


async def register(endpoint: str, names: list[str], memory_mb: int) -> None:
    from burst.supervisor import register_functions

    await register_functions(
        endpoint,
        [
            {
                "FunctionName": n,
                "Handler": NOOP_HANDLER,
                "MemorySize": memory_mb,
                "Timeout": 60,
                "Environment": {"Variables": {"TIDEGATE_FUNCTION_THREADS": "1"}},
            }
            for n in names
        ],
    )


async def invoke_round_trips(
    invoker, endpoint: str, fanouts: list[int], reps: int, memory_mb: int
) -> tuple[dict[int, list[float]], list[float]]:
    """Round trips of a no-op function: warm at each fan-out (n at once), and cold (first
    invocation of a fresh function: a new instance process)."""
    tag = f"{time.time_ns() % 10**9}"
    cold_names = [f"tidegate-profile-cold-{tag}-{i}" for i in range(3)]
    warm_names = [f"tidegate-profile-{tag}-{j}" for j in range(max(fanouts))]
    await register(endpoint, cold_names + warm_names, memory_mb)
    cold = []
    for name in cold_names:
        t0 = time.perf_counter()
        await invoker.invoke(name, b"{}")
        cold.append(_ms(t0))
    await asyncio.gather(*(invoker.invoke(n, b"{}") for n in warm_names))  # make them warm

    async def timed(name):
        t0 = time.perf_counter()
        await invoker.invoke(name, b"{}")
        return _ms(t0)

    warm: dict[int, list[float]] = {}
    for n in fanouts:
        warm[n] = []
        for _ in range(reps):
            warm[n] += await asyncio.gather(*(timed(name) for name in warm_names[:n]))
    return warm, cold


async def model_cold_starts(svc, model: str, inputs: dict, workers: int, reps: int, say):
    """What a request on fresh instances of ``model``'s functions takes beyond a warm one, as
    the gateway sees it (``svc.infer``): instance start, handler imports (torch), plan and
    weight load. Each rep deletes and re-registers the functions (their instances stop), runs
    one request cold and one warm right after: (latency ms, billed ms over the invocations)
    per rep. A no-op's cold round trip (``invoke_round_trips``) misses the model load: 0.4 s
    here against 16-21 s for the ``delay`` model's first answer under load."""
    endpoint = svc.platform["endpoint"]
    extra_ms, billed_ms = [], []
    for i in range(reps):
        await _fresh_functions(endpoint, svc.function_bodies(endpoint))
        cold = await svc.infer(model, inputs, workers=workers)
        warm = await svc.infer(model, inputs, workers=workers)
        if cold.cold_starts == 0 or warm.cold_starts:  # not the contrast we mean to measure
            say(f"cold start {i + 1}/{reps}: {cold.cold_starts} cold instances; not counted")
            continue
        extra_ms.append(max(cold.total_ms - warm.total_ms, 0.0))
        billed_ms.append(
            max(sum(b for b, _ in cold.invocations) - sum(b for b, _ in warm.invocations), 0)
        )
        say(
            f"cold start {i + 1}/{reps} (x{workers}, {cold.cold_starts} instances): first "
            f"answer {cold.total_ms:.0f} ms, warm {warm.total_ms:.0f} ms, billed "
            f"+{billed_ms[-1]:.0f} ms"
        )
    return extra_ms, billed_ms


async def _fresh_functions(endpoint: str, bodies: list[dict]) -> None:
    """Delete the functions (the runtime stops their instances) and register them again."""
    import aiohttp

    from burst.supervisor import register_functions

    async with aiohttp.ClientSession() as session:
        for body in bodies:
            url = f"{endpoint}/2015-03-31/functions/{body['FunctionName']}"
            async with session.delete(url) as resp:
                if resp.status not in (204, 404):
                    raise RuntimeError(f"DeleteFunction {url}: HTTP {resp.status}")
    await register_functions(endpoint, bodies)


def stage_observations(graph_node_ms: dict[str, float], plan, answers) -> list[dict]:
    """Per split stage of each answer: kind, legs, measured wall and per-leg compute, and the
    single-thread time its legs' work takes (from node times)."""
    out = []
    for a in answers:
        for st_plan, st in zip(plan.stages, a.report.stages):
            whole = sum(graph_node_ms[n] for n in st_plan.nodes)
            if st_plan.split == "serial":
                out.append(
                    {
                        "split": "serial",
                        "workers": 0,
                        "wall_ms": st.wall_ms,
                        "single_ms": whole,
                        "legs_ms": [st.wall_ms],
                    }
                )
                continue
            share = [m / max(st_plan.macs, 1) * whole for m in st_plan.leg_macs]
            legs = list(st.worker_compute_ms)
            if legs and st.send_ms:  # the master's leg as the stage waits on it: it starts
                # once its remote requests are out (own_start_ms beyond its sends), 1-1.5 ms
                legs[0] += max(st.own_start_ms - st.send_ms, 0.0)
            out.append(
                {
                    "split": st_plan.split.value,
                    "workers": st_plan.workers,
                    "nodes": len(st_plan.nodes),
                    "wall_ms": st.wall_ms,
                    "single_ms": whole,
                    "leg_single_ms": share,
                    "legs_ms": legs,
                }
            )
    return out


def slowdowns(
    observations: list[dict],
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]], dict[str, dict[int, float]]]:
    """Per (kind, legs): (slowdown, ms per node, ms per leg), fitted over every measured leg
    (the master's own legs apart, as kind ``SPLIT/master``) as
    ``measured = slowdown * single-thread share + ms_per_node * nodes + ms_per_leg``
    (least squares, so big stages weigh more than the many tiny ones). A leg's dispatch,
    cropping and padding do not shrink with its share of the work (per node), and a leg's
    start does not grow with its nodes (per leg: the master starts its own leg 1-1.5 ms after
    its sends, once its remote requests are out): without those terms the slowdown would
    absorb them and overcharge the big stages, and with one term for both the per-node time
    swung between profiles (VGG-11 0.44-2.3 ms/node). Serial stages: the ratio of sums."""
    rows: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for o in observations:
        if o["split"] == "serial":
            rows.setdefault(("serial", 1), []).append((o["wall_ms"], o["single_ms"], 0.0))
            continue
        for leg, (measured, single) in enumerate(zip(o["legs_ms"], o["leg_single_ms"])):
            # the master's own leg (leg 0 of a fan-out) is fitted apart: it starts with no
            # hand-off and here computes faster per MAC than a worker's (burst.forkjoin)
            kind = f"{o['split']}/master" if leg == 0 and o["workers"] > 1 else o["split"]
            rows.setdefault((kind, o["workers"]), []).append(
                (measured, single, float(o.get("nodes", 0)))
            )
    slow: dict[str, dict[int, float]] = {}
    per_node: dict[str, dict[int, float]] = {}
    per_leg: dict[str, dict[int, float]] = {}
    for (kind, k), pts in rows.items():
        s, f, g = _fit_legs(np.array(pts, dtype=float))
        if s > 0:
            slow.setdefault(kind, {})[k] = s
            if kind != "serial":
                per_node.setdefault(kind, {})[k] = f
                per_leg.setdefault(kind, {})[k] = g
    return slow, per_node, per_leg


MIN_LEGS_PER_LEG_TERM = 6  # legs a three-term fit needs: with fewer it would fit the noise


def _fit_legs(pts: np.ndarray) -> tuple[float, float, float]:
    """(slowdown, ms per node, ms per leg) for rows (measured, single, nodes): least squares
    with every term bounded below (slowdown >= 1.0 against node times from the same minutes,
    or the ratio of sums if that is lower; times >= 0), exact over the bounds' active sets.
    The ratio of sums alone when there are too few legs or no node counts."""
    measured, single, nodes = pts[:, 0], pts[:, 1], pts[:, 2]
    ratio = float(measured.sum() / single.sum()) if single.sum() > 0 else 0.0
    if len(pts) < 3 or not nodes.any() or ratio <= 0.0:
        return ratio, 0.0, 0.0
    # a leg sharing the cores is no faster than one thread alone in the same minutes
    # (ops.profile_drift.WindowNodeTimes): free terms traded off on a few noisy legs
    # (VGG-11's master 0.83x + 2.5 ms/node, then 1.04x + 0.4)
    lower = np.array([min(1.0, ratio), 0.0, 0.0])
    columns = np.stack([single, nodes, np.ones_like(single)], axis=1)
    terms = 3 if len(pts) >= MIN_LEGS_PER_LEG_TERM else 2
    best, best_sse = None, math.inf
    for free in itertools.product((True, False), repeat=terms):
        idx = [i for i, f in enumerate(free) if f]
        coef = np.concatenate([lower[:terms], np.zeros(3 - terms)])
        coef[idx] = 0.0  # free terms are fitted to what the bounded ones leave
        rest = measured - columns @ coef
        if idx:
            sol, *_ = np.linalg.lstsq(columns[:, idx], rest, rcond=None)
            coef[idx] = sol
        if np.any(coef[:terms] < lower[:terms] - 1e-9):
            continue
        sse = float(((measured - columns @ coef) ** 2).sum())
        if sse < best_sse - 1e-9:
            best, best_sse = coef, sse
    assert best is not None  # every term at its bound is feasible
    return float(best[0]), float(best[1]), float(best[2])


def repo_path(repo, name: str) -> Path:
    return Path(repo) / name / "profile.json"
