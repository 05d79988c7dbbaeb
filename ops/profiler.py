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


def example_inputs(config) -> dict[str, np.ndarray]:
    """One sample of each of the model's inputs, by name in the config's order (the program's):
    floats from a normal distribution, integers and booleans zero (an index valid anywhere)."""
    from vmpool.wire import numpy_dtype

    rng, out = np.random.default_rng(0), {}
    for spec in config.inputs:
        shape = [1 if d == -1 else d for d in spec.shape]
        dtype = numpy_dtype(spec.datatype, spec.name)
        out[spec.name] = (
            rng.standard_normal(shape).astype(dtype)
            if dtype.kind == "f"
            else np.zeros(shape, dtype)
        )
    return out


def _values(x) -> list:
    """The example's tensors in the program's input order (a dict by name, or one tensor)."""
    import torch

    return [torch.as_tensor(t) for t in (x.values() if isinstance(x, dict) else [x])]


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
        env = dict(zip(graph.inputs, _values(x)))
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


TRANSFER_REPS = 7  # round trips per size a transfer fit takes at least (``transfer_fit``)


async def transfer_fit(
    store,
    inline: bool,
    sizes: list[int],
    reps: int,
    *,
    transport: str | None = None,
    prefix: str = "profile/",
) -> tuple[float, float]:
    """(fixed ms, ms per MB) of send + receive through ``store`` (or inline base64): a line
    through each size's median of at least ``TRANSFER_REPS`` round trips, after one untimed
    (a first write of a size faults its pages in), the sizes taking turns. One line through
    every sample, each size's taken back to back, swung 0.7-3.2 ms/MB between VGG-11
    profiles minutes apart (8 MB: 3.9-15.7 ms in one run, slow for several in a row), and
    the plan with it. ``transport`` "queue" with an SQS store and a ``req/...`` prefix times
    its queues, ``reps`` each: each tensor on a queue of its own, made by its send, as a
    stage leg's is (ops/queue_fit.py)."""
    import torch

    from burst.tensors import receive, send

    transport = transport or ("inline" if inline else "store")
    # a queue's round trips make a queue each (ops/queue_fit.py warms its client apart)
    untimed, reps = (0, reps) if transport == "queue" else (1, max(reps, TRANSFER_REPS))
    tensors = {size: torch.zeros(size // 4, dtype=torch.float32) for size in sizes}
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    for i in range(untimed + reps):  # the sizes in turns: a slow spell slows them all alike
        for size, t in tensors.items():
            t0 = time.perf_counter()
            ref = await send(
                t, store, f"{prefix}t{size}/{i}/x", transport=transport, limit_bytes=1 << 40
            )
            touch_pages(await receive(ref, store))
            samples[size].append(_ms(t0))
    xs = [size / 1e6 for size in sizes]
    ys = [statistics.median(samples[size][untimed:]) for size in sizes]
    if not inline:
        await store.delete_prefix(prefix)
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(max(intercept, 0.0)), float(max(slope, 0.0))


PAGE_BYTES = 4096


def touch_pages(t) -> float:
    """Read one value of every memory page of ``t``, as a leg's first use of its input does:
    a tensor received from /dev/shm is a map of the file (burst25hop, abcae9d), and its pages
    fault in on that first read (1.5 MB: receive 0.27 ms, then 0.25 ms of faults), which a
    fit of send + receive alone would leave out (~0.16 ms/MB low)."""
    flat = t.reshape(-1)
    step = max(1, PAGE_BYTES // max(1, flat.element_size()))
    return float(flat[::step].sum()) if flat.numel() else 0.0


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
            xs = [t[:1].repeat(b, *([1] * (t.dim() - 1))) for t in _values(example)]
            module(*xs)
            samples = []
            for _ in range(reps):
                t0 = time.perf_counter()
                module(*xs)
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


def repo_path(repo, name: str) -> Path:
    return Path(repo) / name / "profile.json"


class Progress:
    """``tidegate profile``'s progress lines: seconds since the start, then the message."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}", flush=True)


def write_profile(profile, out: Path) -> None:
    """``out`` whole or not at all (a Ctrl-C while writing leaves the old file or none)."""
    import json
    import os

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(profile.to_json(), indent=1, sort_keys=True) + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def profile_source(name: str, memory_mb: int) -> str:
    import os
    import platform

    load = os.getloadavg()[0]
    return (
        f"tidegate profile {name} --memory-mb {memory_mb} on {platform.node()} "
        f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}, load "
        f"average {load:.1f}) at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"node times are thread CPU time; prices: "
        f"policies.costs.PriceTable (AWS us-east-1 list prices)"
    )
