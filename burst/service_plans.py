"""The service's plan work that runs in a worker thread: building a model's graph and slicing a
plan's weights into the object store. Seconds of CPU each, kept off the gateway's event loop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from vmpool.artifact import CONFIG_FILE, PROGRAM_FILE, load_artifact

log = logging.getLogger("tidegate.burst")


def load_graph(repo: Path, model: str):
    """(graph IR, model config) of a model in the repository."""
    from burst.graph import build_graph

    artifact = load_artifact(repo, model)
    return build_graph(artifact.load_program(), model), artifact.config


def model_files_stamp(repo: Path, model: str) -> tuple:
    """When the files a model's plan is made from last changed (program, config, profile; None
    where missing): ``tidegate profile`` or a new export while the gateway runs means new plans
    (the cached plans once stayed as they were, unlike what ``tidegate plan`` printed)."""
    from burst.planning import PROFILE_FILE

    out = []
    for name in (PROGRAM_FILE, CONFIG_FILE, PROFILE_FILE):
        try:
            out.append((repo / model / name).stat().st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


def drop_stale(model: str, stamp: tuple, *caches: dict) -> None:
    """Forget the model's entries (keyed ``(model, ..., stamp)``) made from files it no longer
    has: a gateway that sees a model exported or profiled again kept the plans (and their
    locks) of every version otherwise, each plan holding its partition of the graph."""
    for cache in caches:
        for old in [k for k in cache if k[0] == model and k[-1] != stamp]:
            del cache[old]


def plan_and_predict(repo: Path, model: str, graph, config, request):
    """The plan ``tidegate plan`` prints for ``request``, and its predicted p99 latency (ms) and
    cost per request ($: compute, invocations, store requests) from the performance model
    (None, None if it cannot predict): routing's burst estimate until real answers are seen,
    and the scaler's price of a spilled request."""
    from burst.planning import load_profile, model_plan, predict_plan

    profile = load_profile(repo, model)
    plan = model_plan(graph, config, request, profile)
    try:
        prediction = predict_plan(graph, plan, request, profile)
        return plan, float(prediction.p99_ms), float(prediction.cost_usd)
    except Exception:  # noqa: BLE001 - a prediction is advisory; the plan still runs
        return plan, None, None


class ModelReplaced(Exception):
    """model.pt2 was replaced after the plan's graph was read: its weights are not the plan's
    (``Plan.weights_digest``), so the plan is made again from the new file."""


class _Pinned:
    """The model's artifact, whose program is read only while model.pt2 is the file with
    ``stamp`` (the one the plan was made from): else ModelReplaced, before anything is stored
    under the plan's id (new weights once went there under the old weights' id)."""

    def __init__(self, repo: Path, model: str, stamp) -> None:
        self.repo, self.model, self.stamp = repo, model, stamp

    def _check(self) -> None:
        if model_files_stamp(self.repo, self.model)[0] != self.stamp:
            raise ModelReplaced(f"{self.model}: {PROGRAM_FILE} was replaced; planning again")

    def load_program(self):
        self._check()
        program = load_artifact(self.repo, self.model).load_program()
        self._check()  # (replaced while it was read: perhaps the old file, perhaps not)
        return program


def prepare_in_thread(repo: Path, store_cfg: dict, model: str, plan, graph, stamp=None) -> None:
    """Store the plan's weight slices, on this thread's own event loop; with ``stamp`` (the
    model files' when its graph was read) only while model.pt2 is still that file. Then the
    model's versions older than the grace rule leave the store (``burst.weight_retention``)."""
    from burst.store.factory import make_store
    from burst.weight_retention import after_prepare, record_safely
    from burst.weights import prepare_plan

    source = _Pinned(repo, model, stamp[0]) if stamp else load_artifact(repo, model)

    async def go():
        store = make_store(store_cfg)  # clients are loop-bound: one for this thread
        try:
            await prepare_plan(source, plan, store, graph=graph)
            return await record_safely(store, store_cfg, model, plan)  # in the store's index
        finally:
            await store.close()

    if asyncio.run(go()):  # old versions' weights past their grace: deleted on a thread
        after_prepare(store_cfg, model, plan)


def service_plan_request(service, workers: int, batch: int = 1, split: str | None = None):
    """``BurstService.plan_request``: what a plan depends on in the service's config."""
    from burst.planning import PlanRequest, store_kinds

    return PlanRequest(
        workers=workers,
        batch=batch,
        memory_mb=service.memory_mb,
        master_memory_mb=service.master_memory_mb,
        transport=service.transport,
        **store_kinds(service.store_cfg),
        split=split or service.split,
    )


def forget_unstored(plans: dict, plan, exc: BaseException) -> bool:
    """Drop ``plan`` from the service's prepared ``plans`` when ``exc`` says its objects are
    not in the store (a dir store's objects/ removed, a bucket emptied by a lifecycle rule, an
    S3 server restarted empty): the next request prepares it again (``prepare_plan`` writes
    what its ready marker no longer vouches for). Before, every burst request of it failed
    "plans/.../plan.json is not in the store" until the gateway restarted."""
    text = str(exc)
    if f"plans/{plan.plan_id}/" not in text or "is not in the store" not in text:
        return False
    gone = [key for key, cached in plans.items() if cached is plan]
    for key in gone:
        plans.pop(key, None)
    if gone:
        log.warning(
            "plan %s: its objects are gone from the store; preparing it again", plan.plan_id
        )
    return bool(gone)
