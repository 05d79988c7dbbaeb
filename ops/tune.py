"""Policy tuning: search a preset's parameters on a trace to minimise cost subject to an SLO
attainment target (Optuna's TPE sampler with a constraint), and the cost/attainment front.

Each trial is one simulation, so a trial costs what ``tidegate simulate`` of one preset costs;
tune on a representative window of the trace (an hour) rather than a week.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ops.sim import AsyncSetup, preset_spec, run_spec
from ops.sim.presets import PolicySpec, peak_replicas

# preset -> parameter -> (kind, low, high[, log])
SPACES: dict[str, dict[str, tuple]] = {
    "slo-aware": {
        "autoscaling.base_quantile": ("float", 0.05, 0.95),
        "autoscaling.target_utilization": ("float", 0.4, 1.0),
        "autoscaling.level_alpha": ("float", 0.01, 1.0, True),
        "autoscaling.trend_beta": ("float", 0.001, 0.5, True),
        "autoscaling.scale_in_cooldown_s": ("float", 0.0, 600.0),
        "autoscaling.min_replicas": ("int", 0, None),
    },
    "threshold": {
        "routing.spill_outstanding_per_replica": ("int", 1, 64, True),
        "autoscaling.target_in_flight_per_replica": ("float", 1.0, 64.0, True),
        "autoscaling.scale_in_cooldown_s": ("float", 0.0, 600.0),
        "autoscaling.min_replicas": ("int", 0, None),
    },
    "knative": {
        "routing.spill_outstanding_per_replica": ("int", 1, 64, True),
        "autoscaling.target_in_flight_per_replica": ("float", 1.0, 64.0, True),
        "autoscaling.stable_window_s": ("float", 10.0, 300.0),
        "autoscaling.min_replicas": ("int", 0, None),
    },
    "vm-reactive": {
        "autoscaling.target_in_flight_per_replica": ("float", 1.0, 64.0, True),
        "autoscaling.scale_in_cooldown_s": ("float", 0.0, 600.0),
        "autoscaling.min_replicas": ("int", 1, None),
    },
}


@dataclass
class TrialResult:
    number: int
    params: dict
    cost_usd: float
    slo_attainment: float
    p99_ms: float | None


@dataclass
class TuneResult:
    preset: str
    target: float
    best: TrialResult | None
    best_spec: PolicySpec | None
    trials: list[TrialResult] = field(default_factory=list)

    def front(self) -> list[TrialResult]:
        """Pareto front: no other trial is both cheaper and at least as good on attainment."""
        ordered = sorted(self.trials, key=lambda t: (t.cost_usd, -t.slo_attainment))
        out, best_att = [], -1.0
        for t in ordered:
            if t.slo_attainment > best_att:
                out.append(t)
                best_att = t.slo_attainment
        return out


def suggest(trial, space: dict[str, tuple], max_replicas: int) -> dict:
    params = {}
    for name, spec in space.items():
        kind, low, high = spec[:3]
        log = len(spec) > 3 and spec[3]
        if kind == "int":
            hi = high if high is not None else max_replicas
            params[name] = trial.suggest_int(name, low, max(hi, low), log=log)
        else:
            params[name] = trial.suggest_float(name, low, high, log=log)
    return params


def tune(
    trace,
    preset: str,
    profile,
    *,
    target: float = 0.99,
    trials: int = 20,
    seed: int = 0,
    slo_ms_by_tenant: dict | None = None,
    tick_s: float = 1.0,
    timeout_s: float | None = None,
    on_trial=None,
    async_setup: AsyncSetup | None = None,
    max_replicas: int | None = None,
) -> TuneResult:
    """Minimise cost subject to ``slo_attainment >= target``. ``async_setup`` carries the
    async-class tenants and their deadlines, so each trial queues them as ``serve`` would.
    ``max_replicas``: a cap every trial and the best spec keep (``config_max_replicas``)."""
    import optuna

    if preset not in SPACES:
        raise ValueError(f"cannot tune {preset!r}; tunable presets: {', '.join(SPACES)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SPACES[preset]
    peak = peak_replicas(trace, profile)
    fixed = {} if max_replicas is None else {"autoscaling.max_replicas": max_replicas}
    results: list[TrialResult] = []

    def objective(trial) -> float:
        params = suggest(trial, space, peak if max_replicas is None else min(peak, max_replicas))
        spec = preset_spec(preset, trace, profile, params | fixed)
        res = run_spec(
            trace,
            spec,
            profile,
            name=preset,
            slo_ms_by_tenant=slo_ms_by_tenant,
            tick_s=tick_s,
            seed=seed,
            async_setup=async_setup,
        )
        s = res.summary
        trial.set_constraint("slo_attainment", target - s["slo_attainment"])  # <= 0: feasible
        tr = TrialResult(trial.number, params, s["cost_usd"], s["slo_attainment"], s["p99_ms"])
        results.append(tr)
        if on_trial:
            on_trial(tr)
        return s["cost_usd"]

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, max(trials // 3, 1)))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(_defaults(preset, trace, profile, space))
    study.optimize(objective, n_trials=trials, timeout=timeout_s)
    feasible = [t for t in results if t.slo_attainment >= target]
    best = min(feasible, key=lambda t: t.cost_usd) if feasible else None
    spec = preset_spec(preset, trace, profile, best.params | fixed) if best else None
    return TuneResult(preset, target, best, spec, results)


def _defaults(preset: str, trace, profile, space: dict) -> dict:
    """The preset's own parameters as the first trial, so tuning never does worse."""
    spec = preset_spec(preset, trace, profile)
    out = {}
    for name, s in space.items():
        table, _, key = name.partition(".")
        source = spec.routing_params if table == "routing" else spec.autoscaling_params
        if key in source:
            value = source[key]
            low, high = s[1], s[2] if s[2] is not None else math.inf
            if low <= value <= high:
                out[name] = value
    return out


def config_max_replicas(settings) -> int | None:
    """The serve config's own ``[autoscaling] max_replicas`` when it sets one (a VM quota, a
    budget): tuning keeps within it. The snippet wrote the preset's (8, or twice the trace's
    peak) over it, and the trials simulated fleets the config forbids."""
    scaling = getattr(settings, "autoscaling", None)
    if scaling is None or "max_replicas" not in scaling.model_fields_set:
        return None
    return int(scaling.max_replicas)
