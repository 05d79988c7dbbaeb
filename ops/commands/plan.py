"""``tidegate plan``: the plan the gateway would run for a model, with its predicted latency and cost.

The plan comes from ``burst.planning.model_plan`` with the same request the gateway's burst
service builds from the same settings (``--config``, ``TIDEGATE_*``), so a request sent with
``X-Tidegate-Workers: N`` runs exactly the plan ``tidegate plan NAME --workers N`` prints.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

HELP = (
    "Plan a model for the burst path (per stage: split, bytes, weights per worker) and "
    "predict its p50/p99 latency and cost per request."
)


def add_arguments(parser) -> None:
    parser.add_argument("name", help="model name in the repository")
    parser.add_argument("--repo", required=True, help="model repository directory")
    parser.add_argument(
        "--workers",
        type=int,
        help="largest number of functions per split stage "
        "(default: the config's burst.default_workers)",
    )
    parser.add_argument(
        "--objective",
        choices=("latency", "cost"),
        default="latency",
        help="latency (default): the fastest plan; cost: the cheapest meeting --slo-ms",
    )
    parser.add_argument(
        "--slo-ms",
        type=float,
        help="latency SLO for --objective cost (required there): the cheapest plan predicted "
        "5%% under it where one is, else the cheapest plan meeting it (no default)",
    )
    parser.add_argument(
        "--percentile",
        type=float,
        default=0.99,
        help="percentile the SLO applies to (default 0.99)",
    )
    parser.add_argument(
        "--split",
        choices=("auto", "spatial", "output", "none"),
        default="auto",
        help="auto (default): the planner chooses; or force spatial tiles, output "
        "channels/features, or none (the whole model in one function)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        help="memory per function in MB (default: the config's burst.memory_mb)",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size to plan for (default 1)")
    _add_inputs(parser)


def _add_inputs(parser) -> None:
    """The transport, config and profile the plan is made with, and its output form."""
    parser.add_argument(
        "--transport",
        choices=("auto", "inline", "store", "queue", "per-stage"),
        help="how tensors travel between master and workers (default: config); per-stage: "
        "the planner picks inline, store or queue (sqs stores) for each stage",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML settings file, as for tidegate serve (default: its [burst] defaults)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile JSON (default: REPO/NAME/profile.json, else the bundled reference profile)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the plan as JSON with predicted_p50_ms, predicted_p99_ms "
        "and cost_usd at the top level",
    )


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f}"


def _range(values: list[int]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return _mb(lo) if lo == hi else f"{_mb(lo)}..{_mb(hi)}"


def render(
    plan,
    prediction=None,
    percentile: float = 0.99,
    asked_workers: int = 0,
    slo_ms: float | None = None,
    forced: bool = False,
) -> str:
    """A human-readable table of the plan's stages (with predictions when given); a warning
    where the predicted ``percentile`` misses ``slo_ms`` (a forced split is not searched)."""
    from policies.perf import percentile_ms

    lines = [
        f"plan {plan.plan_id}  model {plan.model}  batch {plan.batch}  workers {plan.workers}"
        f"  split {plan.split}  memory {plan.memory_mb} MB  transport {plan.transport}",
        f"{'stage':>5} {'split':<8} {'layout':<13} {'nodes':>5} {'workers':>7} "
        f"{'in MB/worker':>14} {'out MB/worker':>14} {'weights MB/worker':>18}"
        + (f" {'p50 ms':>8} {'p99 ms':>8}" if prediction else ""),
    ]
    for i, st in enumerate(plan.stages):
        if st.split == "spatial":
            layout = "x".join(str(v) for v in st.grid)
        elif st.split == "output":
            layout = f"{st.workers} parts"
        else:
            layout = "master"
        if st.transport:  # the planner's per-stage choice
            layout = f"{layout} {st.transport}"
        if not st.packed:  # convs plain: no room for their packed copies (policies.packing)
            layout = f"{layout} plain"
        row = (
            f"{st.index:>5} {st.split.value:<8} {layout:<13} {len(st.nodes):>5} "
            f"{st.workers:>7} {_range(st.bytes_in):>14} {_range(st.bytes_out):>14} "
            f"{_range(st.weight_bytes):>18}"
        )
        if prediction:
            e = prediction.stages[i]
            row += f" {e.mean_ms:>8.1f} {percentile_ms(e.mean_ms, e.var_ms2, percentile):>8.1f}"
        lines.append(row)
    t = plan.totals
    lines.append(
        f"totals: {t['stages']} stages ({t['split_stages']} split), "
        f"{t['invocations']} worker invocations, "
        f"{_mb(t['bytes_to_workers'])} MB to workers, "
        f"{_mb(t['bytes_from_workers'])} MB back, "
        f"max worker weights {_mb(t['max_worker_weight_bytes'])} MB, "
        f"master weights {_mb(t['master_weight_bytes'])} MB "
        f"(model {_mb(t['model_weight_bytes'])} MB)"
    )
    if prediction:
        lines.append(
            f"predicted: p50 {prediction.p50_ms:.1f} ms, p99 {prediction.p99_ms:.1f} ms,"
            f" cost ${prediction.cost_usd:.8f} per request"
        )
    lines += _notes(plan, prediction, percentile, asked_workers, slo_ms, forced)
    return "\n".join(lines)


def _notes(plan, prediction, percentile, asked_workers, slo_ms, forced) -> list[str]:
    """What a reader of the table should be told: fewer workers than asked, a missed SLO,
    weights that do not fit."""
    lines: list[str] = []
    t = plan.totals
    if asked_workers > plan.workers and plan.split == "none":
        lines.append(
            f"note: asked for {asked_workers} workers; no split pays here, so the plan (the one "
            f"the gateway runs) is the whole model in one function"
        )
    elif asked_workers > plan.workers:
        lines.append(
            f"note: asked for {asked_workers} workers; the widest stage uses {plan.workers}"
        )
    if slo_ms is not None and prediction and prediction.percentile_ms(percentile) > slo_ms:
        lines.append(
            f"warning: predicted p{percentile * 100:g} "
            f"{prediction.percentile_ms(percentile):.1f} ms misses the {slo_ms:g} ms SLO"
            + (f" (the split is forced to {plan.split})" if forced else "")
        )
    if not t.get("fits_memory", True):
        from burst.plan import weight_budget_bytes

        lines.append(
            f"warning: weights exceed the {_mb(weight_budget_bytes(plan.memory_mb))} MB a "
            f"{plan.memory_mb} MB function holds; use more workers, --split output or a larger "
            f"--memory-mb"
        )
    return lines


def _settings(args):
    from pydantic import ValidationError

    from gateway.settings import Settings, UnknownSetting, describe_error
    from ops.cli import CliError

    burst = {
        k: v
        for k, v in (("memory_mb", args.memory_mb), ("transport", args.transport))
        if v is not None
    }
    try:
        return Settings.load(args.config, repo=args.repo, **({"burst": burst} if burst else {}))
    except FileNotFoundError:
        raise CliError(f"config file not found: {args.config}") from None
    except (ValidationError, UnknownSetting) as exc:
        raise CliError(describe_error(exc)) from None
    except Exception as exc:  # TOML syntax errors and the like
        raise CliError(f"cannot read settings {args.config}: {exc}") from None


def _plan_json(args, plan, prediction, asked_workers: int) -> dict:
    """``--json``: the plan with its predicted latency and cost, per stage too."""
    from policies.perf import percentile_ms

    out = {
        **plan.to_dict(),
        "predicted_p50_ms": round(prediction.p50_ms, 3),
        "predicted_p99_ms": round(prediction.p99_ms, 3),
        "cost_usd": prediction.cost_usd,
        "objective": args.objective,
        "workers_asked": asked_workers,  # "workers" is what the plan uses: 1 where no split pays
        "slo_ms": args.slo_ms,
        "slo_met": None
        if args.slo_ms is None
        else prediction.percentile_ms(args.percentile) <= args.slo_ms,
        "percentile": args.percentile,
        "stage_predictions": [
            {
                "p50_ms": round(e.mean_ms, 3),
                "p99_ms": round(percentile_ms(e.mean_ms, e.var_ms2, 0.99), 3),
                "cost_usd": e.cost_usd,
            }
            for e in prediction.stages
        ],
    }
    return out


def _check_numbers(args) -> None:
    from ops.cli import CliError

    if not 0 < args.percentile < 1:
        raise CliError(f"--percentile must be between 0 and 1 (e.g. 0.99), got {args.percentile:g}")
    if args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    if args.slo_ms is not None and not args.slo_ms > 0:
        raise CliError(f"--slo-ms must be > 0, got {args.slo_ms:g}")


def _profile(args):
    """The --profile file as a Profile; CliError naming the file (a bare "Expecting value"
    or "[Errno 2]" does not say which file it is about)."""
    from ops.cli import CliError
    from policies.profile import Profile, ProfileError

    try:
        return Profile.from_json(json.loads(args.profile.read_text()))
    except FileNotFoundError:
        raise CliError(f"--profile {args.profile}: No such file") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"--profile {args.profile} is not JSON: {exc}") from None
    except (ProfileError, OSError, ValueError, TypeError, KeyError) as exc:
        raise CliError(f"--profile {args.profile}: {exc}") from None


def run(args) -> int:
    from burst.graph import GraphError, build_graph
    from burst.plan import PlanError
    from burst.planning import Objective, load_profile, model_plan, predict_plan
    from burst.service import BurstService
    from ops.cli import CliError
    from policies.profile import ProfileError
    from vmpool.artifact import ArtifactError, load_artifact

    _check_numbers(args)
    settings = _settings(args)
    try:
        artifact = load_artifact(args.repo, args.name)
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    if args.batch > artifact.config.max_batch_size:
        raise CliError(
            f"batch {args.batch} exceeds the model's max_batch_size "
            f"{artifact.config.max_batch_size}"
        )
    if args.objective == "cost" and args.slo_ms is None:
        raise CliError("--objective cost needs --slo-ms")
    workers = args.workers if args.workers is not None else settings.burst.default_workers
    if workers > settings.burst.max_workers:  # (the gateway answers such a request 400)
        raise CliError(
            f"--workers {workers} is above burst.max_workers ({settings.burst.max_workers}), "
            "the most a request may ask for"
        )
    service = BurstService.from_settings(settings)  # not started: only its plan settings
    request = dataclasses.replace(
        service.plan_request(workers, args.batch, args.split),
        objective=Objective(args.objective),
        slo_ms=args.slo_ms,
        percentile=args.percentile,
    )
    try:
        profile = _profile(args) if args.profile else load_profile(args.repo, args.name)
        graph = build_graph(artifact.load_program(), artifact.name)
        plan = model_plan(graph, artifact.config, request, profile)
        prediction = predict_plan(graph, plan, request, profile)
    except (GraphError, PlanError, ProfileError, OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(_plan_json(args, plan, prediction, workers), indent=2, sort_keys=True))
    else:
        print(
            render(
                plan,
                prediction,
                args.percentile,
                asked_workers=workers,
                slo_ms=args.slo_ms,
                forced=args.split != "auto",
            )
        )
    return 0
