# size: every measuring step and the one-line errors of each (the burst graph refused, Ctrl-C)
"""``tidegate profile``: measure a model's performance profile on this machine.

Measures, with progress: every node's single-thread compute time (and a per-op-family fit for
models without one); send+receive time against bytes, inline and through the directory store;
a VM replica's service time per batch size; the local function runtime's warm round trip at each
fan-out and its cold start; running real plans through the burst service, how much slower a
leg computes when k legs share the cores, the rest of a stage's wall time (calibrated into the
round trips) and the gateway's own master invocation; and the model's cold start as a request
sees it (fresh instances: process start, torch import, weight load, to the first answer).
Writes ``REPO/NAME/profile.json``, which ``tidegate plan``, the gateway and the simulator read.
S3 transfer figures are kept from the reference profile unless measured elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HELP = "Measure a model's performance profile (compute, transfers, invocations, VM service)."


def add_arguments(parser) -> None:
    parser.add_argument("name", help="model name in the repository")
    parser.add_argument("--repo", required=True, help="model repository directory")
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=1024,
        help="memory size per function while measuring (default 1024)",
    )
    parser.add_argument(
        "--workers", default="2,4", help="worker counts to run real plans at (default 2,4)"
    )
    parser.add_argument("--reps", type=int, default=6, help="timed repetitions per measurement")
    parser.add_argument("--out", type=Path, help="where to write (default REPO/NAME/profile.json)")
    parser.add_argument(
        "--vm-batches",
        default="1,2,4,8",
        help="batch sizes to time a VM replica at (default 1,2,4,8; at most the "
        "model's max_batch_size)",
    )
    parser.add_argument(
        "--cold-reps",
        type=int,
        default=3,
        help="cold starts of the model's functions to time (fresh instances, model load "
        "included; default 3, 0 to skip)",
    )
    parser.add_argument(
        "--cold-workers",
        type=int,
        default=4,
        help="workers of the plan whose cold start is timed (default 4, the gateway's "
        "burst.default_workers)",
    )
    parser.add_argument(
        "--sqs-endpoint",
        help="also time tensors through SQS at this endpoint (moto, or "
        "https://sqs.REGION.amazonaws.com with the usual AWS credentials): the queue "
        "transport's fit, transfer.sqs (ops/queue_fit.py)",
    )
    parser.add_argument("--sqs-region", default="us-east-1", help="region of --sqs-endpoint")
    parser.add_argument(
        "--compute-only",
        action="store_true",
        help="measure only node times and VM service, and add them to the "
        "profile in --out (how the bundled reference profile covers every "
        "zoo model from one full run)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="with --compute-only: also run one function and the latency plan at each "
        "--workers, and fit this model's calibration against the rest of the profile in "
        "--out, which stays as it is",
    )


def run(args) -> int:
    from burst.graph import GraphError
    from ops.cli import CliError

    try:
        return _run(args)
    except GraphError as exc:  # the burst path cannot run it: one line, not a traceback
        raise CliError(f"cannot profile {args.name} for the burst path: {exc}") from None
    except KeyboardInterrupt:  # Ctrl-C: one line, and no profile.json, whole or half
        out = args.out or Path(args.repo) / args.name / "profile.json"
        print(f"tidegate profile: interrupted; {out} not written", file=sys.stderr)
        return 130


def _run(args) -> int:
    from ops import profiler
    from ops.cli import CliError
    from vmpool.artifact import ArtifactError, load_artifact

    try:
        artifact = load_artifact(args.repo, args.name)
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    try:
        workers = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        raise CliError(
            f"--workers must be a comma-separated list of integers, got {args.workers!r}"
        ) from None
    if not workers or min(workers) < 1 or args.reps < 2:
        raise CliError("--workers must be positive and --reps at least 2")
    if args.cold_reps < 0 or args.cold_workers < 1 or not 128 <= args.memory_mb <= 10240:
        raise CliError("--cold-reps must be >= 0, --cold-workers >= 1, --memory-mb 128-10240")
    if args.calibrate and not args.compute_only:
        raise CliError("--calibrate goes with --compute-only (a full run calibrates anyway)")
    cold = (args.cold_workers, args.cold_reps)
    try:
        batches = [
            b
            for b in sorted({int(b) for b in args.vm_batches.split(",") if b.strip()})
            if 1 <= b <= artifact.config.max_batch_size
        ] or [1]
    except ValueError:
        raise CliError(
            f"--vm-batches must be a comma-separated list of integers, got {args.vm_batches!r}"
        ) from None
    out = args.out or Path(args.repo) / args.name / "profile.json"
    if args.compute_only:
        profile = _compute_only(args, artifact, workers, batches, out)
    else:
        profile = asyncio.run(
            _measure(
                artifact,
                args.repo,
                workers,
                args.reps,
                args.memory_mb,
                batches,
                cold,
                profiler.Progress(),
            )
        )
    if args.sqs_endpoint:
        profile = _with_sqs_fit(profile, args, profiler.Progress())
    profiler.write_profile(profile, out)
    print(f"wrote {out}")
    return 0


def _compute_only(args, artifact, workers: list[int], batches: list[int], out: Path):
    """``--compute-only``: the profile in ``out`` with this model's node times and VM service
    (a cold start measured before stays), and with ``--calibrate`` its calibration."""
    from ops import profiler
    from ops.cli import CliError
    from policies.profile import Profile, ProfileError

    try:
        into = Profile.from_json(json.loads(out.read_text()))
    except (OSError, ValueError, ProfileError) as exc:
        raise CliError(f"--compute-only adds to an existing profile: {out}: {exc}") from None
    say = profiler.Progress()
    graph, times, _, x = _measure_compute(artifact, args.reps, batches, say)
    old = into.models.get(artifact.name)
    if old is not None:
        times = replace(times, cold_start_ms=old.cold_start_ms, cold_billed_ms=old.cold_billed_ms)
    profile = into.with_model(artifact.name, times)
    if not args.calibrate:
        return profile
    from ops.profile_calibrate import calibrate_into

    return asyncio.run(
        calibrate_into(
            profile, graph, artifact, args.repo, workers, args.reps, args.memory_mb, x, say
        )
    )


def _with_sqs_fit(profile, args, say):
    from ops.queue_fit import measure_sqs_fit, sqs_store_config

    with tempfile.TemporaryDirectory(prefix="tidegate-profile-sqs-") as tmp:
        backing = {"kind": "dir", "root": str(Path(tmp) / "claims")}
        cfg = sqs_store_config(args.sqs_endpoint, args.sqs_region, backing)
        fit = asyncio.run(measure_sqs_fit(cfg, args.reps))
    say(f"transfer sqs: {fit.fixed_ms:.2f} ms + {fit.ms_per_mb:.2f} ms/MB")
    return replace(profile, transfer={**profile.transfer, "sqs": fit})


def _measure_compute(artifact, reps: int, batches: list[int], say):
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
    return graph, times, ComputeFit(rates, fixed), x


async def _measure(
    artifact, repo, workers: list[int], reps: int, memory_mb: int, batches: list[int], cold, say
):
    from burst.planning import load_profile
    from ops import profiler
    from policies.profile import TransferFit

    graph, times, fit, x = _measure_compute(artifact, reps, batches, say)
    base = load_profile()
    transfer = dict(base.transfer)
    with tempfile.TemporaryDirectory(prefix="tidegate-profile-") as tmp:
        from burst.store.local_dir import LocalDirStore

        store = LocalDirStore(Path(tmp) / "objects")
        sizes = [16 << 10, 256 << 10, 2 << 20, 8 << 20]
        for kind, inline in (("inline", True), ("dir", False)):
            transfer[kind] = TransferFit(*await profiler.transfer_fit(store, inline, sizes, reps))
            say(
                f"transfer {kind}: {transfer[kind].fixed_ms:.2f} ms + "
                f"{transfer[kind].ms_per_mb:.2f} ms/MB"
            )
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
        profile = await _measure_invokes(svc, profile, workers, reps, memory_mb, say)
        from ops.profile_calibrate import run_plans

        kinds = ("spatial", "output", "auto")
        plans = [(1, "none")] + [(k, s) for k in workers if k > 1 for s in kinds]
        runs = await run_plans(svc, artifact, graph, x, plans, reps, say)
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
