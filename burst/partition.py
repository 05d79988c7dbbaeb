"""Which nodes can be split how, and coarse layer groups (communicate only at group edges).

A *block* is the run of nodes between two points where exactly one value is live (a residual
block, a conv, a relu). Groups are runs of blocks that share one split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from burst.graph import Graph, Node, bind_args, node_inputs, weights_of
from burst.halo import hull, input_window

CONV_OPS = {"aten.conv2d.default", "aten.convolution.default"}
MAX_OPS = {"aten.max_pool2d.default", "aten.max_pool2d_with_indices.default"}
AVG_OPS = {"aten.avg_pool2d.default"}
ADAPTIVE_OPS = {"aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default"}
BN_OPS = {"aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default"}
LINEAR_OPS = {"aten.linear.default"}
# ops that act on each element (or channel) alone: same window in as out
UNARY_OPS = {
    f"aten.{n}.default"
    for n in (
        "relu",
        "relu_",
        "hardtanh",
        "hardtanh_",
        "silu",
        "silu_",
        "sigmoid",
        "sigmoid_",
        "gelu",
        "hardswish",
        "hardswish_",
        "hardsigmoid",
        "hardsigmoid_",
        "leaky_relu",
        "leaky_relu_",
        "elu",
        "elu_",
        "tanh",
        "clone",
        "contiguous",
        "dropout",
        "dropout_",
        "alias",
        "detach",
        "relu6",
        "identity",
        "mish",
        "softplus",
    )
} | {"aten.feature_dropout.default", "aten.alpha_dropout.default"}
BINARY_OPS = {
    f"aten.{n}"
    for n in (
        "add.Tensor",
        "add_.Tensor",
        "mul.Tensor",
        "mul_.Tensor",
        "sub.Tensor",
        "div.Tensor",
        "add.Scalar",
        "mul.Scalar",
        "maximum.default",
        "minimum.default",
    )
}
CAT_OPS = {"aten.cat.default"}


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = list(v)
    return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))


def _is4d(graph: Graph, name: str) -> bool:
    return _image(_shape(graph, name))


def _image(shape) -> bool:
    """[B, C, H, W]: 4-D with the batch first. A 4-D value with the batch elsewhere (attention's
    [3, T, B, E] in nn.MultiheadAttention) is no image: tiled on its "H" (the batch), its
    stitch failed on every request ("tensor with negative dimension -1: [3, 64, -1, 32]")."""
    return shape is not None and len(shape) == 4 and all(d > 0 for d in shape[1:])


def _shape(graph: Graph, name: str):
    if name in graph.inputs:
        return graph.input_shapes[graph.inputs.index(name)]
    return graph.node(name).shape


def _conv_spec(graph: Graph, b: dict) -> dict | None:
    if b.get("transposed") or isinstance(b.get("padding"), str):
        return None
    w = b["weight"]
    kshape = graph.weights[w["w"]]["shape"] if isinstance(w, dict) and "w" in w else None
    if kshape is None or len(kshape) != 4:
        return None
    return {
        "kind": "conv",
        "k": (kshape[2], kshape[3]),
        "s": _pair(b["stride"]),
        "p": _pair(b["padding"]),
        "d": _pair(b["dilation"]),
    }


def _adaptive_spec(graph: Graph, node: Node, ref) -> dict | None:
    in_h, in_w = _shape(graph, ref)[2:]
    oh, ow = node.shape[2:]
    if in_h % oh or in_w % ow or (oh == 1 and ow == 1):
        return None  # uneven windows overlap; a global pool is one tile anyway
    k = (in_h // oh, in_w // ow)
    return {
        "kind": "avg",
        "k": k,
        "s": k,
        "p": (0, 0),
        "d": (1, 1),
        "ceil": False,
        "cip": True,
        "div": None,
    }


def _pool_spec(op: str, b: dict) -> dict:
    k = _pair(b["kernel_size"])
    s = _pair(b["stride"]) if b.get("stride") not in (None, []) else k
    spec = {"k": k, "s": s, "p": _pair(b["padding"]), "ceil": bool(b["ceil_mode"])}
    if op in MAX_OPS:
        return {"kind": "max", "d": _pair(b["dilation"]), **spec}
    return {
        "kind": "avg",
        "d": (1, 1),
        "cip": bool(b["count_include_pad"]),
        "div": b.get("divisor_override"),
        **spec,
    }


def window_spec(graph: Graph, node: Node) -> dict | None:
    """How a node maps output windows to input windows, or None if it cannot be tiled."""
    if not _image(node.shape):
        return None
    op = node.op
    ins = node_inputs(node)
    if op in CONV_OPS | MAX_OPS | AVG_OPS | ADAPTIVE_OPS:
        b = bind_args(node)
        x = b.get("input", b.get("self"))
        if not (isinstance(x, dict) and "ref" in x) or len(ins) != 1 or not _is4d(graph, ins[0]):
            return None
        if op in MAX_OPS and node.op.endswith("with_indices.default") and node.item != 0:
            return None
        if op in CONV_OPS:
            return _conv_spec(graph, b)
        if op in ADAPTIVE_OPS:
            return _adaptive_spec(graph, node, ins[0])
        return _pool_spec(op, b)
    if op in BN_OPS:
        b = bind_args(node)
        if b.get("training") or len(ins) != 1:
            return None
    elif op in CAT_OPS:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim not in (1, -3):
            return None
    elif op not in UNARY_OPS | BINARY_OPS:
        return None
    if op not in BN_OPS and any(len(graph.weights[w]["shape"]) > 4 for w in _weight_operands(node)):
        return None
    hw = node.shape[2:]
    for r in ins:
        s = _shape(graph, r)
        if not _image(s) or list(s[2:]) != list(hw):
            return None
    return {"kind": "point"}


def _weight_operands(node: Node) -> list[str]:
    return [w for a in (*node.args, *node.kwargs.values()) for w in weights_of(a)]


def space_varying_weights(graph: Graph, node: Node) -> list[str]:
    """A point op's weights broadcast against its [B, C, H, W] map that are not constant along
    H and W (a positional embedding [1, C, H, W], a per-column [W] scale): a tile reads its
    window of each (it was given all of one: "size of tensor a (13) must match the size of
    tensor b (20)"). Batch norm's per-channel weights are not broadcast so."""
    if node.op in BN_OPS:
        return []
    out = []
    for w in _weight_operands(node):
        shape = [1] * (4 - len(graph.weights[w]["shape"])) + list(graph.weights[w]["shape"])
        if any(d != 1 for d in shape[-2:]):
            out.append(w)
    return out


def output_head(graph: Graph, node: Node) -> bool:
    """A conv (groups=1) or linear whose output channels/features can be split."""
    if node.op in LINEAR_OPS:
        w = node.args[1] if len(node.args) > 1 else None
        return isinstance(w, dict) and "w" in w and len(node_inputs(node)) == 1
    if node.op in CONV_OPS:
        b = bind_args(node)
        w = b["weight"]
        return (
            not b.get("transposed")
            and int(b.get("groups") or 1) == 1
            and isinstance(w, dict)
            and "w" in w
            and len(node_inputs(node)) == 1
        )
    return False


def per_channel(graph: Graph, node: Node) -> bool:
    """An op that keeps channels independent (may follow an output-split head)."""
    if len(node_inputs(node)) != 1:
        return False
    if node.op in UNARY_OPS:
        return True
    if node.op in BN_OPS:
        return not bind_args(node).get("training")
    return False


def sliced_weights(node: Node) -> list[str]:
    """Weights of an output-split node that are cut along dim 0 (the rest are whole)."""
    idx = {
        "aten.linear.default": (1, 2),
        "aten.conv2d.default": (1, 2),
        "aten.convolution.default": (1, 2),
    }.get(node.op, (1, 2, 3, 4) if node.op in BN_OPS else ())
    out = []
    for i in idx:
        if i < len(node.args) and isinstance(node.args[i], dict) and "w" in node.args[i]:
            out.append(node.args[i]["w"])
    return out


@dataclass
class Block:
    nodes: list[str]
    inputs: list[str]
    output: str
    kind: str = "serial"  # "spatial" | "head" | "channel" | "serial"
    macs: int = 0
    weight_bytes: int = 0
    extra: dict = field(default_factory=dict)


# ops that read only a tensor's metadata (the dynamic batch size): they do not keep it alive
SIZE_OPS = {"aten.sym_size.int", "aten.sym_numel.default", "aten.sym_stride.int"}


def blocks(graph: Graph) -> list[Block]:
    """Cut the graph where a single value is live."""
    last_use: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        if n.op in SIZE_OPS:
            continue
        for r in node_inputs(n):
            last_use[r] = i
    for o in graph.outputs:
        last_use[o] = len(graph.nodes)
    live = {x for x in graph.inputs if x in last_use}
    out: list[Block] = []
    cur: list[str] = []
    for i, n in enumerate(graph.nodes):
        if n.op in SIZE_OPS and not any(r in cur for r in node_inputs(n)):
            out.append(_block(graph, [n.name]))  # its input is already computed
            continue
        cur.append(n.name)
        if n.name in last_use and n.op not in SIZE_OPS:
            live.add(n.name)
        live = {v for v in live if last_use.get(v, -1) > i}
        if live == {n.name}:
            out.append(_block(graph, cur))
            cur = []
    if cur:
        out.append(_block(graph, cur))
    return out


def _block(graph: Graph, names: list[str]) -> Block:
    inside = set(names)
    ins: list[str] = []
    for name in names:
        for r in node_inputs(graph.node(name)):
            if r not in inside and r not in ins:
                ins.append(r)
    nodes = [graph.node(n) for n in names]
    b = Block(
        nodes=names,
        inputs=ins,
        output=names[-1],
        macs=sum(n.macs for n in nodes),
        weight_bytes=sum(n.weight_bytes for n in nodes),
    )
    if len(ins) == 1:
        if all(window_spec(graph, n) is not None for n in nodes):
            b.kind = "spatial"
        if len(nodes) == 1 and output_head(graph, nodes[0]):
            b.kind = "head" if b.kind != "spatial" else "spatial"
            b.extra["head"] = True
        elif len(nodes) == 1 and per_channel(graph, nodes[0]):
            b.extra["channel"] = True
    return b


def tile_windows(
    graph: Graph, names: list[str], out_name: str, tile: tuple[tuple[int, int], tuple[int, int]]
) -> dict:
    """Global (rows, cols) each value must hold so ``out_name`` covers ``tile``.

    Walks the group backwards; a value read by several nodes (a residual branch, a
    concatenation) gets the hull of what they need.
    """
    need: dict[str, tuple] = {out_name: tile}
    for name in reversed(names):
        rows_cols = need.get(name)
        if rows_cols is None:
            continue
        node = graph.node(name)
        spec = window_spec(graph, node)
        for r in node_inputs(node):
            if spec["kind"] == "point":
                want = rows_cols
            else:
                h, w = _shape(graph, r)[2:]
                want = tuple(
                    input_window(
                        rows_cols[a],
                        spec["k"][a],
                        spec["s"][a],
                        spec["p"][a],
                        spec["d"][a],
                        (h, w)[a],
                    )[0]
                    for a in (0, 1)
                )
            old = need.get(r)
            need[r] = want if old is None else (hull(old[0], want[0]), hull(old[1], want[1]))
    return need
