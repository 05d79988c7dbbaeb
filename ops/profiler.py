"""Measurements behind ``tidegate profile``: node compute, transfers, invocations, VM service.

Each function measures one thing on this machine and returns plain numbers; ``ops.commands.
profile`` assembles them into a ``policies.profile.Profile``. Torch work runs with one thread,
as a function instance does (a 1,769 MB Lambda has one vCPU).
"""

from __future__ import annotations

import asyncio
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


def node_times_ms(graph, program, x, reps: int) -> dict[str, float]:
    """Median single-thread time of every node at the example input's batch: CPU time of this
    thread, so other processes on a shared machine do not inflate it (how much slower legs run
    when they share cores is measured separately, on real plans: ``slowdowns``)."""
    import torch

    from burst.graph import program_weights, run_node

    weights = program_weights(program)
    samples: dict[str, list[float]] = {n.name: [] for n in graph.nodes}
    torch.set_num_threads(1)
    with torch.no_grad():
        for _ in range(reps + 1):  # the first pass warms allocators and kernels
            env = dict(zip(graph.inputs, [x]))
            for node in graph.nodes:
                t0 = time.thread_time()
                env[node.name] = run_node(node, env, weights)
                samples[node.name].append((time.thread_time() - t0) * 1000.0)
    return {n: statistics.median(v[1:]) for n, v in samples.items()}


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


async def transfer_fit(store, inline: bool, sizes: list[int], reps: int) -> tuple[float, float]:
    """(fixed ms, ms per MB) of send + receive through ``store`` (or inline base64)."""
    import torch

    from burst.tensors import receive, send

    xs, ys = [], []
    for size in sizes:
        t = torch.zeros(size // 4, dtype=torch.float32)
        for i in range(reps):
            t0 = time.perf_counter()
            ref = await send(
                t,
                store,
                f"profile/t{size}/{i}",
                transport="inline" if inline else "store",
                limit_bytes=1 << 40,
            )
            await receive(ref, store)
            xs.append(size / 1e6)
            ys.append(_ms(t0))
    if not inline:
        await store.delete_prefix("profile/")
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
            out.append(
                {
                    "split": st_plan.split.value,
                    "workers": st_plan.workers,
                    "wall_ms": st.wall_ms,
                    "single_ms": whole,
                    "leg_single_ms": share,
                    "legs_ms": list(st.worker_compute_ms),
                }
            )
    return out


def slowdowns(observations: list[dict]) -> dict[str, dict[int, float]]:
    """Measured compute over its single-thread time per (kind, legs), as a ratio of sums so
    that big stages weigh more than the many tiny ones whose time is mostly dispatch."""
    sums: dict[tuple[str, int], list[float]] = {}
    for o in observations:
        if o["split"] == "serial":
            acc = sums.setdefault(("serial", 1), [0.0, 0.0])
            acc[0] += o["wall_ms"]
            acc[1] += o["single_ms"]
            continue
        acc = sums.setdefault((o["split"], o["workers"]), [0.0, 0.0])
        for measured, single in zip(o["legs_ms"], o["leg_single_ms"]):
            acc[0] += measured
            acc[1] += single
    out: dict[str, dict[int, float]] = {}
    for (kind, k), (measured, single) in sums.items():
        if single > 0:
            out.setdefault(kind, {})[k] = measured / single
    return out


def repo_path(repo, name: str) -> Path:
    return Path(repo) / name / "profile.json"
