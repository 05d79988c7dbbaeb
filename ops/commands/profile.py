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
The measuring steps are in ``ops/commands/profile_measure.py``.
"""

from __future__ import annotations

import asyncio
import json
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
    from ops.commands.profile_measure import measure
    from vmpool.artifact import ArtifactError, load_artifact

    try:
        artifact = load_artifact(args.repo, args.name)
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    workers, batches = _checked(args, artifact.config.max_batch_size)
    cold = (args.cold_workers, args.cold_reps)
    out = args.out or Path(args.repo) / args.name / "profile.json"
    if args.compute_only:
        profile = _compute_only(args, artifact, workers, batches, out)
    else:
        profile = asyncio.run(
            measure(
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


def _checked(args, max_batch_size: int) -> tuple[list[int], list[int]]:
    """(worker counts, VM batch sizes up to the model's ``max_batch_size``) from the arguments,
    each checked: a bad value is a one-line error before anything is measured."""
    from ops.cli import CliError

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
    try:
        batches = [
            b
            for b in sorted({int(b) for b in args.vm_batches.split(",") if b.strip()})
            if 1 <= b <= max_batch_size
        ] or [1]
    except ValueError:
        raise CliError(
            f"--vm-batches must be a comma-separated list of integers, got {args.vm_batches!r}"
        ) from None
    return workers, batches


def _compute_only(args, artifact, workers: list[int], batches: list[int], out: Path):
    """``--compute-only``: the profile in ``out`` with this model's node times and VM service
    (a cold start measured before stays), and with ``--calibrate`` its calibration."""
    from ops import profiler
    from ops.cli import CliError
    from ops.commands.profile_measure import measure_compute
    from policies.profile import Profile, ProfileError

    try:
        into = Profile.from_json(json.loads(out.read_text()))
    except (OSError, ValueError, ProfileError) as exc:
        raise CliError(f"--compute-only adds to an existing profile: {out}: {exc}") from None
    say = profiler.Progress()
    graph, times, _, x = measure_compute(artifact, args.reps, batches, say)
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
