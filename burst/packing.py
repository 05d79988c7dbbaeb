"""What packing a stage's convs weighs, per leg, and the plain alternatives the planner weighs
where a function's memory is tight (``policies.packing`` holds the rule both sides share).

A packed conv keeps a second copy of the weight its leg holds (``burst.packed_conv``): the
whole weight on every leg of a serial or spatial stage, the leg's slice of an output split.
"""

from __future__ import annotations

from dataclasses import replace

from burst.graph import Graph
from burst.partition import CONV_OPS
from burst.plan import Split, Stage
from policies.packing import held_bytes
from policies.perf import Candidate


def conv_weight_bytes(graph: Graph, nodes) -> int:
    """Bytes of the conv weights (not biases: they are not packed) of ``nodes``."""
    total = 0
    for name in nodes:
        node = graph.node(name)
        arg = node.args[1] if node.op in CONV_OPS and len(node.args) > 1 else None
        if isinstance(arg, dict) and arg.get("w") in graph.weights:
            total += int(graph.weights[arg["w"]].get("bytes", 0))
    return total


def leg_pack_bytes(graph: Graph, st: Stage) -> list[int]:
    """Per leg (serial: the master), the bytes of its convs' packed copies."""
    full = conv_weight_bytes(graph, st.nodes)
    if st.split is not Split.OUTPUT or not full:
        return [full] * max(len(st.weight_bytes), 1)
    whole = max(sum(st.weight_bytes), 1)  # an output split slices every weight by channel
    return [-(-full * b // whole) for b in st.weight_bytes]


def with_pack_bytes(graph: Graph, st: Stage, c: Candidate) -> Candidate:
    """``c`` (the candidate of ``st``) with its packed copies' bytes: leg 0's, which the
    master holds, and leg 1's, the largest remote leg."""
    legs = leg_pack_bytes(graph, st)
    remote = legs[1] if st.split is not Split.SERIAL and len(legs) > 1 else 0
    return replace(c, master_pack_bytes=legs[0], worker_pack_bytes=remote)


def packing_choices(candidates: list[Candidate], limits, plain_measured: bool) -> list[Candidate]:
    """The candidates the search weighs for packing under ``limits`` (``policies.planner.
    Limits``): as they are where every function has room for all the packed copies (the
    whole model's weights and copies fit both budgets: a plain stage would be slower and its
    bytes bind nothing); else each candidate with convs also left plain, so the search trades
    memory for packing. Without plain conv times (``plain_measured``: a profile from before
    packing was a choice) the planner cannot price that trade: the copies are not counted
    and the runtime packs where its cache has room, as such plans always did."""
    if not plain_measured:
        return [replace(c, master_pack_bytes=0, worker_pack_bytes=0) for c in candidates]
    serial = [c for c in candidates if c.split == "serial"]
    whole = sum(held_bytes(c.weight_bytes, c.master_pack_bytes, True) for c in serial)
    if whole <= min(limits.master_weight_bytes, limits.worker_weight_bytes):
        return candidates
    plain = [
        replace(c, packed=False) for c in candidates if c.master_pack_bytes or c.worker_pack_bytes
    ]
    return candidates + plain
