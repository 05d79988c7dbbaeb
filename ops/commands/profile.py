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
The probe layers of the compute fit are exported once and kept (``ops/probe_cache.py``).
The measuring steps are in ``ops/commands/profile_measure.py``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

_DEFAULT_REGION = "us-east-1"
HELP = "Measure a model's performance profile (compute, transfers, invocations, VM service)."


def _endpoint_url(text: str) -> str:
    """``--sqs-endpoint``, checked as the flags are read: a bad URL was a botocore traceback at
    the end of the whole measuring run."""
    import argparse
    from urllib.parse import urlsplit

    from botocore.utils import is_valid_endpoint_url

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not is_valid_endpoint_url(text):
        raise argparse.ArgumentTypeError(
            f"must be an http(s) URL such as http://127.0.0.1:5000 or "
            f"https://sqs.us-east-1.amazonaws.com, got {text!r}"
        )
    return text


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
    parser.add_argument(
        "--reps", type=int, default=6, help="timed repetitions per measurement (default 6, >= 2)"
    )
    parser.add_argument("--out", type=Path, help="where to write (default REPO/NAME/profile.json)")
    parser.add_argument(
        "--vm-batches",
        help="batch sizes to time a VM replica at, each 1 to the model's max_batch_size "
        "(default 1,2,4,8 up to max_batch_size)",
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
    _add_sqs_arguments(parser)
    parser.add_argument(
        "--compute-only",
        action="store_true",
        help="measure only node times and VM service, and add them to the "
        "profile in --out (how the bundled reference profile covers every "
        "zoo model from one full run), with the compute fit of this model's nodes and "
        "the probe layers (compute.kinds, as a full run writes; python -m "
        "ops.perfgen_refit refits it over every model the profile measured)",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="with --compute-only: also run one function and the latency plan at each "
        "--workers, and fit this model's calibration against the rest of the profile in "
        "--out, which stays as it is",
    )


def _add_sqs_arguments(parser) -> None:
    parser.add_argument(
        "--sqs-endpoint",
        type=_endpoint_url,
        help="also time tensors through SQS at this endpoint (moto, or "
        "https://sqs.REGION.amazonaws.com with the usual AWS credentials): the queue "
        "transport's fit, transfer.sqs (ops/queue_fit.py)",
    )
    parser.add_argument(
        "--sqs-region",
        help="region of --sqs-endpoint (default: the one in an sqs.REGION.amazonaws.com "
        f"endpoint, else {_DEFAULT_REGION})",
    )


def run(args) -> int:
    from burst.graph import GraphError
    from burst.plan import PlanError
    from ops.cli import CliError

    try:
        return _run(args)
    except GraphError as exc:  # the burst path cannot run it: one line, not a traceback
        raise CliError(f"cannot profile {args.name} for the burst path: {exc}") from None
    except PlanError as exc:  # no plan fits these functions (it ended in a traceback)
        raise CliError(
            f"cannot profile {args.name} in {args.memory_mb} MB functions: {exc}"
        ) from None
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
    workers, batches = _checked(args, artifact)
    if args.sqs_endpoint:  # before the long run: it ended in a traceback after all of it
        from ops.commands.profile_measure import check_sqs, sqs_region

        args.sqs_region = sqs_region(args.sqs_endpoint, args.sqs_region)
        check_sqs(args.sqs_endpoint, args.sqs_region, profiler.Progress())
    elif args.sqs_region:
        raise CliError(
            "--sqs-region goes with --sqs-endpoint (no SQS is timed without one; for AWS's, "
            "--sqs-endpoint https://sqs.REGION.amazonaws.com)"
        )
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
    failed = None
    if args.sqs_endpoint:
        from ops.commands.profile_measure import with_sqs_fit

        profile, failed = with_sqs_fit(profile, args, profiler.Progress())
    profiler.write_profile(profile, out)
    print(f"wrote {out}")
    if failed:  # what was measured is kept; the exit status says the fit is missing
        print(f"tidegate profile: {failed}; {out} has no transfer.sqs", file=sys.stderr)
        return 1
    return 0


def _checked(args, artifact) -> tuple[list[int], list[int]]:
    """(worker counts, VM batch sizes) from the arguments, each checked: a bad value is a
    one-line error naming its flag, before anything is measured."""
    from burst.plan import FUNCTION_RUNTIME_MB, weight_budget_bytes
    from ops.cli import CliError

    workers = _int_list("--workers", args.workers)
    for bad, message in (
        (not workers or min(workers) < 1, "--workers must be positive"),
        (args.reps < 2, "--reps must be at least 2"),
        (args.cold_reps < 0, "--cold-reps must be >= 0"),
        (args.cold_workers < 1, "--cold-workers must be >= 1"),
        (not 128 <= args.memory_mb <= 10240, "--memory-mb must be 128-10240"),
        (
            weight_budget_bytes(args.memory_mb) == 0,
            f"--memory-mb {args.memory_mb}: a function this size has no room for weights (the "
            f"function runtime takes about {FUNCTION_RUNTIME_MB} MB)",
        ),
        (
            args.calibrate and not args.compute_only,
            "--calibrate goes with --compute-only (a full run calibrates anyway)",
        ),
    ):
        if bad:
            raise CliError(message)
    return workers, _vm_batches(args.vm_batches, artifact)


def _int_list(flag: str, text: str) -> list[int]:
    from ops.cli import CliError

    try:
        return sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise CliError(f"{flag} must be a comma-separated list of integers, got {text!r}") from None


def _vm_batches(text: str | None, artifact) -> list[int]:
    """The batch sizes to time: the default list up to the model's max_batch_size; given ones
    each 1 to it, else an error naming the limit (0 was timed as 1, 64 past a max of 8 dropped
    without a word: a user who asks for a batch means it, and the VM never runs one past it)."""
    from ops.cli import CliError

    most = artifact.config.max_batch_size
    if text is None:
        return [b for b in (1, 2, 4, 8) if b <= most]
    batches = _int_list("--vm-batches", text)
    if not batches or batches[0] < 1:
        raise CliError(f"--vm-batches must be batch sizes of at least 1, got {text!r}")
    if batches[-1] > most:
        raise CliError(
            f"--vm-batches {batches[-1]} is past {artifact.name}'s max_batch_size {most} "
            f"(its VM never runs a larger batch; give sizes 1-{most})"
        )
    return batches


def _compute_only(args, artifact, workers: list[int], batches: list[int], out: Path):
    """``--compute-only``: the profile in ``out`` with this model's node times, VM service and
    compute fit (a cold start measured before stays), and with ``--calibrate`` its
    calibration."""
    from ops import profiler
    from ops.cli import CliError
    from ops.commands.profile_measure import measure_compute
    from policies.profile import Profile, ProfileError

    try:
        into = Profile.from_json(json.loads(out.read_text()))
    except (OSError, ValueError, ProfileError) as exc:
        raise CliError(f"--compute-only adds to an existing profile: {out}: {exc}") from None
    say = profiler.Progress()
    graph, times, fit, x = measure_compute(artifact, args.reps, batches, say)
    old = into.models.get(artifact.name)
    if old is not None:
        times = replace(times, cold_start_ms=old.cold_start_ms, cold_billed_ms=old.cold_billed_ms)
    # the compute fit of this model's nodes and the probe layers, as a full run writes it (it
    # was timed and dropped: the profile kept the kinds it came with, or none)
    profile = replace(into.with_model(artifact.name, times), compute=fit)
    if not args.calibrate:
        return profile
    from ops.profile_calibrate import calibrate_into

    return asyncio.run(
        calibrate_into(
            profile, graph, artifact, args.repo, workers, args.reps, args.memory_mb, x, say
        )
    )
