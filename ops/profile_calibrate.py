"""Calibrating a measured profile against real plans (``tidegate profile``'s last step): how
much slower a leg computes when k legs share the cores, the rest of each stage's wall time beyond
the model (folded into the round trips at its fan-out), the gateway's master invocation, and the
model's own calibration (``policies.calibration``) with its plan errors."""

from __future__ import annotations

import statistics
from dataclasses import replace


def calibrate(profile, graph, svc, runs, say):
    """Slowdowns from the legs' compute; the rest of each stage's wall time beyond the model
    goes into the round trips at its fan-out; the gateway-side time into the master's."""
    from burst.planning import perf_model
    from ops import profile_legs
    from ops.profile_drift import window_times
    from policies.profile import Quantiles

    profile = window_times(profile, graph, runs, say)
    node_ms = profile.models[graph.model].node_ms
    legs = perf_model(graph, svc.plan_request(1), profile).unshared_ms  # as the model prices
    obs = [
        o
        for plan, answers in runs
        for o in profile_legs.stage_observations(node_ms, plan, answers, legs)
    ]
    slow, per_node, per_leg = profile_legs.slowdowns(obs)
    for table in slow.values():
        table.setdefault(1, 1.0)
    profile = replace(profile, split_slowdown=slow, split_node_ms=per_node, split_leg_ms=per_leg)
    say(
        "leg compute vs one thread alone: "
        + "; ".join(
            f"{kind} "
            + ", ".join(
                f"x{k} {v:.2f} + {per_node.get(kind, {}).get(k, 0.0):.3f} ms/node"
                f" + {per_leg.get(kind, {}).get(k, 0.0):.2f} ms/leg"
                for k, v in sorted(t.items())
            )
            for kind, t in slow.items()
        )
    )
    model = perf_model(graph, svc.plan_request(1), profile)
    residual, master = _residuals(model, runs)
    warm = dict(profile.invoke_warm_ms)
    for n, rs in residual.items():
        say(f"fan-out {n}: stages beyond the model, median per plan: {_ms_list(rs)}")
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
    return plan_errors(profile, graph, svc, runs, say)


def plan_errors(profile, graph, svc, runs, say):
    """The profile with this model's calibration (``policies.calibration``: the compute scale
    from one function against the uncalibrated model, then split stages per fan-out against
    the model with that scale) and its plan errors (warm p50 measured / uncalibrated
    predicted, of one function and per fan-out of the latency plan, else the best of the
    forced splits there): a record of how far the model missed before calibration."""
    from policies.calibration import Calibration, fit_compute, fit_drift, fit_split

    times = profile.models[graph.model]

    def runs_under(calibration):
        p = profile.with_model(graph.model, replace(times, calibration=calibration))
        return _plan_runs(p, graph, svc, runs)

    raw = runs_under(Calibration())
    compute = fit_compute([r for _, r in raw])
    split = fit_split([r for _, r in runs_under(Calibration(compute))])
    drift = fit_drift(getattr(runs, "host_ms", []))
    calibration = Calibration(compute, split, _compute_cv(profile, runs, raw), drift)
    say(
        f"calibration: compute x{calibration.compute:.3f}; split stages "
        + (", ".join(f"x{k} {v:.3f}" for k, v in sorted(calibration.split.items())) or "none")
        + f"; compute spread {calibration.compute_cv:.1%}; host drift {drift:.1%} (of "
        + f"{len(getattr(runs, 'host_ms', []))} probes)"
    )
    latency: dict[int, float] = {}
    forced: dict[int, list[float]] = {}
    for (plan, run), (_, now) in zip(raw, runs_under(calibration)):
        error = run.measured_p50_ms / max(run.predicted_p50_ms, 1e-9)
        say(
            f"plan {plan.split} x{plan.workers}: warm p50 {run.measured_p50_ms:.1f} ms, "
            f"predicted {run.predicted_p50_ms:.1f} ms (x{error:.3f}), calibrated "
            f"{now.predicted_p50_ms:.1f} ms (x{run.measured_p50_ms / now.predicted_p50_ms:.3f})"
        )
        if plan.split in ("none", "auto"):
            latency[1 if plan.split == "none" else plan.workers] = error
        else:
            forced.setdefault(plan.workers, []).append(error)
    errors = {k: min(v) for k, v in forced.items()} | latency
    return profile.with_model(
        graph.model, replace(times, plan_error=errors, calibration=calibration)
    )


def _compute_cv(profile, runs, raw) -> float:
    """A request's compute spread from the warm requests of the plans run with their
    compute (one function and the planner's splits; the forced splits too when those are
    too few), beyond the master invocation's spread (``policies.calibration.fit_spread``);
    0 (the profile's) without enough of them."""
    from policies.calibration import PlanSpread, fit_spread, robust_sd

    fixed_sd = robust_sd(profile.master_overhead_ms.values_ms)
    return fit_spread(
        [
            PlanSpread(
                tuple(a.total_ms for a in answers),
                run.measured_p50_ms - run.fixed_ms,
                fixed_sd,
                planned=plan.split in ("none", "auto"),
            )
            for (plan, answers), (_, run) in zip(_runs_with_splits(runs), raw)
        ]
    )


def _runs_with_splits(runs) -> list[tuple]:
    """The runs calibration reads: one function's, and those with a split stage."""
    return [
        (plan, answers)
        for plan, answers in runs
        if answers and (plan.split == "none" or any(s.split != "serial" for s in plan.stages))
    ]


def _plan_runs(profile, graph, svc, runs) -> list[tuple]:
    """(plan, ``PlanRun``) of each run of one function or with a split stage, predicted by
    ``profile``."""
    from burst.planning import predict_plan

    out = []
    for plan, answers in _runs_with_splits(runs):
        p50 = statistics.median(a.total_ms for a in answers)
        pred = predict_plan(graph, plan, svc.plan_request(plan.workers), profile)
        out.append((plan, _plan_run(plan, p50, pred)))
    return out


def _plan_run(plan, measured_p50_ms: float, pred):
    """A ``policies.calibration.PlanRun`` of ``plan`` from its prediction ``pred``."""
    from policies.calibration import PlanRun

    split = [s.workers for s in plan.stages if s.split != "serial"]
    return PlanRun(
        workers=max(split, default=1),
        measured_p50_ms=measured_p50_ms,
        predicted_p50_ms=pred.p50_ms,
        serial_ms=sum(e.mean_ms for s, e in zip(plan.stages, pred.stages) if s.split == "serial"),
        split_ms=sum(e.mean_ms for s, e in zip(plan.stages, pred.stages) if s.split != "serial"),
        planned=plan.split in ("none", "auto"),
    )


def _residuals(model, runs) -> tuple[dict[int, list[float]], list[float]]:
    """Per fan-out, each plan's median of (stage wall - the model's stage), one value per plan
    (a plan of 54 tiny stages, output x2, must not outvote the few big stages a useful plan
    has); and each request's time beyond its master's report (the gateway's invocation)."""
    from burst.candidates import stage_candidate

    residual: dict[int, list[float]] = {}
    master: list[float] = []
    for plan, answers in runs:
        per_plan: dict[int, list[float]] = {}
        for a in answers:
            for st_plan, st in zip(plan.stages, a.report.stages):
                if st_plan.split != "serial" and st_plan.workers > 1:
                    est = model.stage(stage_candidate(st_plan))
                    per_plan.setdefault(st_plan.workers - 1, []).append(st.wall_ms - est.mean_ms)
            master.append(a.total_ms - a.report.wall_ms)
        for n, rs in per_plan.items():
            residual.setdefault(n, []).append(statistics.median(rs))
    return residual, master


def _ms_list(values: list[float]) -> str:
    return ", ".join(f"{v:+.1f} ms" for v in values)


# untimed requests per plan before its timed ones: as ``ops/bench/plan_accuracy.py`` serves
# them (3), so the profile times a plan in the state its predictions are checked in
WARMUP = 3


def _model_bytes(graph) -> int:
    return sum(int(w.get("bytes", 0)) for w in graph.weights.values())


def in_turns(graph, plans: int, memory_mb: int) -> bool:
    """Whether ``plans`` plans of ``graph`` can take turns on one warm master: their weights
    (twice: plain and packed) fit its weight cache. Else each turn would evict the last
    plan's weights and time a reload (VGG-16's plans in turns killed a 2048 MB master)."""
    from burst.plan import weight_budget_bytes

    return 2 * plans * _model_bytes(graph) <= weight_budget_bytes(memory_mb)


async def measure_plans(svc, model: str, keys: list, reps: dict, warmup: int, request, say):
    """Per key (workers, split): ``reps[key]`` warm answers of ``await request(key, timed)``
    after ``warmup`` untimed ones (cold instances and first weight loads are not the warm
    figure). Where the plans fit one master's cache (``in_turns``) they take turns, one
    request each per round: this host drifts by 20-30 % over seconds (the same MobileNetV2
    plan measured 48 to 65 ms in windows of five requests), and plans measured one after
    another would read those drifts as the plans' differences. A plan the platform refuses
    (out of memory) is dropped and the others measured."""
    from burst.service import BurstUnavailable

    out: dict = {key: [] for key in keys}
    order = [[key] * (warmup + reps[key]) for key in keys]  # one plan after another
    if in_turns(svc._graphs[model], len(keys), svc.master_memory_mb or svc.memory_mb):
        order = [[key] * warmup for key in keys]
        order += [[key for key in keys if r < reps[key]] for r in range(max(reps.values()))]
    seen: dict = {key: 0 for key in keys}
    for key in (key for turn in order for key in turn):
        if key not in out:
            continue
        seen[key] += 1
        try:
            answer = await request(key, seen[key] > warmup)
        except BurstUnavailable as exc:
            say(f"plan {key[1]} x{key[0]}: skipped ({exc})")
            del out[key]
            continue
        if seen[key] > warmup:
            out[key].append(answer)
    return out


async def run_plans(svc, artifact, graph, x, plans: list[tuple[int, str]], reps: int, say) -> list:
    """``(plan, warm answers)`` of each distinct plan of ``(workers, split)`` through ``svc``
    (``measure_plans``, ``WARMUP`` requests first): ``reps`` for one function and the planner's
    plans, half that for forced splits."""
    from burst.plan import PlanError, weight_budget_bytes
    from burst.service import BurstUnavailable
    from ops.profile_drift import HostProbe, WindowNodeTimes

    # every input by name (a model may take several), or the one input
    inputs = x if isinstance(x, dict) else {artifact.config.inputs[0].name: x}
    made: dict = {}
    budget = weight_budget_bytes(svc.master_memory_mb or svc.memory_mb)
    for k, split in plans:
        if split == "none" and _model_bytes(graph) > budget:
            # one function that cannot keep the weights reloads them on every request: not a
            # warm figure, and no plan the planner makes (VGG-16 in 1024 MB measured 1.8x)
            say(f"plan none x1: skipped (the weights exceed a {svc.memory_mb} MB function's cache)")
            continue
        try:
            plan = await svc.plan_for(artifact.name, k, 1, split)
        except (PlanError, BurstUnavailable) as exc:
            say(f"plan {split} x{k}: no plan ({exc})")
            continue
        if all(p.plan_id != plan.plan_id for p in made.values()):
            made[(k, split)] = plan

    probe, probed = HostProbe(), {key: [] for key in made}
    n = {key: reps if key[1] in ("none", "auto") else max(2, reps // 2) for key in made}
    window = WindowNodeTimes(graph, artifact.load_program(), x, sum(n.values()))

    async def request(key, timed):
        answer = await svc.infer(artifact.name, inputs, workers=key[0], split=key[1])
        if timed:  # the host's pace now: the series spans every plan's turn (profile_drift)
            probed[key].append(probe.sample())
            window.after_request()
        return answer

    answers = await measure_plans(svc, artifact.name, list(made), n, WARMUP, request, say)
    for (k, split), got in answers.items():
        say(
            f"plan {split} x{k}: warm p50 {statistics.median(a.total_ms for a in got):.1f} ms "
            f"({sum(1 for s in made[(k, split)].stages if s.split != 'serial')} split stages; "
            f"host probe p50 {statistics.median(probed[(k, split)] or [0.0]):.1f} ms)"
        )
    runs = [(made[key], got) for key, got in answers.items()]
    return PlanRuns(runs, probe.samples_ms, window.median_ms())


class PlanRuns(list):
    """``(plan, warm answers)`` per plan run, the host probe's series over the whole run
    (``ops.profile_drift``), in the order taken, and the node times taken between them."""

    def __init__(self, runs: list, host_ms: list[float], node_ms: dict | None = None) -> None:
        super().__init__(runs)
        self.host_ms = host_ms
        self.node_ms = node_ms or {}


async def calibrate_into(profile, graph, artifact, repo, workers, reps, memory_mb, x, say):
    """``--compute-only --calibrate``: this model's calibration and plan errors against the
    rest of ``profile``, which stays as it is (how the bundled reference profile calibrates
    every zoo model on one set of round trips, transfers and slowdowns). Runs one function
    and the latency plan at each of ``workers``, planned by ``profile`` itself: a scratch
    repository links the model's files beside it, so the user's repository is not written."""
    from ops.profile_second_pass import scratch_service

    async with scratch_service(profile, artifact, repo, workers, memory_mb) as svc:
        plans = [(1, "none")] + [(k, "auto") for k in workers]
        runs = await run_plans(svc, artifact, graph, x, plans, reps, say)
    return plan_errors(profile, graph, svc, runs, say)
