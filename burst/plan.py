"""Partition plans: plain, versioned JSON that says how to run a model fork-join on functions."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from burst.graph import Graph, dtype_bytes, node_inputs
from burst.halo import choose_grid, split_range
from burst.partition import (Block, _shape, blocks, output_head, per_channel, sliced_weights,
                             tile_windows)

PLAN_VERSION = 1
SPLITS = ("auto", "spatial", "output", "none")  # none: the whole model on the master
TRANSPORTS = ("auto", "inline", "store")
DEFAULT_INLINE_LIMIT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit
# auto mode: below these a stage is not worth a fork-join round trip
MIN_SPATIAL_POSITIONS = 64
MIN_SPLIT_MACS = 2_000_000
# auto mode, output split: fully connected layers from 1 MB of weights (that is where a model's
# memory sits, and their inputs are small vectors); a conv only where its weights crowd one
# function's memory or its compute outweighs a fork-join round (a few ms here, 10-20 ms on
# Lambda). Measured with ops/bench/burst_scaling.py: leaving ResNet-18's 7x7 layer4 convs
# (116 M MACs, 2-9 MB each) on the master took 4 workers from 110 to 86 ms warm.
MIN_LINEAR_SPLIT_WEIGHT_BYTES = 1 << 20
OUTPUT_SPLIT_MEMORY_SHARE = 1 / 16
MIN_OUTPUT_SPLIT_MACS = 200_000_000


class PlanError(Exception):
    """A plan is malformed or cannot be made."""


@dataclass
class Plan:
    model: str
    batch: int
    workers: int
    split: str
    memory_mb: int
    transport: str
    inputs: list[str]
    input_shapes: list[list[int]]
    outputs: list[str]
    stages: list[dict]
    inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES
    master_function: str = "tidegate-master"
    worker_function: str = "tidegate-worker"  # worker j is the function "{worker_function}-{j}"
    plan_id: str = ""
    plan_version: int = PLAN_VERSION
    totals: dict = field(default_factory=dict)

    def content(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "plan_version", "model", "batch", "workers", "split", "memory_mb", "transport",
            "inline_limit_bytes", "master_function", "worker_function", "inputs",
            "input_shapes", "outputs", "stages", "totals")}
        return d

    def to_dict(self) -> dict:
        return {"plan_id": self.plan_id, **self.content()}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Plan":
        try:
            raw = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw) -> "Plan":
        if not isinstance(raw, dict):
            raise PlanError("plan must be a JSON object")
        version = raw.get("plan_version")
        if version != PLAN_VERSION:
            raise PlanError(f"unsupported plan_version {version!r} (this build reads "
                            f"{PLAN_VERSION})")
        try:
            plan = cls(**{k: raw[k] for k in (
                "model", "batch", "workers", "split", "memory_mb", "transport", "inputs",
                "input_shapes", "outputs", "stages", "inline_limit_bytes", "master_function",
                "worker_function", "plan_id", "totals")})
        except KeyError as exc:
            raise PlanError(f"plan is missing field {exc.args[0]!r}") from exc
        except TypeError as exc:
            raise PlanError(f"malformed plan: {exc}") from exc
        _validate(plan)
        if plan.plan_id != content_hash(plan.content()):
            raise PlanError("plan_id does not match the plan's content (edited or corrupted)")
        return plan


def worker_function_name(plan: "Plan", worker: int) -> str:
    """Worker ``j`` always runs in its own function, so its instances keep the weight slices of
    worker ``j`` of every stage warm (as Gillis deploys one function per partition); one generic
    worker function would hand slices to random instances and reload them."""
    return f"{plan.worker_function}-{worker}"


def content_hash(content: dict) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _validate(plan: Plan) -> None:
    if not isinstance(plan.stages, list) or not plan.stages:
        raise PlanError("plan has no stages")
    for i, st in enumerate(plan.stages):
        if not isinstance(st, dict) or st.get("split") not in ("spatial", "output", "serial"):
            raise PlanError(f"stage {i}: split must be spatial, output or serial")
        if not isinstance(st.get("nodes"), list) or not st["nodes"]:
            raise PlanError(f"stage {i}: needs a non-empty node list")
        if st["split"] == "spatial" and len(st.get("tiles", [])) != st.get("workers"):
            raise PlanError(f"stage {i}: one tile per worker expected")
        if st["split"] == "output" and len(st.get("parts", [])) != st.get("workers"):
            raise PlanError(f"stage {i}: one part per worker expected")
    if plan.transport not in TRANSPORTS:
        raise PlanError(f"transport must be one of {TRANSPORTS}")


def _concrete(shape: list[int], batch: int) -> list[int]:
    return [batch if d == -1 else d for d in shape]


def _nbytes(graph: Graph, name: str, batch: int, shape=None) -> int:
    node_dtype = None if name in graph.inputs else graph.node(name).dtype
    shape = shape if shape is not None else _concrete(_shape(graph, name), batch)
    return math.prod(shape) * dtype_bytes(node_dtype)


def _users(graph: Graph) -> dict[str, int]:
    users: dict[str, int] = {o: 1 for o in graph.outputs}
    for n in graph.nodes:
        for r in node_inputs(n):
            users[r] = users.get(r, 0) + 1
    return users


def _group(kind: str, names: list[str], graph: Graph, src: str | None = None,
           out: str | None = None) -> dict:
    nodes = [graph.node(n) for n in names]
    return {"kind": kind, "names": list(names), "input": src, "output": out,
            "macs": sum(n.macs for n in nodes), "weight_bytes": sum(n.weight_bytes for n in nodes)}


def _worth_output_split(node, memory_mb: int) -> bool:
    if node.op.startswith("aten.linear"):
        return node.weight_bytes >= MIN_LINEAR_SPLIT_WEIGHT_BYTES
    return (node.weight_bytes >= memory_mb * (1 << 20) * OUTPUT_SPLIT_MEMORY_SHARE
            or node.macs >= MIN_OUTPUT_SPLIT_MACS)


def _output_groups(graph: Graph, names: list[str], users: dict, heavy_only: bool,
                   memory_mb: int) -> list[dict]:
    """Node runs: output-split heads (conv/linear) with their trailing per-channel ops."""
    out: list[dict] = []
    i = 0
    while i < len(names):
        node = graph.node(names[i])
        if output_head(graph, node) and (not heavy_only or _worth_output_split(node, memory_mb)):
            chain = [node.name]
            while (i + 1 < len(names) and users.get(chain[-1], 0) == 1
                   and chain[-1] not in graph.outputs
                   and per_channel(graph, graph.node(names[i + 1]))
                   and node_inputs(graph.node(names[i + 1])) == [chain[-1]]):
                i += 1
                chain.append(names[i])
            out.append(_group("output", chain, graph, node_inputs(node)[0], chain[-1]))
        else:
            _append(out, _group("serial", [names[i]], graph))
        i += 1
    return out


def _groups(graph: Graph, bl: list[Block], split: str, workers: int,
            memory_mb: int) -> list[dict]:
    """Stage groups in order; consecutive serial groups merged."""
    users = _users(graph)
    groups: list[dict] = []
    pending: list[str] = []  # nodes left to output-split or run serially

    def flush():
        for g in _output_groups(graph, pending, users, heavy_only=(split == "auto"),
                                memory_mb=memory_mb):
            _append(groups, g)
        pending.clear()
    i = 0
    while i < len(bl):
        b = bl[i]
        if split in ("spatial", "auto") and b.kind == "spatial":
            run = [b]
            hw = graph.node(b.output).shape[2:]
            while (i + 1 < len(bl) and bl[i + 1].kind == "spatial"
                   and graph.node(bl[i + 1].output).shape[2:] == hw):
                i += 1
                run.append(bl[i])
            i += 1
            names = [n for x in run for n in x.nodes]
            macs = sum(x.macs for x in run)
            if split == "spatial" or (hw[0] * hw[1] >= MIN_SPATIAL_POSITIONS
                                      and macs >= MIN_SPLIT_MACS):
                flush()
                groups.append(_group("spatial", names, graph, run[0].inputs[0], run[-1].output))
            else:
                # small map: split conv output channels only where the weights are big
                pending.extend(names)
            continue
        pending.extend(b.nodes)
        i += 1
    flush()
    return groups


def _append(groups: list, item: dict) -> None:
    if groups and groups[-1]["kind"] == "serial" and item["kind"] == "serial":
        groups[-1]["names"].extend(item["names"])
        groups[-1]["macs"] += item["macs"]
        groups[-1]["weight_bytes"] += item["weight_bytes"]
    else:
        groups.append(item)


def make_plan(graph: Graph, *, workers: int, split: str = "auto", memory_mb: int = 1024,
              transport: str = "auto", batch: int = 1,
              inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES) -> Plan:
    """Partition ``graph`` into fork-join stages for ``workers`` functions."""
    if not isinstance(workers, int) or workers < 1:
        raise PlanError(f"workers must be a positive integer, got {workers!r}")
    if split not in SPLITS:
        raise PlanError(f"split must be one of {SPLITS}, got {split!r}")
    if transport not in TRANSPORTS:
        raise PlanError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    if not isinstance(batch, int) or batch < 1:
        raise PlanError(f"batch must be a positive integer, got {batch!r}")
    if memory_mb < 128:
        raise PlanError(f"memory_mb must be at least 128, got {memory_mb}")
    stages: list[dict] = []
    if split == "none":
        groups = [_group("serial", [n.name for n in graph.nodes], graph)]
    else:
        groups = _groups(graph, blocks(graph), split, workers, memory_mb)
    for g in groups:
        kind = g["kind"]
        st: dict = {"index": len(stages), "split": kind, "nodes": g["names"],
                    "macs": g["macs"] * batch}
        if kind == "serial":
            st.update(workers=0, weight_bytes=[g["weight_bytes"]], bytes_in=[], bytes_out=[])
        else:
            st.update(input=g["input"], output=g["output"])
            (_spatial if kind == "spatial" else _output)(graph, st, g, workers, batch)
        stages.append(st)
    plan = Plan(model=graph.model, batch=batch, workers=workers, split=split,
                memory_mb=int(memory_mb), transport=transport,
                inputs=list(graph.inputs),
                input_shapes=[_concrete(s, batch) for s in graph.input_shapes],
                outputs=list(graph.outputs), stages=stages,
                inline_limit_bytes=int(inline_limit_bytes))
    split_stages = [s for s in stages if s["split"] != "serial"]
    plan.totals = {
        "stages": len(stages),
        "split_stages": len(split_stages),
        "invocations": sum(s["workers"] for s in split_stages),
        "bytes_to_workers": sum(sum(s["bytes_in"]) for s in split_stages),
        "bytes_from_workers": sum(sum(s["bytes_out"]) for s in split_stages),
        "max_worker_weight_bytes": max([max(s["weight_bytes"]) for s in split_stages] or [0]),
        "master_weight_bytes": sum(s["weight_bytes"][0] for s in stages if s["split"] == "serial"),
        "model_weight_bytes": sum(w["bytes"] for w in graph.weights.values()),
    }
    # weights may fill half a function's memory (the worker cache budget); the rest is for
    # activations and the runtime
    budget = memory_mb * 1024 * 1024 // 2
    plan.totals["fits_memory"] = (plan.totals["max_worker_weight_bytes"] <= budget
                                  and plan.totals["master_weight_bytes"] <= budget)
    plan.plan_id = content_hash(plan.content())
    return plan


def _spatial(graph: Graph, st: dict, g: dict, workers: int, batch: int) -> None:
    out_shape = _concrete(graph.node(st["output"]).shape, batch)
    in_shape = _concrete(_shape(graph, st["input"]), batch)
    gh, gw = choose_grid(workers, out_shape[2], out_shape[3])
    tiles = []
    names = st["nodes"]
    for rows in split_range(out_shape[2], gh):
        for cols in split_range(out_shape[3], gw):
            need = tile_windows(graph, names, st["output"], (rows, cols))
            tiles.append({"out": [list(rows), list(cols)],
                          "in": [list(need[st["input"]][0]), list(need[st["input"]][1])]})
    wbytes = g["weight_bytes"]
    st.update(grid=[gh, gw], tiles=tiles, workers=len(tiles), weight_bytes=[wbytes] * len(tiles))

    def area(win):
        return (win[0][1] - win[0][0] + 1) * (win[1][1] - win[1][0] + 1)
    st["bytes_in"] = [_nbytes(graph, st["input"], batch, in_shape[:2] + [area(t["in"]), 1])
                      for t in tiles]
    st["bytes_out"] = [_nbytes(graph, st["output"], batch, out_shape[:2] + [area(t["out"]), 1])
                       for t in tiles]


def _output(graph: Graph, st: dict, g: dict, workers: int, batch: int) -> None:
    head = graph.node(g["names"][0])
    out_shape = _concrete(graph.node(st["output"]).shape, batch)
    cat_dim = 1 if head.op != "aten.linear.default" else len(out_shape) - 1
    channels = out_shape[cat_dim]
    parts = split_range(channels, workers)
    sliced = {w for name in st["nodes"] for w in sliced_weights(graph.node(name))}
    whole = {w for name in st["nodes"] for w in graph.node(name).weights} - sliced
    wb = []
    for c0, c1 in parts:
        b = sum(graph.weights[w]["bytes"] * (c1 - c0 + 1) // graph.weights[w]["shape"][0]
                for w in sliced)
        wb.append(b + sum(graph.weights[w]["bytes"] for w in whole))
    in_bytes = _nbytes(graph, st["input"], batch)
    per_channel_out = _nbytes(graph, st["output"], batch) // channels
    st.update(parts=[list(p) for p in parts], cat_dim=cat_dim, workers=len(parts),
              sliced_weights=sorted(sliced), weight_bytes=wb, bytes_in=[in_bytes] * len(parts),
              bytes_out=[per_channel_out * (c1 - c0 + 1) for c0, c1 in parts])


def stage_inputs(graph: Graph, stage: dict) -> list[str]:
    """Values a stage reads that it does not produce."""
    inside = set(stage["nodes"])
    out: list[str] = []
    for name in stage["nodes"]:
        for r in node_inputs(graph.node(name)):
            if r not in inside and r not in out:
                out.append(r)
    return out
