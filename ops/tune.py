"""Policy tuning: search a preset's parameters on a trace to minimise cost subject to an SLO
attainment target (Optuna's TPE sampler with a constraint), and the cost/attainment front.

Each trial is one simulation, so a trial costs what ``tidegate simulate`` of one preset costs;
tune on a representative window of the trace (an hour) rather than a week.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ops.sim import AsyncSetup, preset_spec, run_spec
from ops.sim.presets import PolicySpec, peak_replicas

# preset -> parameter -> (kind, low, high[, log]); kind "rate": low and high are fractions of a
# replica's capacity (requests/s at full batches, from the profile)
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
        # its scaler tracks the request rate (SageMaker's InvocationsPerInstance): with a rate
        # target set, target_in_flight_per_replica is not read (it was searched here, in vain)
        "autoscaling.target_rps_per_replica": ("rate", 0.1, 1.0, True),
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


def bounds(spec: tuple, max_replicas: int, capacity_per_s: float) -> tuple[float, float]:
    """A parameter's (low, high) on this trace and profile."""
    kind, low, high = spec[:3]
    if kind == "rate":
        return low * capacity_per_s, high * capacity_per_s
    if high is None:
        high = max_replicas
    return low, max(high, low)


def suggest(trial, space: dict[str, tuple], max_replicas: int, capacity_per_s: float) -> dict:
    params = {}
    for name, spec in space.items():
        low, high = bounds(spec, max_replicas, capacity_per_s)
        log = len(spec) > 3 and spec[3]
        if spec[0] == "int":
            params[name] = trial.suggest_int(name, low, high, log=log)
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

    cap = peak if max_replicas is None else min(peak, max_replicas)
    capacity = profile.vm_capacity_per_s()

    def objective(trial) -> float:
        params = suggest(trial, space, cap, capacity)
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
    study.enqueue_trial(_defaults(preset, trace, profile, space, cap))
    study.optimize(objective, n_trials=trials, timeout=timeout_s)
    feasible = [t for t in results if t.slo_attainment >= target]
    best = min(feasible, key=lambda t: t.cost_usd) if feasible else None
    spec = preset_spec(preset, trace, profile, best.params | fixed) if best else None
    return TuneResult(preset, target, best, spec, results)


def _defaults(preset: str, trace, profile, space: dict, max_replicas: int) -> dict:
    """The preset's own parameters as the first trial, so tuning never does worse."""
    spec = preset_spec(preset, trace, profile)
    capacity = profile.vm_capacity_per_s()
    out = {}
    for name, s in space.items():
        table, _, key = name.partition(".")
        source = spec.routing_params if table == "routing" else spec.autoscaling_params
        if key in source:
            value = source[key]
            low, high = bounds(s, max_replicas, capacity)
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
