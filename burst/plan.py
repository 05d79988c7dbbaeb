"""Partition plans: plain, versioned JSON that says how to run a model fork-join on functions.

A plan is a list of typed ``Stage``s; each runs a run of graph nodes serially on the master, or
split across workers (spatial tiles or output channels/features). ``make_plan`` builds one from
a list of ``StageChoice``s (what ``burst.planning`` picks with the planner) or, for the forced
``split`` modes, from ``burst.candidates.forced_choices``. The typed plan and its JSON are in
``burst.plan_schema`` (re-exported here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from burst.graph import Graph, dtype_bytes, node_inputs
from burst.halo import choose_grid, split_range
from burst.partition import _shape, sliced_weights, tile_windows

# the typed plan and its JSON live in burst.plan_schema; re-exported: callers import them here
from burst.plan_schema import (
    DEFAULT_INLINE_LIMIT_BYTES,
    PLAN_VERSION,
    TRANSPORTS,
    Plan,
    PlanError,
    Split,
    Stage,
    Tile,
    content_hash,
    function_names,
    held_functions,
    worker_function_name,
)

__all__ = [
    "DEFAULT_INLINE_LIMIT_BYTES",
    "PLAN_VERSION",
    "SPLITS",
    "TRANSPORTS",
    "WEIGHT_MEMORY_SHARE",
    "weight_budget_bytes",
    "Plan",
    "PlanError",
    "Split",
    "Stage",
    "StageChoice",
    "Tile",
    "build_stage",
    "lead_split",
    "content_hash",
    "function_names",
    "make_plan",
    "stage_inputs",
    "worker_function_name",
]

SPLITS = ("auto", "spatial", "output", "none")  # none: the whole model on the master
# weights may fill half a function's memory at most; the rest is for activations and the runtime
WEIGHT_MEMORY_SHARE = 0.5
# A function process with torch loaded uses 230-320 MB before any weight (by host: its libraries
# and allocator), and a slice is read whole before its tensors view it: measured on the local
# runtime, a 512 MB master given 201 MB of VGG-16 weights peaked at 522 MB and was killed, and
# given 122 MB it peaked at 442 MB here and past 514 MB on another host while each tensor was
# still loaded as a copy beside its blob (burst.weights.loads_tensors now makes none). The load
# factor is the headroom for a store that decrypts (ciphertext and plaintext at once).
FUNCTION_RUNTIME_MB = 320
WEIGHT_LOAD_PEAK = 1.5


def weight_budget_bytes(memory_mb: int) -> int:
    """Weight bytes one function of ``memory_mb`` may hold: what the runtime leaves, over the
    loading peak, and never more than WEIGHT_MEMORY_SHARE of the function. A function's weight
    cache (burst.weights.LruCache) holds no more either."""
    left = max(0.0, memory_mb - FUNCTION_RUNTIME_MB) / WEIGHT_LOAD_PEAK
    return int(min(left, memory_mb * WEIGHT_MEMORY_SHARE) * (1 << 20))


@dataclass(frozen=True)
class StageChoice:
    """One stage to build: consecutive nodes, where they run, and on how many workers."""

    split: Split
    nodes: tuple[str, ...]
    workers: int = 0
    input: str | None = None
    output: str | None = None
    transport: str | None = None  # the planner's per-stage choice (split stages)
    # rows (spatial, one column of tiles) or channels (output) leg 0 gets beyond an even
    # split: the master computes leg 0 with no invocation or transfer, so it can take more
    lead: int = 0
    packed: bool = True  # convs on packed weights (``Stage.packed``)


def lead_split(size: int, parts: int, lead: int = 0) -> list[tuple[int, int]]:
    """``split_range`` with ``lead`` more units in the first part, taken from the others
    (which stay near-equal); ``lead`` 0 is exactly ``split_range``."""
    if lead <= 0:
        return split_range(size, parts)
    parts = max(1, min(parts, size))
    first = min(-(-size // parts) + lead, size - (parts - 1))
    rest = split_range(size - first, parts - 1) if parts > 1 else []
    return [(0, first - 1)] + [(first + a, first + b) for a, b in rest]


def _concrete(shape: list[int], batch: int) -> list[int]:
    return [-d * batch if d < 0 else d for d in shape]  # -k: k times the batch (burst.graph)


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
            packed=choice.packed,
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
        transport=choice.transport,
        packed=choice.packed,
    )
    fill = _spatial if choice.split is Split.SPATIAL else _output
    fill(graph, st, choice.workers, batch, choice.lead)
    return st


def _area(win) -> int:
    return (win[0][1] - win[0][0] + 1) * (win[1][1] - win[1][0] + 1)


def _spatial(graph: Graph, st: Stage, workers: int, batch: int, lead: int = 0) -> None:
    out_shape = _concrete(graph.node(st.output).shape, batch)
    in_shape = _concrete(_shape(graph, st.input), batch)
    gh, gw = choose_grid(workers, out_shape[2], out_shape[3])
    nodes = [graph.node(n) for n in st.nodes]
    wbytes = sum(
        graph.weights[w]["bytes"]
        for w in {w for n in nodes for w in n.weights}
        if w in graph.weights
    )
    if lead and gw != 1:
        raise PlanError(f"a lead for leg 0 needs one column of tiles, got a {gh}x{gw} grid")
    for rows in lead_split(out_shape[2], gh, lead):
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


def _output(graph: Graph, st: Stage, workers: int, batch: int, lead: int = 0) -> None:
    head = graph.node(st.nodes[0])
    out_shape = _concrete(graph.node(st.output).shape, batch)
    cat_dim = 1 if head.op != "aten.linear.default" else len(out_shape) - 1
    channels = out_shape[cat_dim]
    parts = lead_split(channels, workers, lead)
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
    way, "auto" asks the planner with the bundled reference profile (latency-optimal). The
    plan's ``workers`` is its widest stage's; with no split stage it is the "none" plan (1
    worker, one plan_id) however it was asked for."""
    check_args(workers, split, transport, batch, memory_mb)
    if choices is None:
        from burst.planning import PlanRequest, default_choices

        request = PlanRequest(
            workers=workers,
            batch=batch,
            memory_mb=memory_mb,
            master_memory_mb=master_memory_mb,
            transport=transport,
            split=split,
        )
        choices = default_choices(graph, request)
    stages = [build_stage(graph, c, i, batch) for i, c in enumerate(_merge_serial(choices))]
    serial = all(s.split is Split.SERIAL for s in stages)  # the "none" plan: one id, one copy
    master_fn, worker_fn = function_names(memory_mb, master_memory_mb)
    plan = Plan(
        model=graph.model,
        batch=batch,
        workers=held_functions(stages),
        split="none" if serial else split,
        memory_mb=int(memory_mb),
        transport=transport,
        inputs=list(input_names or graph.inputs),
        input_shapes=[_concrete(s, batch) for s in graph.input_shapes],
        outputs=list(output_names or graph.outputs),
        stages=stages,
        inline_limit_bytes=int(inline_limit_bytes),
        master_function=master_fn,
        worker_function=worker_fn,
        weights_digest=graph.weights_digest,
    )
    plan.totals = _totals(graph, stages, memory_mb, master_memory_mb or memory_mb)
    plan.plan_id = content_hash(plan.content())
    return plan


def check_args(workers, split, transport, batch, memory_mb) -> None:
    """A plan's arguments, each checked on its own (PlanError naming the bad one)."""
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
    """Consecutive serial choices, packed alike, are one stage (the master runs them back to
    back)."""
    out: list[StageChoice] = []
    for c in choices:
        if (
            out
            and out[-1].split is Split.SERIAL
            and c.split is Split.SERIAL
            and out[-1].packed == c.packed
        ):
            out[-1] = StageChoice(Split.SERIAL, out[-1].nodes + tuple(c.nodes), packed=c.packed)
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
    totals["fits_memory"] = totals["max_worker_weight_bytes"] <= weight_budget_bytes(
        memory_mb
    ) and totals["master_weight_bytes"] <= weight_budget_bytes(master_memory_mb)
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
