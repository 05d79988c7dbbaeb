"""The master function's activations: what a plan's master holds at once beside its weights.

The planner sizes functions by their weights (``burst.plan.weight_budget_bytes``). A model with
big feature maps and few weights fitted that, then every request's master was killed: an
Inception block at 512x512 (0.12 MB of weights) in 512 MB functions, "memory used 515 MB
exceeded the function's memory size 512 MB", a 503 after a paid invocation, at any worker
count. Its tensors live at once peak at ~200 MB beside the ~320 MB runtime.

The values live at once are not all the master holds: ops' temporaries, layout copies and the
allocator's slack come on top. Since the master drops values after their last reader
(``release_points``; before, it kept every value to the end of the request), a UNet (c=32,
100x140, batch 8: 55 MB live, 0.9 MB of weights) measured 374-415 MB in 512 MB functions over
~290 MB of runtime: about 2x its live set, which the check leaves room for
(``TEMPORARIES_FACTOR``). Planned at 1x (376 MB) it was sized into 384 MB functions and killed
at 388-390 MB on every request. The functions' allocator settings
(``burst.local_functions.ALLOCATOR_ENV``) keep freed memory for the next request, which can
hold more: MobileNetV2 at batch 8 (73.5 MB live) 750-814 MB warm.
"""

from __future__ import annotations

import math

from burst.graph import Graph, node_inputs
from burst.plan import FUNCTION_RUNTIME_MB, _nbytes
from burst.plan_schema import Plan, PlanError, Split

MIB = 1 << 20
# what the master holds per byte of live values at its peak (see above: measured ~2x)
TEMPORARIES_FACTOR = 2.0


def master_peak_bytes(graph: Graph, plan: Plan) -> int:
    """Bytes of tensors the master holds at once, walking the graph in order: every value from
    the node that makes it to its last reader (a graph output to the end). A split stage's
    inner values count at the master's share (its leg); its output is stitched whole."""
    share: dict[str, int] = {}
    for st in plan.stages:
        if st.split is not Split.SERIAL:
            for name in st.nodes:
                share[name] = max(1, st.workers)
        for name in (st.output,) if st.output else ():
            share.pop(name, None)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    end = len(graph.nodes)
    last = {name: -1 for name in graph.inputs}
    for n in graph.nodes:
        last[n.name] = order[n.name]
        for r in node_inputs(n):
            last[r] = max(last.get(r, -1), order[n.name])
    for name in graph.outputs:
        last[name] = end
    born = {name: -1 for name in graph.inputs} | order
    sizes = {}
    for name in last:
        if name in graph.inputs or graph.node(name).shape is not None:
            sizes[name] = _nbytes(graph, name, plan.batch) // share.get(name, 1)
    events = [0] * (end + 3)  # +size where a value is made, -size after its last reader
    for name, size in sizes.items():
        events[born[name] + 1] += size
        events[last[name] + 2] -= size
    peak = live = 0
    for delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def release_points(graph: Graph, plan: Plan) -> tuple[dict[str, list[str]], dict[int, list[str]]]:
    """When the master may drop each value: (node name -> values a serial stage's node reads
    last, stage index -> values a split stage reads last). Graph outputs are kept.

    It kept every value to the end of the request: the sum of all activations, not the live
    set ``master_peak_bytes`` counts (ResNet-50 at batch 8 in one function: 1.8 GB against
    74 MB live, every request killed in 1024 MB functions; a UNet at batch 8, 559 MB warm)."""
    last: dict[str, tuple[bool, str | int]] = {}  # value -> (read by a node?, node or stage)
    for st in plan.stages:
        if st.split == Split.SERIAL:  # (a str Enum: a plan read back from JSON holds str)
            for name in st.nodes:
                for r in node_inputs(graph.node(name)):
                    last[r] = (True, name)
        else:
            for r in [st.input, *(r for n in st.nodes for r in node_inputs(graph.node(n)))]:
                last[r] = (False, st.index)
    after_node: dict[str, list[str]] = {}
    after_stage: dict[int, list[str]] = {}
    for value, (by_node, where) in last.items():
        if value in graph.outputs:
            continue
        if by_node:
            after_node.setdefault(str(where), []).append(value)
        else:
            after_stage.setdefault(int(where), []).append(value)
    return after_node, after_stage


def check_master_memory(graph: Graph, plan: Plan, master_memory_mb: int) -> None:
    """PlanError, saying what size would do, if the master's runtime, weights and activations
    at their peak pass its memory."""
    weights = plan.totals.get("master_weight_bytes", 0)
    peak = master_peak_bytes(graph, plan)
    need_mb = FUNCTION_RUNTIME_MB + (weights + TEMPORARIES_FACTOR * peak) / MIB
    if need_mb <= master_memory_mb:
        return
    raise PlanError(
        f"no plan of {graph.model} fits: its master holds {peak / MIB:.0f} MB of tensors at "
        f"once at batch {plan.batch}, about as much again in temporaries, and "
        f"{weights / MIB:.0f} MB of weights beside the "
        f"function runtime's ~{FUNCTION_RUNTIME_MB} MB, past a {master_memory_mb} MB function; "
        f"it needs functions of more than {math.ceil(need_mb)} MB (burst.memory_mb, or --memory-mb)"
    )
