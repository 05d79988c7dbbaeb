"""``tidegate tune``: search a policy's parameters on a trace for the cheapest that meets a target."""

from __future__ import annotations

import json
import sys

HELP = (
    "Tune a policy preset's parameters on a trace (Optuna, simulated): minimise cost subject "
    "to an SLO attainment target; print the best parameters and the cost/attainment front, "
    "and write a config snippet `tidegate serve --config` accepts."
)


def add_arguments(parser) -> None:
    from ops.commands.simulate import add_arguments as sim_arguments

    sim_arguments(parser, for_tune=True)
    parser.add_argument(
        "--slo-attainment",
        type=float,
        default=0.99,
        help="share of requests that must meet the SLO (default 0.99)",
    )
    parser.add_argument("--trials", type=int, default=20, help="simulations to run (default 20)")
    parser.add_argument(
        "--timeout-s",
        type=float,
        help="stop searching after this many seconds (default: no limit, --trials decides)",
    )
    parser.add_argument(
        "--out",
        default="tidegate-tuned.toml",
        help="where to write the config snippet (default tidegate-tuned.toml); with --config, "
        "the whole of that config with the tuned policy in place ([trace] and [simulate] "
        "left out), so serving it keeps its ledger, admin key, VMs and burst settings",
    )


def run(args) -> int:
    from ops.commands.simulate import load_inputs
    from ops.tune import config_max_replicas, tune

    _check_arguments(args)
    trace, profile, cfg = load_inputs(args)
    print(
        f"tuning {args.policy} on {trace.name} ({len(trace)} requests, SLO "
        f"{profile.slo_ms:g} ms, target {_share(args.slo_attainment)}), {args.trials} trials",
        file=sys.stderr,
    )

    def progress(t) -> None:
        print(
            f"  trial {t.number:>3}: cost ${t.cost_usd:.4f}  attainment {t.slo_attainment:.4f}",
            file=sys.stderr,
        )

    result = tune(
        trace,
        args.policy,
        profile,
        target=args.slo_attainment,
        trials=args.trials,
        seed=args.seed,
        slo_ms_by_tenant=cfg.slo_ms_by_tenant,
        tick_s=cfg.tick_s,
        timeout_s=args.timeout_s,
        on_trial=progress,
        async_setup=cfg.async_setup,
        max_replicas=config_max_replicas(cfg.settings),
    )
    _print_front(result)
    if result.best is None:
        reached = max(t.slo_attainment for t in result.trials)
        print(
            f"no trial met {_share(args.slo_attainment)} (the best of {len(result.trials)}: "
            f"{_share(reached)}); nothing written",
            file=sys.stderr,
        )
        return 1
    _write_best(args, result, trace.name, cfg.tick_s)
    return 0


def _check_arguments(args) -> None:
    from ops.cli import CliError
    from ops.commands.outputs import check_writable
    from ops.tune import SPACES

    from ops.commands.simulate import MAX_SLO_MS

    slo_ms = getattr(args, "slo_ms", None)
    if slo_ms is not None and not 0 < slo_ms < float("inf"):
        raise CliError("--slo-ms must be a finite number > 0")
    if slo_ms is not None and slo_ms > MAX_SLO_MS:
        raise CliError(f"--slo-ms {slo_ms:g} is over a day ({MAX_SLO_MS:g} ms): a typo?")
    if not 0 < args.slo_attainment <= 1:
        raise CliError("--slo-attainment must be in (0, 1]")
    if args.policy not in SPACES:
        raise CliError(f"cannot tune {args.policy!r}; tunable: {', '.join(SPACES)}")
    if args.trials < 1:
        raise CliError("--trials must be >= 1")
    if args.timeout_s is not None and not args.timeout_s > 0:
        raise CliError("--timeout-s must be > 0")
    check_writable(args.out, "--out")


def _print_front(result) -> None:
    print("cost/attainment front:")
    print(f"  {'trial':>5}  {'cost $':>10}  {'attain %':>8}  params")
    for t in result.front():
        shown = ", ".join(f"{k.split('.', 1)[1]}={_short(v)}" for k, v in t.params.items())
        print(f"  {t.number:>5}  {t.cost_usd:>10.4f}  {t.slo_attainment * 100:>8.2f}  {shown}")


def _write_best(args, result, trace_name: str, tick_s: float) -> None:
    """Print the best trial, write its config snippet and (with --json) every trial."""
    from ops.commands.outputs import write_text
    from ops.sim.config import snippet

    best = result.best
    print(
        f"best: trial {best.number}, cost ${best.cost_usd:.4f}, attainment "
        f"{best.slo_attainment:.4f}"
    )
    for key, value in best.params.items():
        print(f"  {key} = {_short(value)}")
    text = snippet(result.best_spec, tick_s)
    head = (
        f"# tidegate tune --policy {args.policy} on {trace_name}: cost "
        f"${best.cost_usd:.4f}, attainment {best.slo_attainment:.4f}\n"
    )
    if args.config:  # the whole serve config, tuned (ops/tune_config.py)
        from ops.tune_config import serve_config

        where = " ".join(str(args.config).split())  # (a newline in it would end the comment)
        head += f"# {where} with the tuned routing, [autoscaling] and [vm] replicas\n"
        text = serve_config(args.config, text)
    write_text(args.out, head + text, "--out")
    print(f"{'config' if args.config else 'config snippet'}: {args.out}", file=sys.stderr)
    if args.json_out:
        write_text(
            args.json_out,
            json.dumps(
                {
                    "policy": args.policy,
                    "target": args.slo_attainment,
                    "best": best.__dict__,
                    "front": [t.__dict__ for t in result.front()],
                    "trials": [t.__dict__ for t in result.trials],
                },
                indent=2,
            ),
            "--json",
        )


def _share(x: float) -> str:
    """A share as a percentage with the digits it has: a 0.99999 target read "100.00%"."""
    return f"{100 * x:.10g}%"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
