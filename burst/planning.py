"""The one way to make a model's plan: what ``tidegate plan`` prints and the gateway runs.

``model_plan(graph, config, request, profile)`` builds the stage candidates from the graph, asks
``policies.planner`` for the latency-optimal plan (or the cheapest meeting an SLO) under the
memory limit, and assembles the ``Plan``. The profile is ``REPO/NAME/profile.json`` when
``tidegate profile`` wrote one, else the bundled reference profile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from burst.graph import Graph, dtype_bytes
from burst.plan import (
    check_args,
    DEFAULT_INLINE_LIMIT_BYTES,
    Plan,
    PlanError,
    Split,
    weight_budget_bytes,
    StageChoice,
    make_plan,
)
from policies.compute_fit import stale_kinds
from policies.costs import PriceTable
from policies.perf import Deployment, PerfModel, PlanPrediction
from policies.planner import Limits, Objective, PlanningError, cheapest_meeting_slo, latency_optimal
from policies.profile import Profile, ProfileError

REFERENCE_PROFILE = (
    Path(__file__).resolve().parents[1] / "policies" / "data" / "reference_profile.json"
)
PROFILE_FILE = "profile.json"
PLAN_ENTRY_BYTES = 1 << 20  # what a function's weight cache charges for the plan it runs
# with a local directory store a file round trip beats base64 through three hops from ~64 KB
# (ResNet-18, 1 worker, warm: 145 ms inline vs 112 ms through the store); remote stores cost a
# request and tens of ms, so there inline wins up to the platform's payload limit
LOCAL_STORE_INLINE_LIMIT_BYTES = 64 * 1024


def inline_limit_bytes(store_kind: str) -> int:
    """Largest tensor message sent inline (base64 in the invocation JSON) under "auto"."""
    return (
        LOCAL_STORE_INLINE_LIMIT_BYTES
        if store_kind in ("dir", "memory")
        else DEFAULT_INLINE_LIMIT_BYTES
    )


@dataclass(frozen=True)
class PlanRequest:
    """Everything a plan depends on besides the model and the profile."""

    workers: int
    batch: int = 1
    objective: Objective = Objective.LATENCY
    slo_ms: float | None = None
    percentile: float = 0.99
    memory_mb: int = 1024
    master_memory_mb: int | None = None
    transport: str = "auto"  # "per-stage": the planner picks inline / store / queue per stage
    store_kind: str = "dir"
    object_store_kind: str = "s3"  # with store_kind sqs: the store beside the queues
    split: str = "auto"
    prices: PriceTable = PriceTable()

    @property
    def master_mb(self) -> int:
        return int(self.master_memory_mb or self.memory_mb)

    def limits(self) -> Limits:
        # a function's weight cache also holds the plan itself (burst.runtime_cache: 1 MiB):
        # a plan filling the budget to the last MiB had it evicted, and its reload evicted
        # weights in use, every request
        return Limits(
            worker_weight_bytes=weight_budget_bytes(self.memory_mb) - PLAN_ENTRY_BYTES,
            master_weight_bytes=weight_budget_bytes(self.master_mb) - PLAN_ENTRY_BYTES,
        )


def store_kinds(store_cfg: dict) -> dict:
    """``PlanRequest``'s ``store_kind`` and ``object_store_kind`` for a store config (an sqs
    store's object store is its backing one)."""
    backing = store_cfg.get("backing") or {}
    return {
        "store_kind": store_cfg.get("kind", "dir"),
        "object_store_kind": backing.get("kind", "dir"),
    }


@lru_cache(maxsize=4)
def _read_profile(path: str, mtime: float) -> Profile:
    try:
        raw = json.loads(Path(path).read_text())
        profile = Profile.from_json(raw)
    except (OSError, ValueError, ProfileError) as exc:
        raise PlanError(f"cannot read profile {path}: {exc}") from exc
    stale = stale_kinds((raw.get("compute") or {}).get("kinds") or {})
    if stale and Path(path) != REFERENCE_PROFILE:  # the reference's stand in for them
        ref = _read_profile(str(REFERENCE_PROFILE), REFERENCE_PROFILE.stat().st_mtime).compute
        profile = dataclasses.replace(profile, compute=profile.compute.with_kinds_of(ref, stale))
    return profile


def load_profile(repo: str | Path | None = None, model: str | None = None) -> Profile:
    """``REPO/MODEL/profile.json`` if it exists, else the bundled reference profile."""
    if repo is not None and model is not None:
        path = Path(repo) / model / PROFILE_FILE
        if path.is_file():
            return _read_profile(str(path), path.stat().st_mtime)
    return _read_profile(str(REFERENCE_PROFILE), REFERENCE_PROFILE.stat().st_mtime)


def _tensor_bytes(graph: Graph, names: list[str], shapes: list[list[int]], batch: int) -> int:
    total = 0
    for name, shape in zip(names, shapes):
        dtype = None if name in graph.inputs else graph.node(name).dtype
        n = 1
        for d in shape:
            n *= -d * batch if d < 0 else d
        total += n * dtype_bytes(dtype)
    return total


def _value_shape(graph: Graph, name: str) -> list[int]:
    """The shape of a graph value: a node's, or an input's (a model may return its input)."""
    if name in graph.inputs:
        return graph.input_shapes[graph.inputs.index(name)] or []
    return graph.node(name).shape or []


def perf_model(graph: Graph, request: PlanRequest, profile: Profile) -> PerfModel:
    from burst.candidates import node_works

    out_shapes = [_value_shape(graph, o) for o in graph.outputs]
    dep = Deployment(
        memory_mb=request.memory_mb,
        master_memory_mb=request.master_mb,
        transport=request.transport,
        store_kind=request.store_kind,
        object_store_kind=request.object_store_kind,
        inline_limit_bytes=inline_limit_bytes(request.store_kind),
        prices=request.prices,
        input_bytes=_tensor_bytes(graph, graph.inputs, graph.input_shapes, request.batch),
        output_bytes=_tensor_bytes(graph, graph.outputs, out_shapes, request.batch),
    )
    return PerfModel(
        profile,
        dep,
        node_works(graph, request.batch),
        graph.model,
        graph.input_shapes[0] if graph.input_shapes else (),
        request.batch,
        node_works(graph, 1) if request.batch != 1 else None,
    )


def search_inputs(graph: Graph, request: PlanRequest, profile: Profile):
    """(perf model, candidates, limits) the planner searches for ``request``: where a
    function may lack room for every packed copy, each stage packed or plain (memory against
    time: ``policies.packing``)."""
    from burst.candidates import build_candidates
    from burst.packing import packing_choices

    model = perf_model(graph, request, profile)
    limits = request.limits()
    cands = build_candidates(graph, request.workers, request.batch)
    return model, packing_choices(cands, limits, model.packing_matters), limits


def choose_stages(
    graph: Graph, request: PlanRequest, profile: Profile | None = None
) -> list[StageChoice]:
    """The planner's stages for ``request`` (latency-optimal, or cheapest meeting the SLO).

    Stages of up to ``LEAD_MAX_WORKERS`` legs come with leaning variants only in plans of that
    many workers (``burst.candidates``: they tripled wider searches), so a wider request also
    searches that narrower space and takes the better plan: more workers allowed never plans
    slower or dearer (VGG-16 in 1024 MB: --workers 3 planned 360 ms, --workers 2 343 ms)."""
    from burst.candidates import LEAD_MAX_WORKERS, choices_of

    profile = profile or load_profile()
    spaces = [search_inputs(graph, request, profile)]
    if request.workers > LEAD_MAX_WORKERS:
        narrow = dataclasses.replace(request, workers=LEAD_MAX_WORKERS)
        spaces.append(search_inputs(graph, narrow, profile))
    try:
        if request.objective is Objective.COST:
            if request.slo_ms is None:
                raise PlanError("the cost objective needs an SLO (--slo-ms)")
            choice = _cheapest_with_headroom(spaces, request, graph)
        else:
            found = []
            for space in spaces:
                with contextlib.suppress(PlanningError):  # none fits: said below
                    found.append(latency_optimal(*space))
            if not found:
                from burst.plan_search import no_fit_message

                raise PlanError(no_fit_message(graph, request, spaces[0][1], PLAN_ENTRY_BYTES))
            choice = _guarded(spaces[0][0], found, spaces[0][1], request)
    except PlanningError as exc:
        raise PlanError(str(exc)) from exc
    return choices_of(graph, list(choice.stages))


# The cost objective first looks for the cheapest plan whose predicted percentile is this share
# under the SLO: the cheapest plan otherwise sits at the SLO's edge, where a p99 read from a
# profile's few hundred requests misses about half the time (VGG-16, 08:13 UTC: predicted p99
# 277.2 ms, measured 278.8 ms, 2 of 100 over a 278 ms SLO). Where no plan has that room, the
# cheapest plan meeting the SLO itself, as before: what is feasible stays feasible.
SLO_HEADROOM = 0.05


def _cheapest_with_headroom(spaces, request: PlanRequest, graph: Graph):
    """The cheapest plan over ``spaces`` (model, candidates, limits) with the headroom, else
    the cheapest meeting the SLO itself; where none does, why: no plan fits the memory at all
    (it said "no plan meets the SLO"), or the planner's word."""
    slo_ms, percentile = float(request.slo_ms or 0.0), request.percentile
    for slo in (slo_ms / (1 + SLO_HEADROOM), slo_ms):
        found, error = [], None
        for model, cands, limits in spaces:
            try:
                found.append(cheapest_meeting_slo(model, cands, limits, slo, percentile))
            except PlanningError as exc:
                error = error or exc
        if found:
            return min(found, key=lambda c: (c.prediction.cost_usd, c.prediction.p99_ms))
    fastest = []
    for space in spaces:
        with contextlib.suppress(PlanningError):
            fastest.append(latency_optimal(*space).prediction.percentile_ms(percentile))
    if fastest and error is not None:  # a plan fits: the SLO is what none meets
        least = math.ceil(min(fastest) * 100) / 100  # rounded up: an SLO the user may give
        raise PlanError(f"{error}; the fastest plan's is {least:.2f} ms (rounded up)") from error
    from burst.plan_search import no_fit_message

    raise PlanError(no_fit_message(graph, request, spaces[0][1], PLAN_ENTRY_BYTES))


def _guarded(model, found, cands, request: PlanRequest):
    """Of the latency plans ``found``, the lowest predicted p50; or the whole model in one
    function where that split's p50 (calibrated on this model's measured plans,
    ``policies.calibration``) does not beat it (``policies.plan_guard``)."""
    from policies.plan_guard import no_slower_than_serial

    choice = min(found, key=lambda c: (c.prediction.p50_ms, c.prediction.mean_ms))
    serial = sorted((c for c in cands if c.split == "serial" and c.packed), key=lambda c: c.start)
    return no_slower_than_serial(model, choice, serial, request.limits())


def default_choices(graph: Graph, request: PlanRequest) -> list[StageChoice]:
    """``make_plan``'s stages when none are given: the planner's with the bundled reference
    profile for split "auto", else every stage split that way."""
    if request.split == "auto":
        return choose_stages(graph, request)
    from burst.candidates import forced_choices

    return forced_choices(graph, request.split, request.workers)


def model_plan(graph: Graph, config, request: PlanRequest, profile: Profile) -> Plan:
    """The plan the gateway runs and ``tidegate plan`` prints for these arguments.

    ``config`` is the model's ``ModelConfig`` (its tensor names go into the plan).
    """
    # bad arguments first: a search with 0 workers said no plan fits the memory (VGG-16)
    check_args(request.workers, request.split, request.transport, request.batch, request.memory_mb)
    choices = None
    if request.split == "auto":
        choices = choose_stages(graph, request, profile)
    elif request.transport == "per-stage":  # forced stages, each on its best transport
        from burst.candidates import forced_choices

        choices = pick_transports(
            graph, forced_choices(graph, request.split, request.workers), request, profile
        )
    plan = make_plan(
        graph,
        workers=request.workers,
        split=request.split,
        memory_mb=request.memory_mb,
        master_memory_mb=request.master_memory_mb,
        transport=request.transport,
        batch=request.batch,
        inline_limit_bytes=inline_limit_bytes(request.store_kind),
        choices=choices,
        input_names=[t.name for t in config.inputs],
        output_names=[t.name for t in config.outputs],
    )
    if request.split == "auto":  # a forced split is run as asked (the runtime's limit holds)
        from burst.plan_memory import check_master_memory

        check_master_memory(graph, plan, request.master_mb)  # its tensors, not weights alone
    return plan


def pick_transports(
    graph: Graph, choices: list[StageChoice], request: PlanRequest, profile: Profile
) -> list[StageChoice]:
    """``choices`` with each split stage on the transport its estimate favours (the least
    mean time, or the least cost for the cost objective): stages are independent once fixed."""
    from burst.candidates import stage_candidate
    from burst.plan import build_stage
    from policies.planner import with_transports

    model = perf_model(graph, request, profile)
    cost = request.objective is Objective.COST
    out = []
    for i, choice in enumerate(choices):
        if choice.split is Split.SERIAL:
            out.append(choice)
            continue
        options = with_transports(
            model, [stage_candidate(build_stage(graph, choice, i, request.batch))]
        )
        estimate = {c.transport: model.stage(c) for c in options}
        best = min(estimate, key=lambda t: estimate[t].cost_usd if cost else estimate[t].mean_ms)
        out.append(dataclasses.replace(choice, transport=best))
    return out


def predict_plan(
    graph: Graph, plan: Plan, request: PlanRequest, profile: Profile
) -> PlanPrediction:
    """Predicted latency distribution and cost of ``plan`` (any plan, planned or forced)."""
    from burst.candidates import stage_candidate

    model = perf_model(graph, request, profile)
    return model.predict([stage_candidate(s) for s in plan.stages])


__all__ = [
    "PlanRequest",
    "Objective",
    "model_plan",
    "predict_plan",
    "load_profile",
    "choose_stages",
    "inline_limit_bytes",
    "Split",
]
