"""What the performance model prices a graph node by: its op, MACs, bytes of activations and of
weights, at a batch (``policies.perf_types.NodeWork``)."""

from __future__ import annotations

import math

from burst.graph import Graph, batch_size, dtype_bytes, node_inputs
from burst.graph_macs import RECURRENT_OPS, recurrent_work
from policies.perf_types import NodeWork
from vmpool.delay_op import wait_ms


def node_works(graph: Graph, batch: int) -> list[NodeWork]:
    """Each node's op and work at ``batch``, for the performance model: MACs, the bytes of
    activations it reads and writes, and of weights it reads (the compute fit prices
    memory-bound nodes by bytes: policies/compute_fit.py)."""
    shapes = {n.name: (n.shape, n.dtype) for n in graph.nodes}
    shapes.update({i: (s, "float32") for i, s in zip(graph.inputs, graph.input_shapes)})

    def nbytes(name: str) -> int:
        shape, dtype = shapes.get(name, (None, None))
        return math.prod(batch_size(d, batch) for d in shape) * dtype_bytes(dtype) if shape else 0

    works = []
    for n in graph.nodes:
        refs = node_inputs(n)
        act = nbytes(n.name) + sum(nbytes(r) for r in refs)
        in_shapes = [shapes.get(r, (None, None))[0] for r in refs]
        macs = n.macs * batch * _inner_dim(n.op, in_shapes)
        steps, weight_bytes, reread = 0, n.weight_bytes, 0
        if n.op in RECURRENT_OPS:  # its steps run one after another, each reading weights
            r = recurrent_work(n.args, in_shapes[0] if refs else None, graph.weights, batch)
            steps, macs, weight_bytes, reread = r.steps, r.macs, r.weight_bytes, r.reread_bytes
            act += r.gate_bytes
        works.append(
            NodeWork(
                n.name, n.op, macs, wait_ms(n.op, n.args, batch), act, weight_bytes, steps, reread
            )
        )
    return works


def _inner_dim(op: str, shapes: list) -> int:
    """What a matmul's MACs per output element are (the graph counts one per output element
    for ops with no weight): the reduced dim; attention's two products over the keys."""
    if op in ("aten.matmul.default", "aten.bmm.default", "aten.mm.default") and shapes[:1]:
        return max(1, abs((shapes[0] or [1])[-1]))
    if "scaled_dot_product_attention" in op and len(shapes) > 1 and shapes[1]:
        return 2 * max(1, abs(shapes[1][-2] if len(shapes[1]) > 1 else 1))
    return 1
