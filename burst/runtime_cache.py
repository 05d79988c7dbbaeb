"""What master and worker handlers share: the per-process weight/plan cache, store reads that
explain a missing key, event id checks and the request error type.

Split from ``burst.runtime`` (which re-exports ``BurstError`` and ``reset_cache``).
"""

from __future__ import annotations

import json
import time

from burst.graph import Graph
from burst.packed_conv import set_room
from burst.plan import Plan, Split
from burst.weights import (
    BLOB_BYTES,
    LruCache,
    graph_key,
    loads_tensors,
    plan_key,
    tensors_nbytes,
    weight_ids_key,
)

# One cache per function process: weights survive between warm invocations.
_CACHE: LruCache | None = None


class BurstError(Exception):
    """A partitioned request failed (bad event, missing plan, a worker failed)."""


def _cache() -> LruCache:
    global _CACHE
    if _CACHE is None:
        reset_cache()
    assert _CACHE is not None
    return _CACHE


def reset_cache(budget_bytes: int | None = None) -> LruCache:
    """Start a fresh per-process cache (tests; a new function memory size). Packed conv weights
    are charged to it (burst.packed_conv.set_room)."""
    global _CACHE
    _CACHE = cache = LruCache(budget_bytes)
    set_room(cache.grow_newest)
    return cache


async def _cached(key: str, load, size, label: str | None = None) -> tuple[object, bool]:
    """(value, loaded_now); ``label`` names what uses it in the cache's eviction log."""
    cache = _cache()
    value = cache.get(key, label)
    if value is not None:
        return value, False
    value = await load()
    cache.put(key, value, size(value), label)
    return value, True


async def _get(store, key: str) -> bytes:
    from burst.store.base import StoreError

    try:
        return await store.get(key)
    except StoreError as exc:
        if exc.missing:
            raise BurstError(
                f"{key} is not in the store: was the plan prepared (burst.weights.prepare_plan)?"
            ) from exc
        raise


async def _get_tensors(
    store, key: str, label: str | None = None, nbytes: int | None = None
) -> dict:
    """A weight blob from the store (its tensors are views of the bytes read, burst.weights.
    loads_tensors), read after the cache has made room for its ``nbytes`` (the plan's record
    of its size): reading first held the old and the new weights at once, and a warm 1152 MB
    master switching from a split VGG-16 plan (652 MB resident) back to the one-function plan
    (a 527 MB blob) died at 1153 MB in the read. A blob of unknown size gets its room once it
    is read."""
    if nbytes:
        _cache().make_room(nbytes, label)
    data = await _get(store, key)
    if not nbytes:
        _cache().make_room(len(data), label)
    return loads_tensors(data)


async def _weights(store, plan_id: str, part: str, key: str) -> tuple[dict, bool]:
    """A plan's weight blob (``part``: "master" or "s{stage}/w{worker}", stored at ``key``),
    cached by what it holds (its digest, ``burst.weights.blob_digest``): plans that hold the
    same tensors share one copy, so alternating them loads nothing. (weights, loaded_now)."""
    ids = await _weight_ids(store, plan_id)
    digest = ids.get(part)
    nbytes = (ids.get(BLOB_BYTES) or {}).get(part)
    if nbytes is None:  # a plan prepared before blob sizes were recorded
        plan, _ = await _load_plan(store, plan_id)
        nbytes = _blob_estimate(plan, part)
    label = f"plan {plan_id} {part}"
    cache_key = f"blob/{digest}" if digest else f"{plan_id}/{part}"
    value, loaded = await _cached(
        cache_key, lambda: _get_tensors(store, key, label, nbytes), tensors_nbytes, label
    )
    return value, loaded  # type: ignore[return-value]


def _blob_estimate(plan: Plan, part: str) -> int | None:
    """A weight blob's size from its plan: the bytes of the weights it holds (the master's:
    its serial stages'; shared weights counted per stage, so never less); None if the plan
    does not say."""
    try:
        if part == "master":
            return sum(s.weight_bytes[0] for s in plan.stages if s.split is Split.SERIAL)
        stage, worker = part.removeprefix("s").split("/w")
        return int(plan.stages[int(stage)].weight_bytes[int(worker)])
    except (ValueError, IndexError):
        return None


async def _weight_ids(store, plan_id: str) -> dict:
    """The plan's blob digests; {} for a plan prepared before they were written (its blobs are
    then cached per plan, as before)."""
    from burst.store.base import StoreError

    async def load():
        try:
            return json.loads(await store.get(weight_ids_key(plan_id)))
        except StoreError as exc:
            if exc.missing:
                return {}
            raise

    value, _ = await _cached(f"{plan_id}/weights", load, lambda v: 4096, f"plan {plan_id} ids")
    return value  # type: ignore[return-value]


async def _load_plan(store, plan_id: str) -> tuple[Plan, Graph]:
    async def load():
        plan = Plan.from_json(await _get(store, plan_key(plan_id)))
        graph = Graph.from_dict(json.loads(await _get(store, graph_key(plan_id))))
        return plan, graph

    value, _ = await _cached(f"{plan_id}/plan", load, lambda v: 1 << 20, f"plan {plan_id} graph")
    return value


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _check_id(value, what: str) -> str:
    if not isinstance(value, str) or not value or "/" in value or ".." in value:
        raise BurstError(f"{what} must be a non-empty string without '/', got {value!r}")
    return value
