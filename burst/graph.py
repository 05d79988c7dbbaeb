"""A plain, JSON-serialisable IR of an exported program's ATen graph.

Each node records its op (``"aten.conv2d.default"``), its args with references to other nodes
(``{"ref": name}``) and to weights (``{"w": fqn}``), its output shape (``-1`` for a symbolic
dimension such as the batch), dtype, MACs per sample and the bytes of weights it reads.
A ``getitem(op, 0)`` on a tuple-returning op (e.g. ``_native_batch_norm_legit_no_training``)
is folded into the op's node as ``item=0`` when no other element is used.
"""

from __future__ import annotations

import math
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


class GraphError(Exception):
    """The exported program cannot be represented or run."""


@dataclass
class Node:
    name: str
    op: str
    args: list
    kwargs: dict
    shape: list[int] | None = None  # -1 for a symbolic dim; None when not a tensor
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
            )
        except (KeyError, TypeError) as exc:
            raise GraphError(f"malformed graph IR: {exc}") from exc


def _shape_of(val) -> tuple[list[int] | None, str | None]:
    if isinstance(val, torch.Tensor):
        dims = []
        for d in val.shape:
            if isinstance(d, torch.SymInt):
                # a symbolic size (the dynamic batch): int() would bake in the trace's hint
                const = d.node.maybe_as_int() if hasattr(d.node, "maybe_as_int") else None
                dims.append(int(const) if const is not None else -1)
            else:
                dims.append(int(d))
        return dims, str(val.dtype).removeprefix("torch.")
    return None, None


def _encode(arg, names: dict, weights: dict):
    """Encode one fx argument as JSON-able data."""
    if isinstance(arg, torch.fx.Node):
        if arg.name in weights:
            return {"w": weights[arg.name]}
        return {"ref": names.get(arg.name, arg.name)}
    if isinstance(arg, (list, tuple)):
        return [_encode(a, names, weights) for a in arg]
    if isinstance(arg, (bool, int, str)) or arg is None:
        return arg
    if isinstance(arg, float):
        if math.isinf(arg) or math.isnan(arg):
            return {"float": repr(arg)}
        return arg
    if isinstance(arg, torch.dtype):
        return {"dtype": str(arg).removeprefix("torch.")}
    if isinstance(arg, torch.device):
        return {"device": "cpu"}  # functions run on CPU
    if isinstance(arg, torch.memory_format):
        return {"memory_format": str(arg).removeprefix("torch.")}
    if isinstance(arg, torch.layout):
        return {"layout": str(arg).removeprefix("torch.")}
    raise GraphError(f"cannot represent argument {arg!r} of type {type(arg).__name__}")


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


def _macs(op: str, args: list, out_shape, weights: dict) -> int:
    def per_sample(shape):
        return math.prod(d for d in shape[1:]) if shape else 0

    if out_shape is None:
        return 0
    if op in ("aten.conv2d.default", "aten.convolution.default") and len(args) > 1:
        w = (
            weights.get(args[1]["w"], {}).get("shape")
            if isinstance(args[1], dict) and "w" in args[1]
            else None
        )
        if w:
            return per_sample(out_shape) * math.prod(w[1:])
    if op in ("aten.linear.default",) and isinstance(args[1], dict) and "w" in args[1]:
        w = weights[args[1]["w"]]["shape"]
        return per_sample(out_shape) * w[-1]
    return per_sample(out_shape)


def build_graph(program, model: str = "") -> Graph:
    """The IR of an ``ExportedProgram``."""
    sig = program.graph_signature
    fqn = {}
    fqn.update(sig.inputs_to_parameters)
    fqn.update(sig.inputs_to_buffers)
    fqn.update(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    state = dict(program.state_dict)
    state.update(program.constants)
    weights: dict[str, dict] = {}
    for name in fqn.values():
        t = state.get(name)
        if isinstance(t, torch.Tensor):
            weights[name] = {
                "shape": list(t.shape),
                "dtype": str(t.dtype).removeprefix("torch."),
                "bytes": t.numel() * t.element_size(),
            }
    graph = program.graph
    # get_attr nodes (constants not lifted) are weights too
    for n in graph.nodes:
        if n.op == "get_attr":
            t = getattr(program.graph_module, n.target)
            if isinstance(t, torch.Tensor):
                fqn[n.name] = n.target
                state[n.target] = t
                weights[n.target] = {
                    "shape": list(t.shape),
                    "dtype": str(t.dtype).removeprefix("torch."),
                    "bytes": t.numel() * t.element_size(),
                }
    ph_to_w = {ph: name for ph, name in fqn.items()}
    user_inputs = list(sig.user_inputs)
    # fold getitem(x, i) when x's only users are getitems of one index
    rename: dict[str, str] = {}
    fold: dict[str, int] = {}
    for n in graph.nodes:
        if n.op != "call_function" or n.target is operator.getitem:
            continue
        users = list(n.users)
        if users and all(u.target is operator.getitem for u in users):
            idx = {u.args[1] for u in users}
            if len(idx) == 1:
                fold[n.name] = idx.pop()
                for u in users:
                    rename[u.name] = n.name
    nodes: list[Node] = []
    inputs, input_shapes = [], []
    outputs: list[str] = []
    for n in graph.nodes:
        if n.op == "placeholder":
            if n.name in user_inputs:
                shape, _ = _shape_of(n.meta.get("val"))
                inputs.append(n.name)
                input_shapes.append(shape)
            continue
        if n.op == "get_attr":
            continue
        if n.op == "output":
            outs = n.args[0]
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for o in outs:
                if not isinstance(o, torch.fx.Node):
                    raise GraphError("only tensor outputs are supported")
                outputs.append(rename.get(o.name, o.name))
            continue
        if n.name in rename:
            continue
        op = "getitem" if n.target is operator.getitem else str(n.target)
        if op != "getitem" and not isinstance(n.target, torch._ops.OpOverload):
            raise GraphError(f"unsupported call target {n.target!r}")
        args = _encode(list(n.args), rename, ph_to_w)
        kwargs = {k: _encode(v, rename, ph_to_w) for k, v in n.kwargs.items()}
        val = n.meta.get("val")
        item = fold.get(n.name)
        if item is not None and isinstance(val, (tuple, list)):
            val = val[item]
        shape, dtype = _shape_of(val)
        wnames = []
        for a in list(args) + list(kwargs.values()):
            for w in weights_of(a):
                if w not in wnames:
                    wnames.append(w)
        nodes.append(
            Node(
                name=n.name,
                op=op,
                args=args,
                kwargs=kwargs,
                shape=shape,
                dtype=dtype,
                item=item,
                macs=_macs(op, args, shape, weights),
                weight_bytes=sum(weights[w]["bytes"] for w in wnames if w in weights),
                weights=wnames,
            )
        )
    return Graph(
        model=model,
        inputs=inputs,
        input_shapes=input_shapes,
        outputs=outputs,
        nodes=nodes,
        weights=weights,
    )


def program_weights(program) -> dict[str, torch.Tensor]:
    """All weight tensors of a program by fully-qualified name."""
    state = {k: v for k, v in program.state_dict.items()}
    state.update({k: v for k, v in program.constants.items() if isinstance(v, torch.Tensor)})
    for n in program.graph.nodes:
        if n.op == "get_attr":
            t = getattr(program.graph_module, n.target)
            if isinstance(t, torch.Tensor):
                state[n.target] = t
    return state


def run_graph(graph: Graph, inputs: list[torch.Tensor], weights: dict) -> list[torch.Tensor]:
    """Run the whole IR serially (the reference for partitioned execution)."""
    env = dict(zip(graph.inputs, inputs))
    for node in graph.nodes:
        env[node.name] = run_node(node, env, weights)
    return [env[o] for o in graph.outputs]


def dtype_bytes(dtype: str | None) -> int:
    return _DTYPE_BYTES.get(dtype or "float32", 4)
