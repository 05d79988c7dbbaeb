"""Partition plans: plain, versioned JSON that says how to run a model fork-join on functions.

A plan is a list of typed ``Stage``s; each runs a run of graph nodes serially on the master, or
split across workers (spatial tiles or output channels/features). ``make_plan`` builds one from
a list of ``StageChoice``s (what ``burst.planning`` picks with the planner) or, for the forced
``split`` modes, from ``burst.candidates.forced_choices``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from enum import Enum

from burst.graph import Graph, dtype_bytes, node_inputs
from burst.halo import choose_grid, split_range
from burst.partition import _shape, sliced_weights, tile_windows

PLAN_VERSION = 1
SPLITS = ("auto", "spatial", "output", "none")  # none: the whole model on the master
TRANSPORTS = ("auto", "inline", "store")
DEFAULT_INLINE_LIMIT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit
# weights may fill half a function's memory (the worker cache budget, burst.weights.CACHE_SHARE);
# the rest is for activations and the runtime
WEIGHT_MEMORY_SHARE = 0.5


class PlanError(Exception):
    """A plan is malformed or cannot be made."""


class Split(str, Enum):
    """Where a stage runs: tiles of the output map, slices of output channels, or the master."""

    SPATIAL = "spatial"
    OUTPUT = "output"
    SERIAL = "serial"


def function_names(memory_mb: int, master_memory_mb: int | None = None) -> tuple[str, str]:
    """(master, worker) function names for a memory size, as the README documents them."""
    return (
        f"tidegate-master-{int(master_memory_mb or memory_mb)}mb",
        f"tidegate-worker-{int(memory_mb)}mb",
    )


@dataclass
class Tile:
    """One worker's share of a spatial stage: its output window and the input window it reads,
    each ``[[row0, row1], [col0, col1]]`` inclusive, in global coordinates."""

    out: list[list[int]]
    window: list[list[int]]


@dataclass
class Stage:
    index: int
    split: Split
    nodes: list[str]
    macs: int  # whole stage, at the plan's batch
    workers: int  # 0 for a serial stage
    weight_bytes: list[int]  # per worker (serial: [the master's])
    bytes_in: list[int]  # per worker
    bytes_out: list[int]
    leg_macs: list[int] = field(default_factory=list)  # per worker, halo recompute included
    input: str | None = None
    output: str | None = None
    grid: list[int] | None = None  # spatial: [rows, cols] of tiles
    tiles: list[Tile] = field(default_factory=list)
    parts: list[list[int]] = field(default_factory=list)  # output: channel ranges per worker
    cat_dim: int | None = None
    sliced_weights: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The stage as plain JSON data (only the fields its split uses)."""
        d = {
            "index": self.index,
            "split": self.split.value,
            "nodes": list(self.nodes),
            "macs": self.macs,
            "workers": self.workers,
            "weight_bytes": list(self.weight_bytes),
            "bytes_in": list(self.bytes_in),
            "bytes_out": list(self.bytes_out),
            "leg_macs": list(self.leg_macs),
        }
        if self.split is Split.SERIAL:
            return d
        d.update(input=self.input, output=self.output)
        if self.split is Split.SPATIAL:
            d.update(
                grid=list(self.grid), tiles=[{"out": t.out, "in": t.window} for t in self.tiles]
            )
        else:
            d.update(
                parts=[list(p) for p in self.parts],
                cat_dim=self.cat_dim,
                sliced_weights=list(self.sliced_weights),
            )
        return d

    @classmethod
    def from_json(cls, raw, position: int = 0) -> "Stage":
        where = f"stage {position}"
        if not isinstance(raw, dict) or raw.get("split") not in {s.value for s in Split}:
            raise PlanError(f"{where}: split must be spatial, output or serial")
        if not isinstance(raw.get("nodes"), list) or not raw["nodes"]:
            raise PlanError(f"{where}: needs a non-empty node list")
        split = Split(raw["split"])
        try:
            st = cls(
                index=int(raw["index"]),
                split=split,
                nodes=[str(n) for n in raw["nodes"]],
                macs=int(raw["macs"]),
                workers=int(raw["workers"]),
                weight_bytes=[int(b) for b in raw["weight_bytes"]],
                bytes_in=[int(b) for b in raw["bytes_in"]],
                bytes_out=[int(b) for b in raw["bytes_out"]],
                leg_macs=[int(m) for m in raw.get("leg_macs", [])],
                input=raw.get("input"),
                output=raw.get("output"),
                grid=raw.get("grid"),
                tiles=[Tile(out=t["out"], window=t["in"]) for t in raw.get("tiles", [])],
                parts=[list(p) for p in raw.get("parts", [])],
                cat_dim=raw.get("cat_dim"),
                sliced_weights=list(raw.get("sliced_weights", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"{where}: malformed ({exc!r})") from exc
        if split is Split.SPATIAL and len(st.tiles) != st.workers:
            raise PlanError(f"{where}: one tile per worker expected")
        if split is Split.OUTPUT and len(st.parts) != st.workers:
            raise PlanError(f"{where}: one part per worker expected")
        if split is not Split.SERIAL and not (st.input and st.output and st.workers >= 1):
            raise PlanError(f"{where}: a split stage needs input, output and workers")
        return st


@dataclass
class Plan:
    model: str
    batch: int
    workers: int
    split: str
    memory_mb: int
    transport: str
    inputs: list[str]  # the model's tensor names (its config), in program order
    input_shapes: list[list[int]]
    outputs: list[str]
    stages: list[Stage]
    inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES
    master_function: str = "tidegate-master-1024mb"
    worker_function: str = "tidegate-worker-1024mb"  # worker j runs "{worker_function}-{j}"
    plan_id: str = ""
    plan_version: int = PLAN_VERSION
    totals: dict = field(default_factory=dict)

    def content(self) -> dict:
        d = {
            k: getattr(self, k)
            for k in (
                "plan_version",
                "model",
                "batch",
                "workers",
                "split",
                "memory_mb",
                "transport",
                "inline_limit_bytes",
                "master_function",
                "worker_function",
                "inputs",
                "input_shapes",
                "outputs",
                "totals",
            )
        }
        d["stages"] = [s.to_json() for s in self.stages]
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
        """A plan from JSON data; keys it does not know (e.g. predictions) are ignored."""
        if not isinstance(raw, dict):
            raise PlanError("plan must be a JSON object")
        version = raw.get("plan_version")
        if version != PLAN_VERSION:
            raise PlanError(
                f"unsupported plan_version {version!r} (this build reads {PLAN_VERSION})"
            )
        try:
            fields = {
                k: raw[k]
                for k in (
                    "model",
                    "batch",
                    "workers",
                    "split",
                    "memory_mb",
                    "transport",
                    "inputs",
                    "input_shapes",
                    "outputs",
                    "stages",
                    "inline_limit_bytes",
                    "master_function",
                    "worker_function",
                    "plan_id",
                    "totals",
                )
            }
        except KeyError as exc:
            raise PlanError(f"plan is missing field {exc.args[0]!r}") from exc
        if not isinstance(fields["stages"], list) or not fields["stages"]:
            raise PlanError("plan has no stages")
        fields["stages"] = [Stage.from_json(s, i) for i, s in enumerate(fields["stages"])]
        try:
            plan = cls(**fields)
        except TypeError as exc:
            raise PlanError(f"malformed plan: {exc}") from exc
        if plan.transport not in TRANSPORTS:
            raise PlanError(f"transport must be one of {TRANSPORTS}")
        if plan.plan_id != content_hash(plan.content()):
            raise PlanError("plan_id does not match the plan's content (edited or corrupted)")
        return plan


def worker_function_name(plan: Plan, worker: int) -> str:
    """Worker ``j`` always runs in its own function, so its instances keep the weight slices of
    worker ``j`` of every stage warm (as Gillis deploys one function per partition); one generic
    worker function would hand slices to random instances and reload them."""
    return f"{plan.worker_function}-{worker}"


def content_hash(content: dict) -> str:
    blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class StageChoice:
    """One stage to build: consecutive nodes, where they run, and on how many workers."""

    split: Split
    nodes: tuple[str, ...]
    workers: int = 0
    input: str | None = None
    output: str | None = None


def _concrete(shape: list[int], batch: int) -> list[int]:
    return [batch if d == -1 else d for d in shape]


def _nbytes(graph: Graph, name: str, batch: int, shape=None) -> int:
    node_dtype = None if name in graph.inputs else graph.node(name).dtype
    shape = shape if shape is not None else _concrete(_shape(graph, name), batch)
    return math.prod(shape) * dtype_bytes(node_dtype)


def build_stage(graph: Graph, choice: StageChoice, index: int, batch: int) -> Stage:
    """The stage for one choice: tiles/parts, per-worker bytes, weights and work."""
    nodes = [graph.node(n) for n in choice.nodes]
    macs = sum(n.macs for n in nodes) * batch
    if choice.split is Split.SERIAL:
        wbytes = sum(
            graph.weights[w]["bytes"]
            for w in {w for n in nodes for w in n.weights}
            if w in graph.weights
        )
        return Stage(
            index=index,
            split=Split.SERIAL,
            nodes=list(choice.nodes),
            macs=macs,
            workers=0,
            weight_bytes=[wbytes],
            bytes_in=[],
            bytes_out=[],
            leg_macs=[macs],
        )
    st = Stage(
        index=index,
        split=choice.split,
        nodes=list(choice.nodes),
        macs=macs,
        workers=0,
        weight_bytes=[],
        bytes_in=[],
        bytes_out=[],
        input=choice.input,
        output=choice.output,
    )
    (_spatial if choice.split is Split.SPATIAL else _output)(graph, st, choice.workers, batch)
    return st


def _area(win) -> int:
    return (win[0][1] - win[0][0] + 1) * (win[1][1] - win[1][0] + 1)


def _spatial(graph: Graph, st: Stage, workers: int, batch: int) -> None:
    out_shape = _concrete(graph.node(st.output).shape, batch)
    in_shape = _concrete(_shape(graph, st.input), batch)
    gh, gw = choose_grid(workers, out_shape[2], out_shape[3])
    nodes = [graph.node(n) for n in st.nodes]
    wbytes = sum(
        graph.weights[w]["bytes"]
        for w in {w for n in nodes for w in n.weights}
        if w in graph.weights
    )
    for rows in split_range(out_shape[2], gh):
        for cols in split_range(out_shape[3], gw):
            need = tile_windows(graph, st.nodes, st.output, (rows, cols))
            st.tiles.append(
                Tile(
                    out=[list(rows), list(cols)],
                    window=[list(need[st.input][0]), list(need[st.input][1])],
                )
            )
            # a node's work scales with the share of its output map this tile computes
            st.leg_macs.append(
                batch
                * sum(
                    n.macs * _area(need[n.name]) // max(1, n.shape[2] * n.shape[3])
                    for n in nodes
                    if n.name in need
                )
            )
    st.grid, st.workers = [gh, gw], len(st.tiles)
    st.weight_bytes = [wbytes] * st.workers
    st.bytes_in = [
        _nbytes(graph, st.input, batch, in_shape[:2] + [_area(t.window), 1]) for t in st.tiles
    ]
    st.bytes_out = [
        _nbytes(graph, st.output, batch, out_shape[:2] + [_area(t.out), 1]) for t in st.tiles
    ]


def _output(graph: Graph, st: Stage, workers: int, batch: int) -> None:
    head = graph.node(st.nodes[0])
    out_shape = _concrete(graph.node(st.output).shape, batch)
    cat_dim = 1 if head.op != "aten.linear.default" else len(out_shape) - 1
    channels = out_shape[cat_dim]
    parts = split_range(channels, workers)
    sliced = {w for name in st.nodes for w in sliced_weights(graph.node(name))}
    whole = {w for name in st.nodes for w in graph.node(name).weights} - sliced
    for c0, c1 in parts:
        b = sum(
            graph.weights[w]["bytes"] * (c1 - c0 + 1) // graph.weights[w]["shape"][0]
            for w in sliced
        )
        st.weight_bytes.append(b + sum(graph.weights[w]["bytes"] for w in whole))
        st.leg_macs.append(st.macs * (c1 - c0 + 1) // channels)
    per_channel_out = _nbytes(graph, st.output, batch) // channels
    st.parts, st.cat_dim, st.workers = [list(p) for p in parts], cat_dim, len(parts)
    st.sliced_weights = sorted(sliced)
    st.bytes_in = [_nbytes(graph, st.input, batch)] * st.workers
    st.bytes_out = [per_channel_out * (c1 - c0 + 1) for c0, c1 in parts]


def make_plan(
    graph: Graph,
    *,
    workers: int,
    split: str = "auto",
    memory_mb: int = 1024,
    transport: str = "auto",
    batch: int = 1,
    inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES,
    choices: list[StageChoice] | None = None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    master_memory_mb: int | None = None,
) -> Plan:
    """Partition ``graph`` into fork-join stages for up to ``workers`` functions per stage.

    ``choices`` (from the planner) fix the stages; without them ``split`` picks them: "none" is
    the whole model on the master, "spatial"/"output" split everything that can be split that
    way, "auto" asks the planner with the bundled reference profile (latency-optimal).
    """
    _check_args(workers, split, transport, batch, memory_mb)
    if choices is None:
        if split == "auto":
            from burst.planning import PlanRequest, choose_stages

            choices = choose_stages(
                graph,
                PlanRequest(
                    workers=workers,
                    batch=batch,
                    memory_mb=memory_mb,
                    master_memory_mb=master_memory_mb,
                    transport=transport,
                ),
            )
        else:
            from burst.candidates import forced_choices

            choices = forced_choices(graph, split, workers)
    stages = [build_stage(graph, c, i, batch) for i, c in enumerate(_merge_serial(choices))]
    master_fn, worker_fn = function_names(memory_mb, master_memory_mb)
    plan = Plan(
        model=graph.model,
        batch=batch,
        workers=workers,
        split=split,
        memory_mb=int(memory_mb),
        transport=transport,
        inputs=list(input_names or graph.inputs),
        input_shapes=[_concrete(s, batch) for s in graph.input_shapes],
        outputs=list(output_names or graph.outputs),
        stages=stages,
        inline_limit_bytes=int(inline_limit_bytes),
        master_function=master_fn,
        worker_function=worker_fn,
    )
    plan.totals = _totals(graph, stages, memory_mb, master_memory_mb or memory_mb)
    plan.plan_id = content_hash(plan.content())
    return plan


def _check_args(workers, split, transport, batch, memory_mb) -> None:
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


def _merge_serial(choices: list[StageChoice]) -> list[StageChoice]:
    """Consecutive serial choices are one stage (the master runs them back to back)."""
    out: list[StageChoice] = []
    for c in choices:
        if out and out[-1].split is Split.SERIAL and c.split is Split.SERIAL:
            out[-1] = StageChoice(Split.SERIAL, out[-1].nodes + tuple(c.nodes))
        else:
            out.append(c)
    return out


def _totals(graph: Graph, stages: list[Stage], memory_mb: int, master_memory_mb: int) -> dict:
    """Sizes a person checks a plan by. The master computes leg 0 of each split stage itself
    (``burst.forkjoin``), so it holds those slices too; worker j holds leg j of every stage."""
    split_stages = [s for s in stages if s.split is not Split.SERIAL]
    remote = [s for s in split_stages if s.workers > 1]
    per_worker = [
        sum(s.weight_bytes[j] for s in remote if j < s.workers)
        for j in range(1, max([s.workers for s in remote] or [1]))
    ]
    totals = {
        "stages": len(stages),
        "split_stages": len(split_stages),
        "invocations": sum(s.workers - 1 for s in split_stages),
        "bytes_to_workers": sum(sum(s.bytes_in[1:]) for s in split_stages),
        "bytes_from_workers": sum(sum(s.bytes_out[1:]) for s in split_stages),
        "max_worker_weight_bytes": max(per_worker or [0]),
        "master_weight_bytes": sum(s.weight_bytes[0] for s in stages),
        "model_weight_bytes": sum(w["bytes"] for w in graph.weights.values()),
    }
    totals["fits_memory"] = (
        totals["max_worker_weight_bytes"] <= memory_mb * (1 << 20) * WEIGHT_MEMORY_SHARE
        and totals["master_weight_bytes"] <= master_memory_mb * (1 << 20) * WEIGHT_MEMORY_SHARE
    )
    return totals


def stage_inputs(graph: Graph, stage: Stage) -> list[str]:
    """Values a stage reads that it does not produce."""
    inside = set(stage.nodes)
    out: list[str] = []
    for name in stage.nodes:
        for r in node_inputs(graph.node(name)):
            if r not in inside and r not in out:
                out.append(r)
    return out
