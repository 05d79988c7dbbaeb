"""`tidegate simulate --fleet shared` (the default on a trace of several models without
`--model`): every policy on the one fleet a gateway serving all the trace's models runs
(``ops.sim.shared``), the optimum as the shared fleet's bound (``ops.sim.shared_run``)."""

from __future__ import annotations

FLEETS = ("shared", "per-model")
FLEET_HELP = (
    "on a trace of several models (without --model): 'shared' (default) simulates the one "
    "VM fleet a gateway serving them all runs (every replica holds every model, one "
    "autoscaler, each model's functions, SLO and batches); 'per-model' one fleet per model, "
    "summed (what one gateway per model would cost)"
)


def run_models(names: list[str], trace, profiles: dict, cfg, params: dict, args, log):
    """A trace of several models: on one shared fleet (``--fleet shared``) or each model on
    its own (``per-model``)."""
    if getattr(args, "fleet", "shared") == "shared":
        return run_shared(names, trace, profiles, cfg, params, args.seed, log)
    from ops.commands.simulate_models import run_each

    return run_each(names, trace, profiles, cfg, params, args.seed, log)


def run_shared(names: list[str], trace, profiles: dict, cfg, params: dict, seed: int, log):
    """Each policy of ``names`` on one fleet serving every model of ``trace``."""
    from ops.cli import CliError
    from ops.commands.simulate import describe
    from ops.commands.simulate_runs import each_policy
    from ops.sim.shared_run import run_shared_spec, simulate_shared

    if cfg.async_setup is not None:
        raise CliError(
            "async-class tenants are not simulated on a shared fleet; use --fleet per-model"
        )
    ordered = [profiles[m] for m in trace.models]
    log(
        f"trace {trace.name}: {len(trace)} requests of {len(ordered)} models on one shared "
        "fleet (--fleet per-model: one fleet each; --model: one model)"
    )
    for profile in ordered:
        describe(trace.only_model(profile.model), profile, log)
    common = dict(slo_ms_by_tenant=cfg.slo_ms_by_tenant, tick_s=cfg.tick_s, seed=seed)
    return each_policy(
        names,
        cfg,
        params,
        len(trace),
        log,
        lambda spec: run_shared_spec(trace, spec, ordered, name="config", **common),
        lambda name, given: simulate_shared(trace, name, ordered, params=given, **common),
    )


def model_profiles(trace, repo, profile_path, cfg, args, overridden) -> dict:
    """Each model's profile for a trace of several: planned from ``repo`` where it holds the
    model (``--repo``), else the profile's or the production target's figures."""
    from pathlib import Path

    from ops.sim import load_sim_profile
    from ops.sim.profile_adapter import from_repo
    from ops.sim.shared_vm import mark_waits_only

    out = {}
    for m in trace.models:
        if repo and (Path(repo) / m / "config.toml").is_file():
            made = from_repo(repo, m, profile_path=profile_path, settings=cfg.settings)
            made = mark_waits_only(made, repo)
        else:
            made = load_sim_profile(profile_path, m)
        out[m] = overridden(made, cfg, args, m)
    return out
