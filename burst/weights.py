"""Per-worker weight slices: cut once per plan, stored under ``plans/{plan_id}/``, cached by workers."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import warnings
from collections import OrderedDict, deque

import torch

from burst.graph import Graph, build_graph, program_weights
from burst.partition import sliced_weights
from burst.plan import Plan, Split, Stage, weight_budget_bytes

log = logging.getLogger(__name__)


def plan_prefix(plan_id: str) -> str:
    return f"plans/{plan_id}/"


def worker_key(plan_id: str, stage: int, worker: int) -> str:
    return f"plans/{plan_id}/stage{stage}/worker{worker}.pt"


def master_key(plan_id: str) -> str:
    return f"plans/{plan_id}/master.pt"


def graph_key(plan_id: str) -> str:
    return f"plans/{plan_id}/graph.json"


def plan_key(plan_id: str) -> str:
    return f"plans/{plan_id}/plan.json"


def ready_key(plan_id: str) -> str:
    return f"plans/{plan_id}/READY"


def weight_ids_key(plan_id: str) -> str:
    """The plan's blobs by what they hold: ``{"master" | "s{stage}/w{worker}": digest}``."""
    return f"plans/{plan_id}/weights.json"


def blob_digest(blob: bytes) -> str:
    """A weight blob's identity: two plans whose master (or leg) holds the same tensors share
    one copy in a function's weight cache, whichever plan loaded it."""
    return hashlib.sha256(blob).hexdigest()[:24]


def worker_weights(graph: Graph, stage: Stage, worker: int, full: dict) -> dict:
    """The tensors worker ``worker`` of ``stage`` needs; an output split gets only its slice."""
    # sorted: the same tensors make the same blob bytes, so the same digest (blob_digest)
    names = sorted({w for n in stage.nodes for w in graph.node(n).weights})
    if stage.split is not Split.OUTPUT:
        return {w: full[w] for w in names}
    c0, c1 = stage.parts[worker]
    cut = set(stage.sliced_weights)
    return {w: (full[w][c0 : c1 + 1].clone() if w in cut else full[w]) for w in names}


def master_weights(graph: Graph, plan: Plan, full: dict) -> dict:
    names = sorted(
        {
            w
            for st in plan.stages
            if st.split is Split.SERIAL
            for n in st.nodes
            for w in graph.node(n).weights
        }
    )
    return {w: full[w] for w in names}


# Weight blobs: MAGIC, a little-endian u32 header length, a JSON header of (name, dtype, shape,
# offset), then the raw bytes of each tensor at a 64-byte aligned offset. A function loads them
# as views of the blob it read, with no copy: torch.load made each tensor a copy beside the
# blob, and a 512 MB master loading 122 MB of VGG-16 weights peaked over its size.
_MAGIC = b"TGW1"
_ALIGN = 64


def dumps_tensors(tensors: dict) -> bytes:
    entries, chunks, offset = [], [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        pad = -offset % _ALIGN
        chunks += [b"\0" * pad, raw]
        offset += pad
        entries.append(
            {"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
            | {"offset": offset}
        )
        offset += len(raw)
    header = json.dumps(entries).encode()
    start = len(_MAGIC) + 4 + len(header)
    lead = -start % _ALIGN
    header += b" " * lead  # JSON ignores trailing blanks; the data starts aligned
    return b"".join([_MAGIC, len(header).to_bytes(4, "little"), header, *chunks])


def loads_tensors(data: bytes) -> dict:
    """Tensors that are views of ``data`` (read-only: weights are never written)."""
    if not data.startswith(_MAGIC):  # a blob a torch.save wrote (a store prepared before)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    size = int.from_bytes(data[4:8], "little")
    entries = json.loads(data[8 : 8 + size])
    base = 8 + size
    out = {}
    with warnings.catch_warnings():  # frombuffer warns that bytes are not writable: by design
        warnings.simplefilter("ignore", UserWarning)
        for e in entries:
            dtype = getattr(torch, e["dtype"])
            count = math.prod(e["shape"])
            if not count:
                out[e["name"]] = torch.empty(e["shape"], dtype=dtype)
                continue
            flat = torch.frombuffer(data, dtype=dtype, count=count, offset=base + e["offset"])
            out[e["name"]] = flat.view(e["shape"])
    return out


async def prepare_plan(artifact, plan: Plan, store, *, graph: Graph | None = None) -> None:
    """Write the plan, its graph IR and every worker's weight slice to ``store`` (once per plan).

    ``artifact`` is a ``vmpool.artifact.Artifact`` or an ``ExportedProgram``.
    """
    from burst.store.base import StoreError

    try:
        await store.get(ready_key(plan.plan_id))
        return  # already prepared
    except StoreError as exc:
        if not exc.missing:
            raise
    program = artifact.load_program() if hasattr(artifact, "load_program") else artifact
    graph = graph or build_graph(program, plan.model)
    full = program_weights(program)
    pid = plan.plan_id
    await store.put(graph_key(pid), json.dumps(graph.to_dict()).encode())
    await store.put(plan_key(pid), plan.to_json().encode())
    blob = dumps_tensors(master_weights(graph, plan, full))
    await store.put(master_key(pid), blob)
    ids = {"master": blob_digest(blob)}
    for st in plan.stages:
        for j in range(st.workers):
            blob = dumps_tensors(worker_weights(graph, st, j, full))
            await store.put(worker_key(pid, st.index, j), blob)
            ids[f"s{st.index}/w{j}"] = blob_digest(blob)
    await store.put(weight_ids_key(pid), json.dumps(ids).encode())
    # written last: a reader that sees it sees everything above
    await store.put(ready_key(pid), b"1")


def cache_budget_bytes() -> int:
    """What the planner lets one function's weights fill: a warm master switching plans keeps
    no more than that (half its memory had let a 512 MB master hold 250 MB of weights beside a
    320 MB runtime)."""
    return weight_budget_bytes(int(os.environ.get("TIDEGATE_FUNCTION_MEMORY_MB", "1024")))


class LruCache:
    """A per-process cache bounded by total bytes (least recently used evicted first). Entries
    carry a label (which plan's weights) so an eviction says in the log which plan evicted which;
    nothing is evicted while the budget holds both."""

    def __init__(self, budget_bytes: int | None = None):
        self.budget_bytes = cache_budget_bytes() if budget_bytes is None else budget_bytes
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._labels: dict[str, str] = {}
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        # (evicted label, label of what needed the room), the latest only
        self.evictions: deque[tuple[str, str]] = deque(maxlen=64)

    def get(self, key: str, label: str | None = None):
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        if label:
            self._labels[key] = label  # the plan that uses it now
        self.hits += 1
        return item[0]

    def put(self, key: str, value, nbytes: int, label: str | None = None) -> None:
        if key in self._items:
            self.used_bytes -= self._items.pop(key)[1]
        self._items[key] = (value, nbytes)
        self._labels[key] = label or key
        self.used_bytes += nbytes
        # keep at least the newest entry: it is in use right now
        while self.used_bytes > self.budget_bytes and len(self._items) > 1:
            self._evict_oldest(label or key, nbytes)

    def make_room(self, nbytes: int, label: str | None = None) -> None:
        """Evict least recently used entries until ``nbytes`` more fit the budget: before a
        load, so the old entries are gone while the new one is read (evicting after it had let
        a warm 2048 MB master, switching plans, hold ~1 GB of old weights beside the new 553 MB
        and die of out-of-memory)."""
        while self._items and self.used_bytes + nbytes > self.budget_bytes:
            self._evict_oldest(label or "a new entry", nbytes)

    def _evict_oldest(self, for_label: str, nbytes: int) -> None:
        key, (_, size) = self._items.popitem(last=False)
        self.used_bytes -= size
        evicted = self._labels.pop(key, key)
        self.evictions.append((evicted, for_label))
        log.warning(
            "weight cache: %s (%.1f MB) evicts %s (%.1f MB): budget %.1f MB, %.1f MB left held",
            for_label,
            nbytes / 2**20,
            evicted,
            size / 2**20,
            self.budget_bytes / 2**20,
            self.used_bytes / 2**20,
        )

    def grow_newest(self, nbytes: int) -> bool:
        """Charge ``nbytes`` more to the newest entry (the one in use: its convs' packed copies,
        ``burst.packed_conv``), evicting older entries to make room; False, and nothing charged,
        if even the newest alone would not fit."""
        if not self._items:
            return False
        key = next(reversed(self._items))
        value, size = self._items[key]
        if size + nbytes > self.budget_bytes:
            return False
        self.make_room(nbytes, f"{self._labels.get(key, key)} (packed copies)")
        if key not in self._items:  # (make_room keeps the newest: it alone fits, see above)
            return False
        self._items[key] = (value, size + nbytes)
        self.used_bytes += nbytes
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def tensors_nbytes(tensors: dict) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


__all__ = [
    "prepare_plan",
    "worker_weights",
    "master_weights",
    "LruCache",
    "dumps_tensors",
    "loads_tensors",
    "worker_key",
    "master_key",
    "graph_key",
    "plan_key",
    "weight_ids_key",
    "blob_digest",
    "sliced_weights",
]
