"""A ``SimProfile`` from a profile measured for the model (``tidegate profile``) and, with the
model's artifact in a repository, from what the gateway itself would run.

The rule (docs/ops.md, "Where the simulator's numbers come from"): what a profile *measured for
the model being simulated* says replaces the production target's figures (``SimProfile.reference``)
for the parts it measured; nothing measured for one model is used for another. With the artifact
the burst path's numbers come from the very plan ``tidegate plan`` prints and the gateway runs
(``burst.planning.model_plan`` + ``predict_plan``) priced by that profile: its predicted p50/p99
(a lognormal through both), instances per request (master + worker invocations), memory size and
cost. The VM path's batch curve is the profile's measured VM service times for this model.

A repository without a profile measured for the model (no ``REPO/NAME/profile.json``, or one
that measured another model) gets the production target for the model (``SimProfile.reference``:
a zoo model's own, see ``ops.sim.profile_target``), with the repository's SLO and batching; the
local runtime's concurrency cap and keep-alive apply only to functions measured on it. The
bundled planner profile (``policies/data/reference_profile.json``, the dev host's figures the
gateway plans with) is never the simulator's silent default. Passing it with ``--profile``
simulates with it on purpose.
"""

from __future__ import annotations

import math
from pathlib import Path

from .lend import plan_read_ms
from .profile import ProfileError, SimProfile, reference_sources

Z99 = 2.3263478740408408  # the standard normal's 99th percentile


def measured_models(profile, path: str | Path | None) -> frozenset[str]:
    """The models whose times ``profile`` (read from ``path``) measured itself: those it lists
    as measured (``tidegate profile`` records them); in a profile written before it did, every
    entry but those identical to the bundled planner profile's, which ``tidegate profile``
    copies into each profile it writes. The bundled file itself measured all of its own (on
    the dev host)."""
    from burst.planning import REFERENCE_PROFILE, load_profile

    if path is not None and Path(path).resolve() == REFERENCE_PROFILE.resolve():
        return frozenset(profile.models)
    if profile.measured_models:
        return frozenset(profile.measured_models) & frozenset(profile.models)
    bundled = load_profile().models
    return frozenset(n for n, t in profile.models.items() if bundled.get(n) != t)


def from_repo(
    repo: str | Path,
    model: str,
    *,
    profile_path: str | Path | None = None,
    settings=None,
    workers: int | None = None,
) -> SimProfile:
    """Plan ``model`` from ``repo`` as the gateway would and describe it for the simulator; the
    production target when no profile measured for ``model`` is there (or at ``profile_path``)."""
    from burst.planning import PROFILE_FILE
    from gateway.settings import Settings

    settings = settings or Settings.load(None, repo=repo)
    path = Path(profile_path) if profile_path else Path(repo) / model / PROFILE_FILE
    profile = _read(path) if profile_path or path.is_file() else None
    if profile is None or model not in measured_models(profile, path):
        why = (
            f"no {path}"
            if profile is None
            else f"{path} measured {_names(measured_models(profile, path))}, not {model}"
        )
        return _target_for_repo(repo, model, settings, why)
    cfg, request, plan, pred, transfer_usd, short_ms = _plan(
        repo, model, profile, settings, workers
    )
    instances = 1 + int(plan.totals.get("invocations", 0))
    prices = request.prices
    fees = instances * prices.fn_usd_per_request
    compute_usd = max(pred.cost_usd - fees - transfer_usd, 0.0)
    billed_ms = compute_usd / prices.fn_usd_per_gb_s / (plan.memory_mb / 1024.0 / 1000.0)
    # the plan's store / queue requests (tensors past the inline limit), as PUT + GET pairs
    # worth their price: they were billed as compute (MobileNetV2's 602 KB input through the
    # store: 352 ms "billed" at a 27 ms p50, function_gb_s 13x its compute)
    pairs = transfer_usd / max(prices.store_put_usd + prices.store_get_usd, 1e-30)
    sigma = max(math.log(max(pred.p99_ms, pred.p50_ms * 1.0001) / pred.p50_ms) / Z99, 0.01)
    local = settings.burst.platform.kind == "local"  # (what `tidegate profile` measured on)
    base = _with_repo_facts(SimProfile.reference(model, cfg.extra), cfg, settings, local)
    curve, cv, vm_src = _vm_curve(profile, model, base, path)
    cold, cold_src = _cold_start_sourced(profile, model, int(plan.workers), path)
    cold["fn_weight_read_ms"] = plan_read_ms(plan, settings.burst.store.kind, profile.transfer)
    return base.with_overrides(
        vm_service_ms_by_batch=curve,
        vm_service_cv=cv,
        burst_workers=int(plan.workers),
        burst_instances=instances,
        burst_memory_mb=int(plan.memory_mb),
        burst_p50_ms=float(pred.p50_ms) + short_ms,
        burst_sigma=sigma,
        burst_billed_ms=billed_ms + short_ms,  # (wall time, billed as such)
        burst_store_ops=(pairs, pairs),
        fn_host_cores=int(profile.cores),
        **cold,
        source=f"plan of {model} in {repo} ({profile.source})",
    ).with_sources(
        vm_curve=vm_src,
        function_times=f"the gateway's plan of {model} in {repo} ({_workers(plan.workers)}, "
        f"{plan.memory_mb} MB), priced by {_where(path, profile)}",
        cold_start=cold_src,
    )


def _with_repo_facts(base: SimProfile, cfg, settings, local_runtime: bool) -> SimProfile:
    """``base`` with the deployment facts a repository and its settings state: the model's SLO
    and batching, and with ``local_runtime`` (functions measured on the embedded runtime the
    settings run) that runtime's concurrency cap and keep-alive. Those two are the local
    runtime's settings (`burst.concurrency`: "Local runtime: concurrent instances cap"): on the
    production target's Lambda functions they stay Lambda's (a cap of 16 there queued every
    burst: VGG-16 on MMPP attained 78 % with a 2.5 s SLO); `[simulate] fn_concurrency` states
    a deployment's own."""
    queue_delay = getattr(cfg, "max_queue_delay_ms", None)
    runtime = (
        {
            "fn_concurrency": int(settings.burst.concurrency),
            "fn_keep_alive_s": float(settings.burst.keep_alive_s),
        }
        if local_runtime
        else {}
    )
    return base.with_overrides(
        vm_max_batch_size=int(cfg.max_batch_size),
        vm_max_queue_delay_ms=float(queue_delay) if queue_delay is not None else None,
        slo_ms=float(cfg.slo_ms),
        **runtime,
    )


def _target_for_repo(repo, model: str, settings, why: str) -> SimProfile:
    """The production target for ``model`` in ``repo`` (its artifact must load), with the
    repository's SLO and batching, and the reason nothing measured was used."""
    from vmpool.artifact import ArtifactError, load_artifact

    try:
        artifact = load_artifact(repo, model)
    except (ArtifactError, OSError, ValueError) as exc:
        raise ProfileError(f"cannot plan {model!r} from {repo}: {exc}") from None
    hint = f"`tidegate profile {model} --repo {repo}` measures one; the gateway's plan then runs"
    target = _zoo_target(artifact.config)
    sources = reference_sources(model, f"nothing measured for {model}: {why}")
    if target is not None:  # a zoo model's target: its own (scaled) figures, and their sources
        sources.update({k: f"{v} ({why})" for k, v in target.provenance.items() if k in _SCALED})
    base = target.with_overrides(model=model) if target else SimProfile(model=model)
    return (
        _with_repo_facts(base, artifact.config, settings, local_runtime=False)
        .with_overrides(source=f"production target for {model} in {repo} ({why}; {hint})")
        .with_sources(**sources)
    )


_SCALED = ("vm_curve", "function_times")  # what a zoo model's target has of its own


def _zoo_target(cfg) -> SimProfile | None:
    """The production target of the zoo model an artifact was exported from (``source =
    "zoo:NAME"`` in its config, whatever its name in the repository) at the input shape the
    dev host timed; None otherwise (ResNet-18's target then)."""
    source = str(cfg.extra.get("source", ""))
    if not source.startswith("zoo:") or not cfg.inputs:
        return None
    shape = tuple(int(d) for d in cfg.inputs[0].shape[1:])
    return SimProfile.reference(source[4:], cfg.extra, shape=shape)


def _read(path: Path):
    """``policies.profile.Profile`` from ``path``; ProfileError naming it when unreadable."""
    import json

    from policies.profile import Profile
    from policies.profile import ProfileError as PolicyProfileError

    try:
        return Profile.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ProfileError(
            f"profile {path} does not exist (write one with `tidegate profile`)"
        ) from None
    except (OSError, ValueError, PolicyProfileError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from None


def _plan(repo, model: str, profile, settings, workers: int | None):
    """(artifact config, plan request, burst plan, its prediction, the prediction's store and
    queue $ per request, the ms it falls short of the warm p50 measured) as the gateway plans
    ``model`` with ``profile``, at the 99th percentile; any failure becomes a ProfileError."""
    import dataclasses

    from burst.graph import GraphError, build_graph
    from burst.plan import PlanError
    from burst.planning import model_plan, predict_plan
    from burst.service import BurstService
    from policies.calibration import Calibration
    from policies.profile import ProfileError as PolicyProfileError
    from vmpool.artifact import ArtifactError, load_artifact

    try:
        artifact = load_artifact(repo, model)
        service = BurstService.from_settings(settings)  # not started: its plan settings only
        request = service.plan_request(workers or settings.burst.default_workers, 1)
        request = dataclasses.replace(request, percentile=0.99)
        graph = build_graph(artifact.load_program(), artifact.name)
        plan = model_plan(graph, artifact.config, request, profile)
        pred = predict_plan(graph, plan, request, profile)
        free = dataclasses.replace(
            request.prices, store_put_usd=0.0, store_get_usd=0.0, queue_request_usd=0.0
        )
        bare = predict_plan(graph, plan, dataclasses.replace(request, prices=free), profile)
        # the warm p50 the profile measured for this plan (its recorded error x the plan as
        # predicted before calibration): where calibration's cap left the plan short (a model
        # that waits rather than computes: delay's 3.7 ms for a measured 27 ms), it wins
        times, short_ms = profile.models[model], 0.0
        if times.plan_error:
            raw = profile.with_model(model, dataclasses.replace(times, calibration=Calibration()))
            measured_ms = (
                times.error_at(plan.workers) * predict_plan(graph, plan, request, raw).p50_ms
            )
            short_ms = max(measured_ms - pred.p50_ms, 0.0)
    except (ArtifactError, GraphError, PlanError, PolicyProfileError, OSError, ValueError) as exc:
        raise ProfileError(f"cannot plan {model!r} from {repo}: {exc}") from None
    return artifact.config, request, plan, pred, max(pred.cost_usd - bare.cost_usd, 0.0), short_ms


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


def _cold_start_sourced(profile, model: str, workers: int, path) -> tuple[dict, str]:
    """``_cold_start`` and where it came from (only for a profile measured for ``model``)."""
    cold = _cold_start(profile, model, workers)
    where = _where(path, profile)
    if "cold_start_quantiles_ms" in cold:
        return cold, f"{model}'s cold start (p50 +{cold['cold_start_ms']:.0f} ms), {where}"
    return cold, (
        f"the no-op function's cold round trip ({cold['cold_start_ms']:.0f} ms; {model}'s own "
        f"cold start not measured), {where}"
    )


def _vm_curve(profile, model: str, base: SimProfile, path=None):
    """(batch curve, spread, its source): the profile's VM service times for ``model``, else
    ``base``'s."""
    times = profile.models.get(model)
    if times is None or not times.vm_service_ms:
        return base.vm_service_ms_by_batch, base.vm_service_cv, base.provenance["vm_curve"]
    points = tuple(sorted((int(b), float(q.median_ms)) for b, q in times.vm_service_ms.items()))
    spreads = [
        (q.at(0.9) - q.at(0.1)) / 2.56 / max(q.median_ms, 1e-9)
        for q in times.vm_service_ms.values()
    ]
    shown = ", ".join(f"{b}: {ms:.1f}" for b, ms in points)
    src = f"measured for {model} (ms by batch {shown}), {_where(path, profile)}"
    return points, float(min(max(sum(spreads) / len(spreads), 0.0), 1.0)), src + _dips(points)


def _dips(points) -> str:
    """A note when a batch took well over a larger one (a loaded host's measurement: mlp's
    batch 2 at 21.8 ms between 0.3 ms and 0.5 ms at load 8): simulated as measured, said."""
    for i, (b, ms) in enumerate(points):
        later = [(b2, ms2) for b2, ms2 in points[i + 1 :] if ms > 1.25 * ms2 + 0.5]
        if later:
            b2, ms2 = later[0]
            return (
                f"; batch {b} took longer than batch {b2} ({ms:.1f} vs {ms2:.1f} ms): measured "
                "on a busy host? `tidegate profile` again on a quiet one"
            )
    return ""


def _where(path, profile) -> str:
    return str(path)  # (the profile's own source is the banner's first line, `profile` in JSON)


def _workers(n: int) -> str:
    return "one function" if n <= 1 else f"{n} workers"


def _names(models) -> str:
    return ", ".join(sorted(models)) or "no model"


def from_profile_json(raw: dict, path: Path, model: str | None) -> SimProfile:
    """``profile.json`` read on its own: plan the model when its artifact sits beside the
    profile (``REPO/NAME/profile.json``), else take what the profile measured for the model (VM
    batch times, cold start) over the production target. A profile that did not measure the
    model is refused (never another model's numbers, silently)."""
    name = str(model or path.parent.name)
    if (path.parent / "config.toml").is_file() and (path.parent.name == name):
        return from_repo(path.parent.parent, name, profile_path=path)
    from policies.profile import Profile
    from policies.profile import ProfileError as PolicyProfileError

    try:
        profile = Profile.from_json(raw)
    except PolicyProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    measured = measured_models(profile, path)
    if name not in measured:
        copied = sorted(set(profile.models) - measured)
        raise ProfileError(
            f"{path} has no measurements for model {name!r} (it measured: {_names(measured)}"
            + (
                f"; {', '.join(copied)} are the bundled planner profile's, copied in"
                if copied
                else ""
            )
            + "); pass --model or another profile"
        )
    base = SimProfile.reference(name)
    curve, cv, vm_src = _vm_curve(profile, name, base, path)
    cold, cold_src = _cold_start_sourced(profile, name, base.burst_workers, path)
    why = f"{path} cannot plan {name} without its artifact: --repo REPO plans it"
    return base.with_overrides(
        vm_service_ms_by_batch=curve,
        vm_service_cv=cv,
        fn_host_cores=int(profile.cores),
        **cold,
        source=f"{path} ({profile.source}): its VM times and cold starts; the burst path's "
        "latency and bill are the production target's unless --repo plans the model",
    ).with_sources(
        vm_curve=vm_src,
        cold_start=cold_src,
        function_times=f"{base.provenance['function_times']} ({why})",
    )
