"""``tidegate profile``: measure a model's performance profile on this machine.

Measures, with progress: every node's single-thread compute time (and a per-op-family fit for
models without one); send+receive time against bytes, inline and through the directory store;
a VM replica's service time per batch size; the local function runtime's warm round trip at each
fan-out and its cold start; and, running real plans through the burst service, how much slower a
leg computes when k legs share the cores, the rest of a stage's wall time (calibrated into the
round trips) and the gateway's own master invocation. Writes ``REPO/NAME/profile.json``, which
``tidegate plan``, the gateway and the simulator read. S3 transfer figures are kept from the
reference profile unless measured elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
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
        "--compute-only",
        action="store_true",
        help="measure only node times and VM service, and add them to the "
        "profile in --out (how the bundled reference profile covers every "
        "zoo model from one full run)",
    )


class _Progress:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}", flush=True)


def run(args) -> int:
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
        from policies.profile import Profile, ProfileError

        try:
            into = Profile.from_json(json.loads(out.read_text()))
        except (OSError, ValueError, ProfileError) as exc:
            raise CliError(f"--compute-only adds to an existing profile: {out}: {exc}") from None
        profile = into.with_model(
            artifact.name, _measure_compute(artifact, args.reps, batches, _Progress())[1]
        )
    else:
        profile = asyncio.run(
            _measure(artifact, args.repo, workers, args.reps, args.memory_mb, batches, _Progress())
        )
    out.write_text(json.dumps(profile.to_json(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


def _measure_compute(artifact, reps: int, batches: list[int], say):
    """(graph, ModelTimes, fit, example input): node times and the VM's service time."""
    import torch

    from burst.graph import build_graph
    from ops import profiler
    from policies.profile import ComputeFit, ModelTimes, Quantiles

    torch.set_num_threads(1)
    program = artifact.load_program()
    graph = build_graph(program, artifact.name)
    shape = [1 if d == -1 else d for d in artifact.config.inputs[0].shape]
    x = torch.randn(*shape)
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
    times = ModelTimes(tuple(shape), node_ms, {b: Quantiles.from_samples(v) for b, v in vm.items()})
    return graph, times, ComputeFit(rates, fixed), x


async def _measure(
    artifact, repo, workers: list[int], reps: int, memory_mb: int, batches: list[int], say
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
            source=_source(artifact.name, memory_mb),
            cores=os.cpu_count() or 1,
            transfer=transfer,
            compute=fit,
        ).with_model(artifact.name, times)
        return await _measure_runtime(
            profile, graph, artifact, repo, Path(tmp), workers, reps, memory_mb, x.numpy(), say
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
    profile, graph, artifact, repo, tmp: Path, workers, reps, memory_mb, x, say
):
    from burst.service import BurstService, BurstUnavailable

    svc = BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(tmp / "objects")},
        memory_mb=memory_mb,
        concurrency=max(workers) + 4,
        keep_alive_s=600,
        function_timeout_s=300,
        log_dir=tmp / "logs",
        max_workers=max(max(workers), 2),
    )
    await svc.start()
    try:
        profile = await _measure_invokes(svc, profile, workers, reps, memory_mb, say)
        runs = []
        for k in [1] + workers:
            for split in ("none",) if k == 1 else ("spatial", "output", "auto"):
                plan = await svc.plan_for(artifact.name, k, 1, split)
                if any(p.plan_id == plan.plan_id for p, _ in runs):
                    continue
                name = artifact.config.inputs[0].name
                n = reps if split in ("none", "auto") else max(2, reps // 2)
                try:
                    for _ in range(2):  # cold instances and first weight loads are not warm
                        await svc.infer(artifact.name, {name: x}, workers=k, split=split)
                    answers = [
                        await svc.infer(artifact.name, {name: x}, workers=k, split=split)
                        for _ in range(n)
                    ]
                except BurstUnavailable as exc:  # e.g. out of memory: measure the others
                    say(f"plan {split} x{k}: skipped ({exc})")
                    continue
                runs.append((plan, answers))
                say(
                    f"plan {split} x{k}: warm p50 "
                    f"{statistics.median(a.total_ms for a in answers):.1f} ms "
                    f"({sum(1 for s in plan.stages if s.split != 'serial')} split stages)"
                )
    finally:
        await svc.close()
    return _calibrate(profile, graph, svc, runs, say)


def _calibrate(profile, graph, svc, runs, say):
    """Slowdowns from the legs' compute; the rest of each stage's wall time beyond the model
    goes into the round trips at its fan-out; the gateway-side time into the master's."""
    from burst.candidates import stage_candidate
    from burst.planning import perf_model
    from ops import profiler
    from policies.profile import Quantiles

    node_ms = profile.models[graph.model].node_ms
    obs = [o for plan, answers in runs for o in profiler.stage_observations(node_ms, plan, answers)]
    slow, per_node = profiler.slowdowns(obs)
    for table in slow.values():
        table.setdefault(1, 1.0)
    profile = replace(profile, split_slowdown=slow, split_node_ms=per_node)
    say(
        "leg compute vs one thread alone: "
        + "; ".join(
            f"{kind} "
            + ", ".join(
                f"x{k} {v:.2f} + {per_node.get(kind, {}).get(k, 0.0):.3f} ms/node"
                for k, v in sorted(t.items())
            )
            for kind, t in slow.items()
        )
    )
    model = perf_model(graph, svc.plan_request(1), profile)
    residual: dict[int, list[float]] = {}
    master: list[float] = []
    for plan, answers in runs:
        for a in answers:
            for st_plan, st in zip(plan.stages, a.report.stages):
                if st_plan.split != "serial" and st_plan.workers > 1:
                    est = model.stage(stage_candidate(st_plan))
                    residual.setdefault(st_plan.workers - 1, []).append(st.wall_ms - est.mean_ms)
            master.append(a.total_ms - a.report.wall_ms)
    warm = dict(profile.invoke_warm_ms)
    for n, rs in residual.items():
        shift = statistics.median(rs)
        base = warm.get(n) or profile.invoke_ms(n)
        if shift <= 0.0:  # faster than the model: the round trip measured stays its floor
            say(f"fan-out {n}: stages took {shift:+.1f} ms against the model; round trip kept")
            continue
        warm[n] = Quantiles(tuple(max(0.0, v + shift) for v in base.values_ms))
        say(
            f"fan-out {n}: stages took {shift:+.1f} ms beyond the model; folded into the "
            f"round trip (warm p50 now {warm[n].median_ms:.1f} ms)"
        )
    io = model.fixed().mean_ms - float(
        sum(profile.master_overhead_ms.values_ms) / len(profile.master_overhead_ms.values_ms)
    )
    profile = replace(
        profile,
        invoke_warm_ms=warm,
        master_overhead_ms=Quantiles.from_samples([max(0.0, m - io) for m in master]),
    )
    say(
        f"gateway -> master invocation: p50 {profile.master_overhead_ms.median_ms:.1f} ms "
        f"beyond the plan"
    )
    return profile


def _source(name: str, memory_mb: int) -> str:
    import platform

    load = os.getloadavg()[0]
    return (
        f"tidegate profile {name} --memory-mb {memory_mb} on {platform.node()} "
        f"({os.cpu_count()} cores, {platform.processor() or platform.machine()}, load "
        f"average {load:.1f}) at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"node times are thread CPU time; prices: "
        f"policies.costs.PriceTable (AWS us-east-1 list prices)"
    )
