"""``tidegate plan``: show how a model would be partitioned across functions."""

from __future__ import annotations

HELP = "Partition a model for the burst path and print the plan (per-stage splits and bytes)."


def add_arguments(parser) -> None:
    parser.add_argument("name", help="model name in the repository")
    parser.add_argument("--repo", required=True, help="model repository directory")
    parser.add_argument("--workers", type=int, required=True, help="functions per split stage")
    parser.add_argument("--split", choices=("auto", "spatial", "output", "none"), default="auto",
                        help="how to split layer groups: auto, spatial tiles, output "
                             "channels/features, or none (whole model in one function)")
    parser.add_argument("--memory-mb", type=int, default=1024,
                        help="memory per function in MB (default: 1024)")
    parser.add_argument("--batch", type=int, default=1, help="batch size to plan for")
    parser.add_argument("--transport", choices=("auto", "inline", "store"), default="auto",
                        help="how tensors travel between master and workers")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f}"


def _range(values: list[int]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return _mb(lo) if lo == hi else f"{_mb(lo)}..{_mb(hi)}"


def render(plan) -> str:
    """A human-readable table of the plan's stages."""
    lines = [f"plan {plan.plan_id}  model {plan.model}  batch {plan.batch}  workers {plan.workers}"
             f"  split {plan.split}  memory {plan.memory_mb} MB  transport {plan.transport}",
             f"{'stage':>5} {'split':<8} {'layout':<10} {'nodes':>5} {'workers':>7} "
             f"{'in MB/worker':>14} {'out MB/worker':>14} {'weights MB/worker':>18}"]
    for st in plan.stages:
        if st["split"] == "spatial":
            layout = "x".join(str(v) for v in st["grid"])
        elif st["split"] == "output":
            layout = f"{st['workers']} parts"
        else:
            layout = "master"
        lines.append(f"{st['index']:>5} {st['split']:<8} {layout:<10} {len(st['nodes']):>5} "
                     f"{st['workers']:>7} {_range(st['bytes_in']):>14} "
                     f"{_range(st['bytes_out']):>14} {_range(st['weight_bytes']):>18}")
    t = plan.totals
    lines.append(f"totals: {t['stages']} stages ({t['split_stages']} split), "
                 f"{t['invocations']} worker invocations, "
                 f"{_mb(t['bytes_to_workers'])} MB to workers, "
                 f"{_mb(t['bytes_from_workers'])} MB back, "
                 f"max worker weights {_mb(t['max_worker_weight_bytes'])} MB, "
                 f"master weights {_mb(t['master_weight_bytes'])} MB "
                 f"(model {_mb(t['model_weight_bytes'])} MB)")
    if not t.get("fits_memory", True):
        lines.append(f"warning: weights exceed half of {plan.memory_mb} MB per function; "
                     f"use more workers, --split output or a larger --memory-mb")
    return "\n".join(lines)


def run(args) -> int:
    from burst.graph import GraphError, build_graph
    from burst.plan import PlanError, make_plan
    from ops.cli import CliError
    from vmpool.artifact import ArtifactError, load_artifact

    try:
        artifact = load_artifact(args.repo, args.name)
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    if args.batch > artifact.config.max_batch_size:
        raise CliError(f"batch {args.batch} exceeds the model's max_batch_size "
                       f"{artifact.config.max_batch_size}")
    try:
        graph = build_graph(artifact.load_program(), artifact.name)
        plan = make_plan(graph, workers=args.workers, split=args.split,
                         memory_mb=args.memory_mb, transport=args.transport, batch=args.batch)
    except (GraphError, PlanError) as exc:
        raise CliError(str(exc)) from None
    print(plan.to_json(indent=2) if args.json else render(plan))
    return 0
