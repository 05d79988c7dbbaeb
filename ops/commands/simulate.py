"""``tidegate simulate``: replay a trace through the policies in simulated time."""

from __future__ import annotations

import json
import math
import sys

HELP = (
    "Simulate a routing + autoscaling policy on a request trace (simulated time: VM boot and "
    "billing, batching, function cold starts, fork-join plans) and compare it with VMs for "
    "the peak and the offline optimum."
)


def add_arguments(parser, for_tune: bool = False) -> None:
    """The flags of simulate; ``tune`` takes the same ones but ``--plot`` (it plots nothing)
    and ``--param`` (it searches the parameters), with its own ``--policy`` default."""
    parser.add_argument(
        "--trace",
        required=True,
        help="trace file (Azure 2019/2021, Azure LLM, Mooncake, InferAll, gaps, "
        "or CSV timestamp_s,model[,tenant]; gzip/xz/bzip2 too), a quoted glob of Azure 2019 "
        "daily files ('...anon.d*.csv': one day after another) or synth:KIND[:k=v,...] with "
        "KIND diurnal, flash-crowd, mmpp, steady, step",
    )
    parser.add_argument(
        "--trace-format",
        default="auto",
        help="force the trace format: azure2019, azure2021, azure-llm, mooncake, per-second, "
        "gaps or csv (default: told by the first line; docs/ops.md, Traces)",
    )
    parser.add_argument(
        "--policy",
        default="slo-aware" if for_tune else "all",
        help="preset to tune: slo-aware (default), threshold, knative, vm-reactive"
        if for_tune
        else "preset: vm-peak, vm-reactive, burst-only, threshold, knative, "
        "slo-aware, optimum; 'config' for the policy in --config; 'all' "
        "(default) for every preset",
    )
    parser.add_argument(
        "--model",
        help="model to simulate: keeps its requests of a multi-model trace "
        "(default: the trace's one model; a trace naming none runs as resnet18)",
    )
    parser.add_argument("--slo-ms", type=float, help="latency SLO (default: the profile's)")
    parser.add_argument(
        "--profile",
        help="profile.json from `tidegate profile`: its figures for the simulated model "
        "(default: REPO/MODEL/profile.json with --repo, else the production target; "
        "docs/ops.md says where each figure comes from)",
    )
    parser.add_argument(
        "--repo",
        help="model repository: plan --model's burst path exactly as "
        "`tidegate plan` and the gateway do (with a profile measured for the model; "
        "else the production target), and take its SLO and batching from its config "
        "(default: none, or the --config's repo when it holds --model)",
    )
    parser.add_argument("--vm-boot-s", type=float, help="VM boot time (default: the profile's)")
    _add_run_arguments(parser, for_tune)


def _add_run_arguments(parser, for_tune: bool) -> None:
    """How the run goes and what it writes: config, parameters, rate, seed, outputs."""
    from ops.cli import seed_int
    from ops.commands.simulate_fleet import FLEET_HELP, FLEETS

    parser.add_argument(
        "--config",
        help="a `tidegate serve` config: its routing_policy, "
        "[autoscaling] and tenants' SLOs; may add [trace] "
        "mapping rules and a [simulate] table (default: none: the preset's own "
        "parameters, the model's SLO for every tenant)",
    )
    if not for_tune:  # (tune searches the parameters: a fixed one was taken and ignored)
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a preset parameter: routing.<field> or autoscaling.<field> "
            "(repeatable; default: none)",
        )
    parser.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        help="multiply the trace's request rate (shape kept; default 1)",
    )
    parser.add_argument(
        "--seed", type=seed_int, help="seed of every random draw (default: [trace] seed, else 0)"
    )
    parser.add_argument(
        "--json", dest="json_out", help="write the summary JSON here (default: not written)"
    )
    if not for_tune:
        parser.add_argument("--fleet", choices=FLEETS, default="shared", help=FLEET_HELP)
        parser.add_argument(
            "--plot",
            help="write a self-contained HTML plot here (and a PNG beside it; default: no plot)",
        )


def plot_paths(plot: str):
    """(HTML page, PNG beside it) for ``--plot``: ``x.png`` is the PNG, the page ``x.html``
    beside it (the PNG was written over the page of the same name)."""
    from pathlib import Path

    given = Path(plot)
    if given.suffix.lower() == ".png":
        return given.with_suffix(".html"), given
    return given, given.with_suffix(".png")


def parse_params(items: list[str]) -> dict:
    from ops.cli import CliError

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise CliError(f"--param {item!r}: expected KEY=VALUE")
        key = key.strip()
        if key in ("autoscaling.policy", "routing.policy"):  # (a TypeError traceback)
            raise CliError(f"--param {key}: the preset sets it; choose the preset with --policy")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
        if isinstance(out[key], float) and not math.isfinite(out[key]):  # 1e400, NaN
            raise CliError(f"--param {item!r}: must be a finite number")
    return out


MAX_SLO_MS = 86_400_000.0  # a latency SLO past a day is a typo (1e300 overflowed the optimum)


def check_arguments(args) -> None:
    """Numbers out of range and unwritable outputs, before anything is read or run."""
    from ops.cli import CliError
    from ops.commands.outputs import check_writable

    if args.slo_ms is not None and not 0 < args.slo_ms < float("inf"):
        raise CliError("--slo-ms must be a finite number > 0")
    if args.slo_ms is not None and args.slo_ms > MAX_SLO_MS:
        raise CliError(f"--slo-ms {args.slo_ms:g} is over a day ({MAX_SLO_MS:g} ms): a typo?")
    if getattr(args, "vm_boot_s", None) is not None and not 0 <= args.vm_boot_s < float("inf"):
        raise CliError("--vm-boot-s must be a finite number >= 0")
    if not 0 < args.rate_scale < float("inf"):
        raise CliError("--rate-scale must be a finite number > 0")
    check_writable(args.json_out, "--json")
    if getattr(args, "plot", None):
        for path in plot_paths(args.plot):
            check_writable(str(path), "--plot")


def load_inputs(args, several_models: bool = False):
    """(trace, profile, sim config) from the common arguments; CliError on bad input. With
    ``several_models``, a trace of several models and no --model gives a profile per model
    (``{model: profile}``) where it is refused otherwise."""
    from ops.cli import CliError

    check_arguments(args)
    from ops.sim import ProfileError, load_sim_profile
    from ops.sim.config import ConfigError, load_config
    from ops.commands.simulate_model import check_known_model
    from ops.commands.simulate_models import several_models_refused
    from ops.sim.profile_adapter import from_repo
    from ops.traces import TraceError, read_trace

    try:
        cfg = load_config(args.config, args.model)
        repo = getattr(args, "repo", None) or cfg.simulate.get("repo") or _served_repo(cfg, args)
        profile_path = args.profile or cfg.simulate.get("profile")
        if repo and not args.model and not several_models:
            raise CliError("--repo needs --model (the model to plan)")
        if args.seed is None:  # (the runs and the tuner read args.seed too)
            args.seed = cfg.mapping.seed if cfg.mapping.seed is not None else 0
        fmt = args.trace_format if args.trace_format != "auto" else cfg.mapping.fmt
        trace = read_trace(args.trace, fmt, cfg.mapping, seed=args.seed)
        for line in trace.extra.get("warnings", ()):
            print(
                f"tidegate {getattr(args, 'command', 'simulate')}: warning: {line}", file=sys.stderr
            )
        if args.model and trace.models != (args.model,):
            trace = trace.only_model(args.model)  # TraceError if it has none of its requests
        elif len(trace.models) > 1 and not several_models:  # (not all as the first model's)
            raise TraceError(several_models_refused(trace))
        if len(trace.models) > 1 and not args.model:  # a profile per model
            from ops.commands.simulate_fleet import model_profiles

            profile = model_profiles(trace, repo, profile_path, cfg, args, _overridden)
        elif repo and not args.model:
            raise CliError("--repo needs --model (the model to plan)")
        else:
            if repo:
                settings = cfg.settings
                profile = from_repo(repo, args.model, profile_path=profile_path, settings=settings)
            else:  # the trace's model: a profile's measurements are looked up by it
                check_known_model(args, cfg, profile_path)
                profile = load_sim_profile(profile_path, args.model or trace.models[0])
            profile = _overridden(profile, cfg, args, args.model or trace.models[0])
    except (TraceError, ProfileError, ConfigError) as exc:
        raise CliError(str(exc)) from None
    scale = args.rate_scale if args.rate_scale != 1.0 else cfg.simulate.get("rate_scale", 1.0)
    if not (isinstance(scale, int | float) and 0 < scale < float("inf")):
        raise CliError("--rate-scale ([simulate] rate_scale) must be a number > 0")
    if scale != 1.0:
        try:
            trace = trace.scaled(rate_factor=scale, seed=args.seed)
        except TraceError as exc:
            raise CliError(str(exc)) from None
        if len(trace) == 0:  # (it simulated 0 requests at 100 % attainment, as loadgen refuses)
            raise CliError(f"no requests in the trace at --rate-scale {scale:g}")
    return trace, profile, cfg


def describe(trace, profile, log) -> None:
    log(
        f"trace {trace.name}: {len(trace)} requests over {trace.duration_s:.0f} s, "
        f"model {profile.model}, SLO {profile.slo_ms:g} ms, profile {profile.source}"
    )
    for line in profile.describe():
        log(f"  {line}")


def _served_repo(cfg, args) -> str | None:
    """The model repository a `tidegate serve` config names (`repo = ...`) when it holds
    --model: the gateway run with that config plans the model from there, so the simulation
    does too (before, the config's repository was ignored: its SLO and batching with it)."""
    settings = cfg.settings
    if settings is None or not args.model or "repo" not in settings.model_fields_set:
        return None
    repo = settings.repo
    return str(repo) if repo is not None and (repo / args.model / "config.toml").is_file() else None


def _overridden(profile, cfg, args, model: str):
    """The profile with the deployment facts of ``[simulate]`` and the flags, each override of
    a figure with a source (the VM boot, the cold start) named as its source."""
    from ops.sim.config import PROFILE_OVERRIDES

    given = {k: cfg.simulate[k] for k in PROFILE_OVERRIDES if k in cfg.simulate}
    where = f"[simulate] in {args.config}"
    sources = {
        key: f"{where}: {name} = {given[name]}"
        for key, name in (("cold_start", "cold_start_ms"), ("vm_boot", "vm_boot_s"))
        if name in given
    }
    boot = getattr(args, "vm_boot_s", None)
    if boot is not None:
        sources["vm_boot"] = f"--vm-boot-s {boot:g}"
    return (
        profile.with_overrides(**given)
        .with_overrides(slo_ms=args.slo_ms, vm_boot_s=boot, model=model)
        .with_sources(**sources)
    )


def run_policies(names: list[str], trace, profile, cfg, params: dict, seed: int, log=None):
    from ops.commands.simulate_runs import each_policy
    from ops.sim import run_spec, simulate

    common = dict(tick_s=cfg.tick_s, slo_ms_by_tenant=cfg.slo_ms_by_tenant, seed=seed)
    results = each_policy(
        names,
        cfg,
        params,
        len(trace),
        log,
        lambda spec: run_spec(
            trace, spec, profile, name="config", async_setup=cfg.async_setup, **common
        ),
        lambda name, given: simulate(
            trace, name, profile, params=given, async_setup=cfg.async_setup, **common
        ),
    )
    for res in results:  # (the optimum's summary is built apart: every run names its sources)
        res.summary.setdefault("profile_sources", {"profile": profile.source, **profile.provenance})
    return results


def run(args) -> int:
    from ops.cli import CliError
    from ops.commands.outputs import write_text
    from ops.sim import PRESETS
    from ops.sim.plot import write_html, write_png
    from ops.sim.table import ratios, render

    params = parse_params(args.param)
    trace, profile, cfg = load_inputs(args, several_models=True)
    if args.policy == "all":
        names = [p for p in PRESETS if p != "optimum"] + ["optimum"]
    elif args.policy in PRESETS or args.policy == "config":
        names = [args.policy] if args.policy == "optimum" else [args.policy, "optimum"]
    else:
        raise CliError(f"unknown policy {args.policy!r}; known: {', '.join(PRESETS)}, config, all")
    if args.plot and names == ["optimum"]:  # (it wrote a page with no chart)
        raise CliError("--plot: the optimum is a bound, not a run over time; plot a preset")
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if isinstance(profile, dict):  # several models: one shared fleet, or one fleet each
        from ops.commands.simulate_fleet import run_models

        results = run_models(names, trace, profile, cfg, params, args, log)
    else:
        describe(trace, profile, log)
        results = run_policies(names, trace, profile, cfg, params, args.seed, log=log)
    summaries = ratios([r.summary for r in results])
    print(render(summaries))
    if args.json_out:
        # one run's keys at the top (with every preset: slo-aware's, the PNG's run), so
        # `--json` always has requests, slo_attainment, ..., tenants; every run under "runs"
        by_name = {s["policy"]: s for s in summaries}
        main = summaries[0] if len(summaries) <= 2 else by_name.get("slo-aware", summaries[0])
        doc = {**main, "optimum_cost_usd": summaries[-1]["cost_usd"]}
        if len(summaries) > 2:
            doc["runs"] = summaries
        write_text(args.json_out, json.dumps(doc, indent=2), "--json")
    if args.plot:
        shown = [r for r in results if r.summary["policy"] != "optimum"]
        page, picture = plot_paths(args.plot)
        out = write_html(shown, page, cfg.tick_s)
        star = next(
            (r for r in shown if r.summary["policy"] == "slo-aware"), shown[0] if shown else None
        )  # the PNG shows one run: slo-aware when it ran
        png = write_png(star, picture, cfg.tick_s) if star else None
        print(f"plot: {out}" + (f" and {png}" if png else ""), file=sys.stderr)
    return 0
