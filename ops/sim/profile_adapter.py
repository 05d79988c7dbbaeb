"""A ``SimProfile`` from what the gateway itself would use: the model's artifact in a repository,
its ``profile.json`` (or the bundled reference profile) and the serve settings.

The burst path's numbers come from the very plan ``tidegate plan`` prints and the gateway runs
(``burst.planning.model_plan`` + ``predict_plan``): its predicted p50/p99 (a lognormal through
both), instances per request (master + worker invocations), memory size and cost. The VM path's
batch curve comes from the profile's measured VM service times for this model, when present.
"""

from __future__ import annotations

import math
from pathlib import Path

from .profile import ProfileError, SimProfile

Z99 = 2.3263478740408408  # the standard normal's 99th percentile


def from_repo(
    repo: str | Path,
    model: str,
    *,
    profile_path: str | Path | None = None,
    settings=None,
    workers: int | None = None,
) -> SimProfile:
    """Plan ``model`` from ``repo`` as the gateway would and describe it for the simulator."""
    from gateway.settings import Settings

    settings = settings or Settings.load(None, repo=repo)
    cfg, profile, request, plan, pred = _plan(repo, model, profile_path, settings, workers)
    instances = 1 + int(plan.totals.get("invocations", 0))
    prices = request.prices
    fees = instances * prices.fn_usd_per_request
    gb_per_ms = plan.memory_mb / 1024.0 / 1000.0
    billed_ms = max(pred.cost_usd - fees, 0.0) / prices.fn_usd_per_gb_s / gb_per_ms
    sigma = max(math.log(max(pred.p99_ms, pred.p50_ms * 1.0001) / pred.p50_ms) / Z99, 0.01)
    base = SimProfile.reference(model)
    curve, cv = _vm_curve(profile, model, base)
    queue_delay = getattr(cfg, "max_queue_delay_ms", None)
    return SimProfile(
        model=model,
        vm_service_ms_by_batch=curve,
        vm_service_cv=cv,
        vm_max_batch_size=int(cfg.max_batch_size),
        vm_max_queue_delay_ms=float(
            queue_delay if queue_delay is not None else base.vm_max_queue_delay_ms
        ),
        vm_boot_s=base.vm_boot_s,
        gateway_overhead_ms=base.gateway_overhead_ms,
        burst_workers=int(plan.workers),
        burst_instances=instances,
        burst_memory_mb=int(plan.memory_mb),
        burst_p50_ms=float(pred.p50_ms),
        burst_sigma=sigma,
        burst_billed_ms=billed_ms,
        **_cold_start(profile, model, int(plan.workers)),
        fn_concurrency=int(settings.burst.concurrency),
        fn_keep_alive_s=float(settings.burst.keep_alive_s),
        slo_ms=float(cfg.slo_ms),
        source=f"plan of {model} in {repo} ({profile.source})",
    )


def _plan(repo, model: str, profile_path, settings, workers: int | None):
    """(artifact config, profile, plan request, burst plan, its prediction) as the gateway
    plans ``model``, at the 99th percentile; any failure becomes a ProfileError."""
    import dataclasses
    import json

    from burst.graph import GraphError, build_graph
    from burst.plan import PlanError
    from burst.planning import load_profile, model_plan, predict_plan
    from burst.service import BurstService
    from policies.profile import Profile
    from policies.profile import ProfileError as PolicyProfileError
    from vmpool.artifact import ArtifactError, load_artifact

    try:
        artifact = load_artifact(repo, model)
        profile = (
            Profile.from_json(json.loads(Path(profile_path).read_text()))
            if profile_path
            else load_profile(repo, model)
        )
        service = BurstService.from_settings(settings)  # not started: its plan settings only
        request = service.plan_request(workers or settings.burst.default_workers, 1)
        request = dataclasses.replace(request, percentile=0.99)
        graph = build_graph(artifact.load_program(), artifact.name)
        plan = model_plan(graph, artifact.config, request, profile)
        pred = predict_plan(graph, plan, request, profile)
    except (ArtifactError, GraphError, PlanError, PolicyProfileError, OSError, ValueError) as exc:
        raise ProfileError(f"cannot plan {model!r} from {repo}: {exc}") from None
    return artifact.config, profile, request, plan, pred


def _cold_start(profile, model: str, workers: int) -> dict:
    """The model's measured cold start at ``workers`` (latency and billed quantiles); profiles
    without one give the no-op function's cold round trip, billed on every instance."""
    times = profile.models.get(model)
    cold = times.cold_start(workers) if times is not None else None
    if cold is None:
        return {"cold_start_ms": float(profile.invoke_cold_ms.median_ms)}
    latency, billed = cold
    return {
        "cold_start_ms": float(latency.median_ms),
        "cold_start_quantiles_ms": latency.values_ms,
        "cold_billed_quantiles_ms": billed.values_ms,
    }


def _vm_curve(profile, model: str, base: SimProfile):
    times = profile.models.get(model)
    if times is None or not times.vm_service_ms:
        return base.vm_service_ms_by_batch, base.vm_service_cv
    points = tuple(sorted((int(b), float(q.median_ms)) for b, q in times.vm_service_ms.items()))
    spreads = [
        (q.at(0.9) - q.at(0.1)) / 2.56 / max(q.median_ms, 1e-9)
        for q in times.vm_service_ms.values()
    ]
    return points, float(min(max(sum(spreads) / len(spreads), 0.0), 1.0))


def from_profile_json(raw: dict, path: Path, model: str | None) -> SimProfile:
    """``profile.json`` read on its own: plan the model when its artifact sits beside the
    profile (``REPO/NAME/profile.json``), else take what the profile measured (VM batch times,
    cold start) over the reference profile."""
    name = str(model or path.parent.name)
    if (path.parent / "config.toml").is_file() and (path.parent.name == name):
        return from_repo(path.parent.parent, name, profile_path=path)
    from policies.profile import Profile
    from policies.profile import ProfileError as PolicyProfileError

    try:
        profile = Profile.from_json(raw)
    except PolicyProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    if profile.models and name not in profile.models:  # not the reference's numbers, silently
        raise ProfileError(
            f"{path} has no measurements for model {name!r} (it has: "
            f"{', '.join(sorted(profile.models))}); pass --model or another profile"
        )
    base = SimProfile.reference(name)
    curve, cv = _vm_curve(profile, name, base)
    return base.with_overrides(
        vm_service_ms_by_batch=curve,
        vm_service_cv=cv,
        **_cold_start(profile, name, base.burst_workers),
        source=f"{path} ({profile.source}): its VM times and cold starts; the burst path's "
        "latency and bill are the reference profile's unless --repo plans the model",
    )
