"""The graph IR's types and how to run it: ``Graph`` of ``Node``s, plain JSON-serialisable data.

A node's args refer to other nodes as ``{"ref": name}`` and to weights as ``{"w": fqn}``;
``decode_arg`` turns them back into tensors and ``run_node`` calls the node's ATen op overload.
``burst.graph`` builds the IR from an exported program.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, field

import torch

_DTYPE_BYTES = {
    "float32": 4,
    "float64": 8,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


# the python int arithmetic an exported program may do on symbolic sizes
SYM_OPS = frozenset({"add", "sub", "mul", "floordiv", "mod", "neg", "truediv", "pow"})


class GraphError(Exception):
    """The exported program cannot be represented or run."""


@dataclass
class Node:
    name: str
    op: str
    args: list
    kwargs: dict
    shape: list[int] | None = None  # -k for k times the batch (-1: it); None: not a tensor
    dtype: str | None = None
    item: int | None = None  # output is op(...)[item]
    macs: int = 0  # per sample
    weight_bytes: int = 0
    weights: list[str] = field(default_factory=list)


@dataclass
class Graph:
    model: str
    inputs: list[str]
    input_shapes: list[list[int]]
    outputs: list[str]
    nodes: list[Node]
    weights: dict[str, dict]  # fqn -> {"shape", "dtype", "bytes"}
    # what the weights hold (``burst.graph.weights_digest``): a plan of a model exported again
    # with new weights is a new plan, so its store entries and functions' caches are new too
    weights_digest: str = ""

    def node(self, name: str) -> Node:
        return self._index()[name]

    def _index(self) -> dict[str, Node]:
        idx = getattr(self, "_idx", None)
        if idx is None or len(idx) != len(self.nodes):
            idx = {n.name: n for n in self.nodes}
            object.__setattr__(self, "_idx", idx)
        return idx

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "inputs": self.inputs,
            "input_shapes": self.input_shapes,
            "outputs": self.outputs,
            "nodes": [asdict(n) for n in self.nodes],
            "weights": self.weights,
            "weights_digest": self.weights_digest,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> "Graph":
        try:
            return cls(
                model=raw["model"],
                inputs=list(raw["inputs"]),
                input_shapes=[list(s) for s in raw["input_shapes"]],
                outputs=list(raw["outputs"]),
                nodes=[Node(**n) for n in raw["nodes"]],
                weights=dict(raw["weights"]),
                weights_digest=str(raw.get("weights_digest", "")),
            )
        except (KeyError, TypeError) as exc:
            raise GraphError(f"malformed graph IR: {exc}") from exc


def decode_arg(arg, env: dict, weights: dict):
    """Inverse of the encoding: refs from ``env``, weights from ``weights``."""
    if isinstance(arg, list):
        return [decode_arg(a, env, weights) for a in arg]
    if isinstance(arg, dict):
        if "ref" in arg:
            return env[arg["ref"]]
        if "w" in arg:
            return weights[arg["w"]]
        if "float" in arg:
            return float(arg["float"])
        if "dtype" in arg:
            return getattr(torch, arg["dtype"])
        if "device" in arg:
            return torch.device("cpu")
        if "memory_format" in arg:
            return getattr(torch, arg["memory_format"])
        if "layout" in arg:
            return getattr(torch, arg["layout"])
    return arg


def refs_of(arg) -> list[str]:
    """Names of the nodes an encoded argument refers to."""
    if isinstance(arg, list):
        return [r for a in arg for r in refs_of(a)]
    if isinstance(arg, dict) and "ref" in arg:
        return [arg["ref"]]
    return []


def node_inputs(node: Node) -> list[str]:
    out: list[str] = []
    for a in list(node.args) + list(node.kwargs.values()):
        for r in refs_of(a):
            if r not in out:
                out.append(r)
    return out


def weights_of(arg) -> list[str]:
    if isinstance(arg, list):
        return [r for a in arg for r in weights_of(a)]
    if isinstance(arg, dict) and "w" in arg:
        return [arg["w"]]
    return []


_OP_CACHE: dict[str, object] = {}


def resolve_op(name: str):
    """The callable for an op name: ``aten.conv2d.default`` -> ``torch.ops.aten.conv2d.default``."""
    fn = _OP_CACHE.get(name)
    if fn is not None:
        return fn
    if name == "getitem":
        fn = operator.getitem
    elif name.startswith("operator.") and name.removeprefix("operator.") in SYM_OPS:
        fn = getattr(operator, name.removeprefix("operator."))
    else:
        try:
            ns, op, overload = name.split(".")
            if ns == "tidegate":  # our own ops (the delay load-test model) register on import
                import vmpool.delay_op  # noqa: F401
            fn = getattr(getattr(getattr(torch.ops, ns), op), overload)
        except (ValueError, AttributeError) as exc:
            raise GraphError(f"unknown op {name!r}") from exc
    _OP_CACHE[name] = fn
    return fn


def bind_args(node: Node) -> dict:
    """Encoded args by schema argument name, defaults filled in (aten ops only)."""
    schema = resolve_op(node.op)._schema
    bound = {}
    for i, a in enumerate(schema.arguments):
        if i < len(node.args):
            bound[a.name] = node.args[i]
        elif a.name in node.kwargs:
            bound[a.name] = node.kwargs[a.name]
        elif a.has_default_value():
            bound[a.name] = a.default_value
        else:
            bound[a.name] = None
    return bound


def run_node(node: Node, env: dict, weights: dict):
    """Run one node on full tensors (a generic call of its op overload)."""
    fn = resolve_op(node.op)
    args = decode_arg(node.args, env, weights)
    kwargs = {k: decode_arg(v, env, weights) for k, v in node.kwargs.items()}
    out = fn(*args, **kwargs)
    return out[node.item] if node.item is not None else out


def run_graph(graph: Graph, inputs: list[torch.Tensor], weights: dict) -> list[torch.Tensor]:
    """Run the whole IR serially (the reference for partitioned execution)."""
    env = dict(zip(graph.inputs, inputs))
    for node in graph.nodes:
        env[node.name] = run_node(node, env, weights)
    return [env[o] for o in graph.outputs]


def dtype_bytes(dtype: str | None) -> int:
    return _DTYPE_BYTES.get(dtype or "float32", 4)
