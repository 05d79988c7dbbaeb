"""Plan weights of old model versions leave the object store, after a grace period.

Each plan's weight slices live under ``plans/{plan_id}/`` (``burst.weights``; ~45 MB for
ResNet-18 at 4 workers), and a plan's id covers the model's weights (``Plan.weights_digest``):
a model exported again gets new plans, and the old version's objects stayed in the store for
good. Other gateway replicas sharing the store may still run the old version, so deleting at
once would break their requests.

Which versions a store holds is kept beside them, one small index object per model
(``plan-versions/{model}.json``): each version (weights digest) with when it became current,
when a replica last prepared a plan of it, and its plans. A replica records its plan there
whenever it prepares one (``record_plan``: a gateway's start, a new export, a new worker count).
A version's plans are deleted (``sweep``) once

- a newer version of the model has been current for ``grace_s`` (``[burst.weights]
  grace_h``, default 24 h) and no replica has prepared a plan of it for as long;
- it is not among the ``keep_versions`` newest (``[burst.weights] keep_versions``, default 2: the
  current one and the one before, for a rollback that needs no re-upload);
- and it is not what this process runs.

Recording a plan (after the service has let an old version's plans go, ``burst.service_plans.
drop_stale``, or at start) also tells whether a version is past the rule; then the sweep runs on
a thread of its own: a request never waits for it, and a store failure is logged and the sweep
tried again the next time (the versions stay in the index until their objects are gone). Replicas write the index without a lock: two that write it at
the same moment can lose the other's entry, which leaves objects in the store (never deletes
too many: a version not in the index is never deleted), and the entry is written again by the
replica's next plan.

Plans stored before this index existed (or whose entry such a write lost) are adopted on first
sight: once per process and store, the first plan recorded lists ``plans/`` and enters each plan
no index names into its model's index (model and weights digest from its ``plan.json``), as a
version older than every one the index knows, last used now. The rule above then applies: they
go ``grace_s`` after a gateway first saw them at the earliest, never at once, and never while a
replica runs them or they are among the ``keep_versions`` newest. Before, they stayed for good.
A plan whose ``plan.json`` cannot be read is left alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from burst.store.base import StoreError
from burst.weights import plan_key, plan_prefix

log = logging.getLogger("tidegate.burst")
INDEX_PREFIX = "plan-versions/"
DEFAULT_GRACE_H, DEFAULT_KEEP_VERSIONS = 24.0, 2
# this process's read-modify-writes of a model's index, one at a time (threads: own loops)
_index_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()
_sweeps: list[threading.Thread] = []
_adopted: set[str] = set()  # the stores (their config) whose unindexed plans were adopted
clock: Callable[[], float] = time.time  # the service's time here (tests set their own)


def index_key(model: str) -> str:
    return f"{INDEX_PREFIX}{model}.json"


def _index_lock(model: str) -> threading.Lock:
    with _locks_lock:
        return _index_locks.setdefault(model, threading.Lock())


@dataclass(frozen=True)
class WeightRetention:
    grace_s: float = DEFAULT_GRACE_H * 3600.0
    keep_versions: int = DEFAULT_KEEP_VERSIONS
    clock: Callable[[], float] = field(default=time.time, compare=False)

    @classmethod
    def from_store_cfg(cls, cfg: dict, clock: Callable[[], float] = time.time):
        """From the service's store config dict, where ``[burst.weights]`` puts its keys
        (``PlanWeights.store_keys``)."""
        grace_h = cfg.get("weights_grace_h")
        keep = cfg.get("weights_keep_versions")
        return cls(
            DEFAULT_GRACE_H * 3600.0 if grace_h is None else float(grace_h) * 3600.0,
            DEFAULT_KEEP_VERSIONS if keep is None else max(1, int(keep)),
            clock,
        )

    def victims(self, versions: list[dict], in_use: set[str]) -> list[dict]:
        """The versions (oldest first) whose plans go now; ``in_use``: digests this process runs."""
        now = self.clock()
        ordered = sorted(versions, key=lambda v: v["current_since"])
        kept = {v["digest"] for v in ordered[-self.keep_versions :]} | in_use
        out = []
        for older, newer in zip(ordered, ordered[1:], strict=False):
            if older["digest"] in kept:
                continue
            superseded_s = now - newer["current_since"]  # a newer one current this long
            unused_s = now - older["last_used"]  # no replica prepared a plan of it this long
            if superseded_s >= self.grace_s and unused_s >= self.grace_s:
                out.append(older)
        return out


async def load_index(store, model: str) -> list[dict]:
    """The model's versions in the store (none yet: [])."""
    try:
        raw = await store.get(index_key(model))
    except StoreError as exc:
        if exc.missing:
            return []
        raise
    try:
        versions = json.loads(raw)["versions"]
        return [v for v in versions if {"digest", "current_since", "last_used"} <= set(v)]
    except (ValueError, KeyError, TypeError):  # unreadable: rewritten from what is known now
        log.warning("plan weights: index %s unreadable; starting it again", index_key(model))
        return []


async def _save(store, model: str, versions: list[dict]) -> None:
    body = {"model": model, "versions": sorted(versions, key=lambda v: v["current_since"])}
    await store.put(index_key(model), json.dumps(body, indent=1).encode())


async def record_plan(store, model: str, digest: str, plan_id: str, now: float) -> list[dict]:
    """Note in the model's index that this replica prepared ``plan_id`` of version ``digest``
    (a version not the newest becomes current again: a rollback); the versions it lists."""
    with _index_lock(model):
        versions = await load_index(store, model)
        mine = next((v for v in versions if v["digest"] == digest), None)
        if mine is None:
            mine = {"digest": digest, "current_since": now, "plans": []}
            versions.append(mine)
        elif any(v is not mine and v["current_since"] >= mine["current_since"] for v in versions):
            mine["current_since"] = now  # (not the newest alone: adopted versions tie)
        mine["last_used"] = now
        if plan_id not in mine.setdefault("plans", []):
            mine["plans"].append(plan_id)
        await _save(store, model, versions)
        return versions


async def adopt_unindexed(store, now: float) -> int:
    """Enter the plans no model's index names into their model's index, seen first ``now``
    (the module docstring); how many."""
    keys = await store.list_prefix("plans/")
    plan_ids = sorted(
        {k.split("/")[1] for k in keys if k.count("/") == 2 and k.endswith("/plan.json")}
    )
    found: dict[str, list[tuple[str, str]]] = {}
    for plan_id in plan_ids:
        try:
            raw = json.loads(await store.get(plan_key(plan_id)))
            found.setdefault(str(raw["model"]), []).append(
                (plan_id, str(raw.get("weights_digest", "")))
            )
        except (StoreError, ValueError, KeyError, TypeError) as exc:
            log.warning("plan weights: plan %s left alone (its plan.json: %s)", plan_id, exc)
    adopted = 0
    for model, plans in found.items():
        with _index_lock(model):
            versions = await load_index(store, model)
            known = {p for v in versions for p in v.get("plans", [])}
            oldest_s = min((v["current_since"] for v in versions), default=now)
            before = adopted
            for plan_id, digest in [(p, d) for p, d in plans if p not in known]:
                mine = next((v for v in versions if v["digest"] == digest), None)
                if mine is None:  # older than any version the index knows, last seen now
                    mine = {"digest": digest, "current_since": oldest_s - 1.0, "last_used": now}
                    versions.append(mine)
                mine.setdefault("plans", []).append(plan_id)
                adopted += 1
                log.info(
                    "plan weights: plan %s of %s (weights %s) adopted into the index",
                    plan_id,
                    model,
                    digest or "unknown",
                )
            if adopted > before:
                await _save(store, model, versions)
    return adopted


async def _adopt_once(store, store_cfg: dict) -> None:
    """``adopt_unindexed`` the first time this process records a plan in this store (a failure
    logged; tried again at the next plan)."""
    key = json.dumps(store_cfg, sort_keys=True, default=str)
    with _locks_lock:
        if key in _adopted:
            return
        _adopted.add(key)
    try:
        await adopt_unindexed(store, clock())
    except Exception as exc:  # noqa: BLE001 - never the plan's failure
        with _locks_lock:
            _adopted.discard(key)
        log.warning("plan weights: could not look for plans stored before the index: %s", exc)


async def sweep(store, model: str, in_use: set[str], rule: WeightRetention) -> list[str]:
    """Delete the plans of the model's versions past the grace rule; the plan ids deleted. A
    version leaves the index only once all its plans are gone (a failure: kept for next time)."""
    with _index_lock(model):
        versions = await load_index(store, model)
        doomed = rule.victims(versions, in_use)
        deleted: list[str] = []
        for version in doomed:
            for plan_id in list(version.get("plans", [])):
                objects = await store.delete_prefix(plan_prefix(plan_id))
                deleted.append(plan_id)
                version["plans"].remove(plan_id)
                log.info(
                    "plan weights: deleted plan %s of %s (weights %s, superseded, last used "
                    "%.1f h ago): %d objects",
                    plan_id,
                    model,
                    version["digest"],
                    (rule.clock() - version["last_used"]) / 3600.0,
                    objects,
                )
        if doomed:
            # (read again: another replica may have written since; only the doomed go from it)
            gone = {v["digest"] for v in doomed}
            versions = [v for v in await load_index(store, model) if v["digest"] not in gone]
            await _save(store, model, versions)
        return deleted


def after_prepare(store_cfg: dict, model: str, plan) -> None:
    """The sweep of the model's old versions, on a thread of its own (``record_safely`` said
    one is due)."""
    rule = WeightRetention.from_store_cfg(store_cfg, clock=lambda: clock())
    thread = threading.Thread(
        target=_sweep_thread,
        args=(store_cfg, model, {plan.weights_digest}, rule),
        name=f"plan-weights-sweep-{model}",
        daemon=True,
    )
    _sweeps[:] = [t for t in _sweeps if t.is_alive()] + [thread]
    thread.start()


async def record_safely(store, store_cfg: dict, model: str, plan) -> bool:
    """``record_plan`` (a failure logged, never the request's: the next plan records it);
    whether a sweep is due (a version past the grace rule: ``after_prepare``)."""
    await _adopt_once(store, store_cfg)
    try:
        versions = await record_plan(store, model, plan.weights_digest, plan.plan_id, clock())
    except Exception as exc:  # noqa: BLE001 - a store failure must not fail the plan
        log.warning("plan weights: could not record plan %s of %s: %s", plan.plan_id, model, exc)
        return False
    rule = WeightRetention.from_store_cfg(store_cfg, clock=lambda: clock())
    return bool(rule.victims(versions, {plan.weights_digest}))


def _sweep_thread(store_cfg: dict, model: str, in_use: set[str], rule: WeightRetention) -> None:
    from burst.store.factory import make_store

    async def go() -> None:
        store = make_store(store_cfg)  # clients are loop-bound: one for this thread
        try:
            await sweep(store, model, in_use, rule)
        finally:
            await store.close()

    try:
        asyncio.run(go())
    except Exception as exc:  # noqa: BLE001 - kept in the index: the next sweep tries again
        log.warning("plan weights: sweep of %s failed, tried again later: %s", model, exc)


def wait_for_sweeps(timeout_s: float = 30.0) -> None:
    """Until the sweeps started so far have finished (tests; a closing service)."""
    deadline = time.monotonic() + timeout_s
    for thread in list(_sweeps):
        thread.join(max(0.0, deadline - time.monotonic()))
