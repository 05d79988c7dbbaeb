"""Per-worker weight slices: cut once per plan, stored under ``plans/{plan_id}/``, cached by workers."""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings

import torch

from burst.graph import Graph, build_graph, program_weights
from burst.partition import sliced_weights
from burst.plan import Plan, Split, Stage


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
    """The plan's blobs by what they hold: ``{"master" | "s{stage}/w{worker}": digest}``, and
    under ``BLOB_BYTES`` each blob's size in bytes."""
    return f"plans/{plan_id}/weights.json"


BLOB_BYTES = "blob_bytes"


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
    ids: dict = {"master": blob_digest(blob)}
    sizes = {"master": len(blob)}
    for st in plan.stages:
        for j in range(st.workers):
            blob = dumps_tensors(worker_weights(graph, st, j, full))
            await store.put(worker_key(pid, st.index, j), blob)
            ids[f"s{st.index}/w{j}"] = blob_digest(blob)
            sizes[f"s{st.index}/w{j}"] = len(blob)
    # each blob's size: a warm instance makes room for it before reading it (blob_bytes)
    ids[BLOB_BYTES] = sizes
    await store.put(weight_ids_key(pid), json.dumps(ids).encode())
    # written last: a reader that sees it sees everything above
    await store.put(ready_key(pid), b"1")


def tensors_nbytes(tensors: dict) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


from burst.weight_cache import LruCache  # noqa: E402  (re-exported)

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
    "BLOB_BYTES",
    "blob_digest",
    "sliced_weights",
]
