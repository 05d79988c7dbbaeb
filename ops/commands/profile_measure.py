"""``tidegate profile``'s measuring steps (``ops/commands/profile.py`` reads the arguments and
writes the file): node times and VM service, transfer fits, invocation round trips, real plans
through a burst service on the local function runtime, and the model's own cold start."""

from __future__ import annotations

import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path


def measure_compute(artifact, reps: int, batches: list[int], say):
    """(graph, ModelTimes, fit, example input): node times and the VM's service time."""
    import torch

    from burst.graph import build_graph
    from ops import profiler
    from policies.profile import ComputeFit, ModelTimes, Quantiles

    torch.set_num_threads(1)
    program = artifact.load_program()
    graph = build_graph(program, artifact.name)
    x = profiler.example_inputs(artifact.config)  # every input, by name
    shape = next(iter(x.values())).shape
    say(
        f"{artifact.name}: {len(graph.nodes)} nodes; timing each node on one thread ({reps} passes)"
    )
    node_ms = profiler.node_times_ms(graph, program, x, reps)
    rates, fixed = profiler.fit_compute(graph, node_ms)
    # the bytes-aware fit, for models this profile has not measured: this model's nodes and
    # probe layers of the kinds it may lack (SiLU, concat, attention, token-batched linears)
    from ops.perfgen_fit import fit_kinds, graph_rows, probe_rows

    kinds = fit_kinds(graph_rows(graph, node_ms) + probe_rows(reps, say))
    say(f"compute: {sum(node_ms.values()):.1f} ms per sample on one thread")
    vm = profiler.vm_service_ms(program, x, batches, max(2, reps // 2), threads=os.cpu_count() or 1)
    say(
        "VM service (whole model, all cores): "
        + ", ".join(f"batch {b} {statistics.median(v):.1f} ms" for b, v in vm.items())
    )
    plain = profiler.node_times_ms(graph, program, x, reps, packed=False)
    convs = [n.name for n in graph.nodes if "conv" in n.op]
    say(
        f"convs: {sum(node_ms[n] for n in convs):.1f} ms packed, "
        f"{sum(plain[n] for n in convs):.1f} ms plain"
    )
    times = ModelTimes(
        tuple(shape),
        node_ms,
        {b: Quantiles.from_samples(v) for b, v in vm.items()},
        plain_node_ms={n: plain[n] for n in convs},
    )
    return graph, times, ComputeFit(rates, fixed, kinds), x


async def measure(
    artifact, repo, workers: list[int], reps: int, memory_mb: int, batches: list[int], cold, say
):
    """The whole profile of ``artifact`` on this machine: compute, transfers (the reference
    profile's S3 figures kept), invocations, real plans at ``workers``, and ``cold`` =
    (workers, reps) cold starts of the model's own functions (reps 0: none)."""
    from burst.planning import load_profile
    from ops import profiler

    graph, times, fit, x = measure_compute(artifact, reps, batches, say)
    base = load_profile()
    with tempfile.TemporaryDirectory(prefix="tidegate-profile-") as tmp:
        transfer = await measure_transfers(base.transfer, Path(tmp), reps, say)
        profile = replace(
            base,
            source=profiler.profile_source(artifact.name, memory_mb),
            cores=os.cpu_count() or 1,
            transfer=transfer,
            compute=fit,
            measured_models=(),  # the bundled models copied in are not measured here
        ).with_model(artifact.name, times)
        return await _measure_runtime(
            profile,
            graph,
            artifact,
            repo,
            Path(tmp),
            (workers, cold),
            reps,
            memory_mb,
            x,
            say,
        )


TRANSFER_SIZES = [16 << 10, 256 << 10, 2 << 20, 8 << 20]


async def measure_transfers(base: dict, scratch: Path, reps: int, say) -> dict:
    """``base`` with the inline and directory transfer fits measured. The directory one is
    timed where the burst service keeps tensors in flight (``burst.local_functions.
    memory_tensor_root``: /dev/shm when writable, else ``scratch``), not on the disk-backed
    scratch: on /tmp a tensor past 64 KB hops to a thread each way, and the fit read
    1.1 ms + 5.3 ms/MB there against 0.5 + 3.3 on /dev/shm in the same minute (burst25plan,
    load ~5), which priced every round of a plan too high and made the planner choose
    coarser stages with bigger halos."""
    import shutil

    from burst.local_functions import memory_tensor_root
    from burst.store.local_dir import LocalDirStore
    from ops import profiler
    from policies.profile import TransferFit

    transfer = dict(base)
    memory = memory_tensor_root({"kind": "dir"})
    root = Path(memory) if memory else scratch / "objects"
    try:
        store = LocalDirStore(root)
        for kind, inline in (("inline", True), ("dir", False)):
            fit = TransferFit(*await profiler.transfer_fit(store, inline, TRANSFER_SIZES, reps))
            transfer[kind] = fit
            where = "" if inline else f" (on {root}, where the service keeps tensors in flight)"
            say(f"transfer {kind}{where}: {fit.fixed_ms:.2f} ms + {fit.ms_per_mb:.2f} ms/MB")
    finally:
        if memory:
            shutil.rmtree(memory, ignore_errors=True)
    return transfer


async def _measure_invokes(svc, profile, workers, reps, memory_mb, say):
    """The profile with the no-op invocation round trips measured (warm per fan-out, cold)."""
    from ops import profiler
    from policies.profile import Quantiles

    fanouts = sorted({max(1, k - 1) for k in workers} | {1})
    warm, cold = await profiler.invoke_round_trips(
        svc._invoker, svc.platform["endpoint"], fanouts, reps * 3, memory_mb
    )
    say(
        "invocation round trip (no-op), warm p50: "
        + ", ".join(f"{n} at once {statistics.median(v):.1f} ms" for n, v in warm.items())
        + f"; cold {statistics.median(cold):.0f} ms"
    )
    profile = replace(
        profile,
        invoke_warm_ms={n: Quantiles.from_samples(v) for n, v in warm.items()},
        invoke_cold_ms=Quantiles.from_samples(cold),
    )
    return profile


async def _measure_runtime(
    profile, graph, artifact, repo, tmp: Path, fanouts, reps, memory_mb, x, say
):
    from burst.service import BurstService

    workers, (cold_workers, cold_reps) = fanouts
    svc = BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(tmp / "objects")},
        memory_mb=memory_mb,
        concurrency=max(*workers, cold_workers) + 4,
        keep_alive_s=600,
        function_timeout_s=300,
        log_dir=tmp / "logs",
        max_workers=max(*workers, cold_workers, 2),
    )
    await svc.start()
    try:
        # a memory size no plan fits is refused now (PlanError), not after every plan is tried
        await svc.plan_for(artifact.name, max(workers), 1, "auto")
        profile = await _measure_invokes(svc, profile, workers, reps, memory_mb, say)
        from ops.profile_calibrate import run_plans

        kinds = ("spatial", "output", "auto")
        plans = [(1, "none")] + [(k, s) for k in workers if k > 1 for s in kinds]
        runs = await run_plans(svc, artifact, graph, x, plans, reps, say)
        if not runs:  # it ended in "ProfileError: no samples" (a traceback) after all that
            from ops.cli import CliError

            raise CliError(
                f"no plan of {artifact.name} ran in {memory_mb} MB functions (each is skipped "
                f"above, with why); nothing written"
            )
        if cold_reps:
            profile = await _measure_cold(svc, profile, artifact, x, cold_workers, cold_reps, say)
    finally:
        await svc.close()
    from ops.profile_calibrate import calibrate
    from ops.profile_second_pass import second_pass

    fitted = calibrate(profile, graph, svc, runs, say)
    # the "auto" plans above were the previous profile's: run the new one's too if it differs
    config = (workers, reps, memory_mb)
    return await second_pass(profile, fitted, graph, artifact, repo, runs, config, x, say)


async def _measure_cold(svc, profile, artifact, x, workers: int, reps: int, say):
    """The profile with this model's cold start at ``workers`` (keyed by its plan's workers)."""
    from ops import profiler
    from policies.profile import Quantiles

    plan = await svc.plan_for(artifact.name, workers, 1)
    inputs = dict(x)
    extra, billed = await profiler.model_cold_starts(svc, artifact.name, inputs, workers, reps, say)
    if not extra:
        say("cold start: no sample counted; the profile keeps the no-op cold round trip only")
        return profile
    times = profile.models[artifact.name]
    times = replace(
        times,
        cold_start_ms={**times.cold_start_ms, plan.workers: Quantiles.from_samples(extra)},
        cold_billed_ms={**times.cold_billed_ms, plan.workers: Quantiles.from_samples(billed)},
    )
    say(f"cold start of {artifact.name} x{plan.workers}: p50 +{statistics.median(extra):.0f} ms")
    return profile.with_model(artifact.name, times)


# SQS: checked before the long run, timed after it -------------------------------------------


def _sqs_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    from burst.store.base import StoreError

    return (StoreError, BotoCoreError, ClientError, ValueError, OSError)


def sqs_region(endpoint: str, region: str | None) -> str:
    """``--sqs-region``, or the region an ``sqs.REGION.amazonaws.com`` endpoint names (a region
    beside it that differs is an error: AWS refuses the signature, after the whole run)."""
    import re
    from urllib.parse import urlsplit

    from ops.cli import CliError

    named = re.fullmatch(
        r"sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?", urlsplit(endpoint).hostname or ""
    )
    if named and region and region != named.group(1):
        raise CliError(
            f"--sqs-region {region} but --sqs-endpoint {endpoint} is in {named.group(1)}"
        )
    return region or (named.group(1) if named else "us-east-1")


def check_sqs(endpoint: str, region: str, say) -> None:
    """One message through a queue at ``endpoint`` (made, sent, received, deleted): reachable,
    with credentials it takes; else a one-line error before anything is measured."""
    import asyncio

    from ops.cli import CliError

    say(f"checking SQS at {endpoint} ({region})")
    try:
        asyncio.run(_one_message(endpoint, region))
    except _sqs_errors() as exc:  # unreachable, no credentials, refused: one line
        raise CliError(f"--sqs-endpoint {endpoint}: {_reason(exc)}; nothing measured") from None


async def _one_message(endpoint: str, region: str) -> None:
    import uuid

    from burst.store.factory import make_store
    from ops.queue_fit import sqs_store_config

    cfg = sqs_store_config(endpoint, region, {"kind": "memory"})
    store = make_store({**cfg, "max_attempts": 2})
    prefix = f"req/profile-check-{uuid.uuid4().hex[:12]}/"
    try:
        await store.put(prefix + "check/0/x", b"x")
        await store.get(prefix + "check/0/x")
        await store.delete_prefix(prefix)
    finally:
        await store.close()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def with_sqs_fit(profile, args, say):
    """(profile with ``transfer["sqs"]`` measured, None), or (profile as it was, why not): a
    queue that fails after the check costs the fit, not the rest of the run."""
    import asyncio

    from ops.queue_fit import measure_sqs_fit, sqs_store_config

    with tempfile.TemporaryDirectory(prefix="tidegate-profile-sqs-") as tmp:
        backing = {"kind": "dir", "root": str(Path(tmp) / "claims")}
        cfg = sqs_store_config(args.sqs_endpoint, args.sqs_region, backing)
        try:
            fit = asyncio.run(measure_sqs_fit(cfg, args.reps))
        except _sqs_errors() as exc:  # one line, and the profile is kept
            return profile, f"the SQS fit at {args.sqs_endpoint} failed: {_reason(exc)}"
    say(f"transfer sqs: {fit.fixed_ms:.2f} ms + {fit.ms_per_mb:.2f} ms/MB")
    return replace(profile, transfer={**profile.transfer, "sqs": fit}), None
