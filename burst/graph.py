"""A plain, JSON-serialisable IR of an exported program's ATen graph.

Each node records its op (``"aten.conv2d.default"``), its args with references to other nodes
(``{"ref": name}``) and to weights (``{"w": fqn}``), its output shape (``-1`` for the symbolic
batch, ``-k`` for k times it), dtype, MACs per sample and the bytes of weights it reads.
A ``getitem(op, 0)`` on a tuple-returning op (e.g. ``_native_batch_norm_legit_no_training``)
is folded into the op's node as ``item=0`` when no other element is used.

``build_graph`` makes the IR from an ``ExportedProgram``; the IR's types and how to run it live in
``burst.graph_ir`` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import math
import operator

import torch

# the IR's types and execution live in burst.graph_ir; re-exported: callers import them here
from burst.graph_macs import node_macs
from burst.graph_ir import (
    SYM_OPS,
    Graph,
    GraphError,
    Node,
    bind_args,
    decode_arg,
    dtype_bytes,
    node_inputs,
    refs_of,
    resolve_op,
    run_graph,
    run_node,
    weights_of,
)

__all__ = [
    "Graph",
    "GraphError",
    "Node",
    "bind_args",
    "build_graph",
    "decode_arg",
    "dtype_bytes",
    "node_inputs",
    "program_weights",
    "refs_of",
    "resolve_op",
    "run_graph",
    "run_node",
    "weights_of",
]


def _shape_of(val) -> tuple[list[int] | None, str | None]:
    if isinstance(val, torch.Tensor):
        dims = []
        for d in val.shape:
            if isinstance(d, torch.SymInt):
                # a symbolic size (the dynamic batch): int() would bake in the trace's hint
                const = d.node.maybe_as_int() if hasattr(d.node, "maybe_as_int") else None
                dims.append(int(const) if const is not None else _batch_multiple(d))
            else:
                dims.append(int(d))
        return dims, str(val.dtype).removeprefix("torch.")
    return None, None


def _batch_multiple(d: torch.SymInt) -> int:
    """A symbolic size as ``-k`` for ``k`` times the batch (``-1``: the batch itself); attention
    views its [T, B, D] as [T, heads * B, D/heads], whose bytes are ``heads`` times a batch's.
    ``-1`` where it is no whole multiple of one symbol."""
    expr = getattr(d.node, "expr", None)
    if expr is None or len(getattr(expr, "free_symbols", ())) != 1:
        return -1
    coeff, rest = expr.as_coeff_Mul()
    if rest.is_Symbol and coeff.is_Integer and int(coeff) >= 1:
        return -int(coeff)
    return -1


def batch_size(d: int, batch: int) -> int:
    """A dim of the IR at ``batch``: ``-k`` is ``k * batch``."""
    return -d * batch if d < 0 else d


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


def build_graph(program, model: str = "") -> Graph:
    """The IR of an ``ExportedProgram``."""
    placeholder_weights, weights = _weight_table(program)
    user_inputs = list(program.graph_signature.user_inputs)
    rename, fold = _getitem_folds(program.graph)
    nodes: list[Node] = []
    inputs, input_shapes = [], []
    outputs: list[str] = []
    for n in program.graph.nodes:
        if n.op == "placeholder":
            if n.name in user_inputs:
                _only_the_batch_dynamic(n)
                shape, _ = _shape_of(n.meta.get("val"))
                inputs.append(n.name)
                input_shapes.append(shape)
        elif n.op == "output":
            outputs += _output_names(n, rename)
        elif n.op != "get_attr" and n.name not in rename:
            nodes.append(_node(n, rename, placeholder_weights, fold.get(n.name), weights))
    return Graph(
        model=model,
        inputs=inputs,
        input_shapes=input_shapes,
        outputs=outputs,
        nodes=nodes,
        weights=weights,
        weights_digest=weights_digest(program),
    )


def _only_the_batch_dynamic(n) -> None:
    """A plan is made for one input shape per batch size: an input with another dynamic
    dimension (a sequence length) is refused here, not failed in the master on every request
    ("shape [1, 20] does not fit the plan (expects [1, 1])"). Each input's first dimension is
    its batch (the model server batches them so)."""
    val = n.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return
    for i, d in enumerate(val.shape[1:], start=1):
        expr = getattr(getattr(d, "node", None), "expr", None)
        if isinstance(d, torch.SymInt) and getattr(expr, "free_symbols", None):
            raise GraphError(
                f"input {n.name!r} has a dynamic dimension {i} besides the batch "
                f"(shape {_shown(val.shape)}): burst plans are made for fixed shapes; export it "
                "with only the batch dynamic to split it, or keep it on the VM path"
            )


def _shown(shape) -> list[int]:
    """A shape as the model's config shows it: -1 for a dynamic size (not "s23", a tracer's
    symbol name)."""
    return [d if isinstance(d, int) else -1 for d in shape]


def weights_digest(program) -> str:
    """A digest of every weight tensor's name, type, shape and bytes (sha1: ~1 GB/s; the id of
    the content, not a security check)."""
    h = hashlib.sha1(usedforsecurity=False)
    for name, t in sorted(program_weights(program).items()):
        t = t.detach().contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()[:16]


def _weight_meta(t: torch.Tensor) -> dict:
    return {
        "shape": list(t.shape),
        "dtype": str(t.dtype).removeprefix("torch."),
        "bytes": t.numel() * t.element_size(),
    }


def _weight_table(program) -> tuple[dict[str, str], dict[str, dict]]:
    """(graph node name -> weight fqn, fqn -> {"shape", "dtype", "bytes"}) of a program's
    lifted parameters, buffers and constants, and of its ``get_attr`` constants (not lifted)."""
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
            weights[name] = _weight_meta(t)
    for n in program.graph.nodes:
        if n.op == "get_attr":
            t = getattr(program.graph_module, n.target)
            if isinstance(t, torch.Tensor):
                fqn[n.name] = n.target
                weights[n.target] = _weight_meta(t)
    return fqn, weights


def _getitem_folds(graph) -> tuple[dict[str, str], dict[str, int]]:
    """getitem(x, i) is folded into x when x's only users are getitems of one index: (getitem
    node name -> x's name, x's name -> i)."""
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
    return rename, fold


def _output_names(n, rename: dict[str, str]) -> list[str]:
    outs = n.args[0]
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    names = []
    for o in outs:
        if not isinstance(o, torch.fx.Node):
            raise GraphError("only tensor outputs are supported")
        names.append(rename.get(o.name, o.name))
    return names


def _node(n, rename: dict, placeholder_weights: dict, item: int | None, weights: dict) -> Node:
    """One call of an op as IR: encoded args, output shape and dtype, work and weights read."""
    op = _op_name(n.target)
    args = _encode(list(n.args), rename, placeholder_weights)
    kwargs = {k: _encode(v, rename, placeholder_weights) for k, v in n.kwargs.items()}
    val = n.meta.get("val")
    if item is not None and isinstance(val, (tuple, list)):
        val = val[item]
    shape, dtype = _shape_of(val)
    wnames = []
    for a in list(args) + list(kwargs.values()):
        for w in weights_of(a):
            if w not in wnames:
                wnames.append(w)
    return Node(
        name=n.name,
        op=op,
        args=args,
        kwargs=kwargs,
        shape=shape,
        dtype=dtype,
        item=item,
        macs=node_macs(op, args, shape, weights, n),
        weight_bytes=sum(weights[w]["bytes"] for w in wnames if w in weights),
        weights=wnames,
    )


def _op_name(target) -> str:
    """An fx call target's IR name: ``aten.x.overload``, ``getitem``, or ``operator.mul`` for the
    int arithmetic ``torch.export`` records on a dynamic batch size (``view(x, [4 * batch, ...])``
    in multi-head attention)."""
    if target is operator.getitem:
        return "getitem"
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    name = getattr(target, "__name__", "")
    if getattr(operator, name, None) is target and name in SYM_OPS:
        return f"operator.{name}"
    if isinstance(target, torch._ops.HigherOrderOperator):  # torch.cond, while_loop, map...
        raise GraphError(
            f"the burst path cannot run control flow (torch.{target.name()}); serve the "
            f"model on the VM path, or export it without data-dependent branches"
        )
    # a readable name, not a repr with an address ("<... object at 0x7fe3b565c950>")
    what = getattr(target, "__qualname__", None) or type(target).__qualname__
    raise GraphError(f"unsupported call target {getattr(target, '__module__', '')}.{what}")


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
