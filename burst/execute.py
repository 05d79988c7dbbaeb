"""Run one stage's nodes for one worker: a spatial tile, an output slice, or serially."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from burst.graph import Graph, bind_args, decode_arg, node_inputs, resolve_op, run_node
from burst.halo import avg_divisors, input_window
from burst.packed_conv import LAYOUT_FREE_OPS, conv2d, plain_inputs
from burst.partition import _shape, space_varying_weights, tile_windows, window_spec


@dataclass(frozen=True)
class _Step:
    """One node of a tile, with everything that does not depend on the tensors worked out."""

    name: str
    node: object
    spec: dict
    want: tuple  # global (rows, cols) this node computes
    srcs: tuple[str, ...]
    crops: tuple  # per source: the slice of what it holds that this node reads
    pads: tuple[
        int, int, int, int
    ]  # windowed ops: explicit border padding (lo_h, hi_h, lo_w, hi_w)
    in_hw: tuple[int, int]
    # point ops: weights that vary along H or W (a positional embedding), and the window of
    # each this tile reads
    weight_crops: tuple = ()


# compiled tiles, kept on the graph (as its node index is): the halo walk, window specs and crops
# are the same for every request of a plan (a 60-node ResNet stage spent ~2 ms of Python per leg
# working them out again)
_PROGRAMS_ATTR = "_tile_programs"


def _slices(held, want) -> tuple[slice, slice]:
    (hr0, _), (hc0, _) = held
    (r0, r1), (c0, c1) = want
    return slice(r0 - hr0, r1 - hr0 + 1), slice(c0 - hc0, c1 - hc0 + 1)


def _compile_tile(graph: Graph, names: tuple, out_name: str, tile, held_in: tuple) -> list[_Step]:
    need = tile_windows(graph, list(names), out_name, tile)
    held = dict(held_in)  # value -> the global window it holds
    steps = []
    for name in names:
        if name not in need:
            continue
        node = graph.node(name)
        want = need[name]
        spec = window_spec(graph, node)
        srcs = tuple(node_inputs(node))
        wcrops = ()
        if spec["kind"] == "point":
            crops, pads, hw = tuple(_slices(held[r], want) for r in srcs), (0, 0, 0, 0), (0, 0)
            wcrops = tuple(_weight_crop(graph, w, want) for w in space_varying_weights(graph, node))
        else:
            h, w = _shape(graph, srcs[0])[2:]
            (rows, plo_h, phi_h), (cols, plo_w, phi_w) = (
                input_window(
                    want[a], spec["k"][a], spec["s"][a], spec["p"][a], spec["d"][a], (h, w)[a]
                )
                for a in (0, 1)
            )
            crops = (_slices(held[srcs[0]], (rows, cols)),)
            pads, hw = (plo_h, phi_h, plo_w, phi_w), (h, w)
        steps.append(_Step(name, node, spec, want, srcs, crops, pads, hw, wcrops))
        held[name] = want
    return steps


def _weight_crop(graph: Graph, weight: str, want) -> tuple[str, tuple]:
    """The index of a weight broadcast along H and W that covers this tile's window."""
    shape = graph.weights[weight]["shape"]
    (r0, r1), (c0, c1) = want
    index = [slice(None)] * len(shape)
    if len(shape) >= 1 and shape[-1] != 1:
        index[-1] = slice(c0, c1 + 1)
    if len(shape) >= 2 and shape[-2] != 1:
        index[-2] = slice(r0, r1 + 1)
    return weight, tuple(index)


def _tile_program(graph: Graph, names, out_name: str, tile, inputs: dict) -> list[_Step]:
    key = (tuple(names), out_name, tile, tuple((k, v[1]) for k, v in sorted(inputs.items())))
    per_graph = getattr(graph, _PROGRAMS_ATTR, None)
    if per_graph is None:
        per_graph = {}
        object.__setattr__(graph, _PROGRAMS_ATTR, per_graph)
    prog = per_graph.get(key)
    if prog is None:
        prog = per_graph[key] = _compile_tile(graph, key[0], out_name, tile, key[3])
    return prog


def run_tile(
    graph: Graph, names: list[str], out_name: str, tile, inputs: dict, weights: dict
) -> torch.Tensor:
    """Compute ``out_name`` over ``tile`` (global (rows, cols)) from input windows.

    ``inputs`` maps each group input to ``(tensor, (rows, cols))``: the crop it holds.
    Windowed ops run with padding 0 on a crop padded explicitly only at the image border.
    """
    held = {k: v[0] for k, v in inputs.items()}
    for st in _tile_program(graph, names, out_name, tile, inputs):
        if st.spec["kind"] == "point":
            env = {r: held[r][..., rs, cs] for r, (rs, cs) in zip(st.srcs, st.crops)}
            local = weights
            if st.weight_crops:
                local = {**weights, **{w: weights[w][ix] for w, ix in st.weight_crops}}
            held[st.name] = run_op(st.node, env, local)
        else:
            rs, cs = st.crops[0]
            crop = held[st.srcs[0]][..., rs, cs]
            held[st.name] = _windowed(st.node, st.spec, crop, st.pads, st.want, st.in_hw, weights)
    return held[out_name]


def _windowed(node, spec, crop, pads, want, in_hw, weights) -> torch.Tensor:
    plo_h, phi_h, plo_w, phi_w = pads
    pad = (plo_w, phi_w, plo_h, phi_h)
    kind = spec["kind"]
    if kind == "conv":
        if any(pad):
            crop = F.pad(crop, pad, value=0.0)
        b = bind_args(node)
        wt = decode_arg(b["weight"], {}, weights)
        bias = decode_arg(b["bias"], {}, weights)
        return conv2d(crop, wt, bias, spec["s"], 0, spec["d"], int(b.get("groups") or 1))
    if kind == "max":
        if any(pad):
            crop = F.pad(crop, pad, value=float("-inf"))
        return F.max_pool2d(crop, spec["k"], spec["s"], 0, spec["d"], ceil_mode=False)
    # average: sum on the zero-padded crop, then divide by the exact global divisor
    if any(pad):
        crop = F.pad(crop, pad, value=0.0)
    acc = crop.double() if crop.dtype == torch.float32 else crop
    if spec.get("div"):
        return F.avg_pool2d(acc, spec["k"], spec["s"], 0, False, True, int(spec["div"])).to(
            crop.dtype
        )
    total = F.avg_pool2d(acc, spec["k"], spec["s"], 0, False, True, 1)
    dh = avg_divisors(want[0], spec["k"][0], spec["s"][0], spec["p"][0], in_hw[0], spec["cip"])
    dw = avg_divisors(want[1], spec["k"][1], spec["s"][1], spec["p"][1], in_hw[1], spec["cip"])
    div = (dh[:, None] * dw[None, :]).to(acc.dtype)
    return (total / div).to(crop.dtype)


_CONV = "aten.conv2d.default"


def run_op(node, env: dict, weights: dict):
    """One node as a function instance runs it: convs on packed weights in channels-last
    (``burst.packed_conv``), ops that read the layout on plain tensors, the rest as is."""
    if node.op == _CONV and not node.kwargs:
        return conv2d(*decode_arg(node.args, env, weights))
    if node.op in LAYOUT_FREE_OPS:
        return run_node(node, env, weights)
    args = plain_inputs(node.op, decode_arg(node.args, env, weights))
    kwargs = {k: decode_arg(v, env, weights) for k, v in node.kwargs.items()}
    out = resolve_op(node.op)(
        *args, **dict(zip(kwargs, plain_inputs(node.op, list(kwargs.values()))))
    )
    return out[node.item] if node.item is not None else out


def run_nodes(
    graph: Graph, names: list[str], env: dict, weights: dict, drop_after: dict | None = None
) -> dict:
    """Run nodes in order on full tensors (serial stages, output slices); updates ``env``, and
    drops from it the values ``drop_after[name]`` once node ``name`` has read them last."""
    for name in names:
        node = graph.node(name)
        env[name] = run_op(node, env, weights)
        for value in drop_after.get(name, ()) if drop_after else ():
            env.pop(value, None)
    return env


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    """channels-last for a 4-D tensor that is (only) channels-last dense, else plain: a tile
    or window keeps its source's layout (converting one 1.6 MB tile costs ~1.5 ms)."""
    if (
        t.dim() == 4
        and not t.is_contiguous()
        and t.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


def stitch_tiles(tiles: list[tuple[tuple, torch.Tensor]], shape) -> torch.Tensor:
    """Place each ``((rows, cols), tensor)`` tile into a tensor of ``shape`` (in the first
    tile's layout)."""
    first = tiles[0][1]
    out = torch.empty(
        list(first.shape[:2]) + list(shape[2:]),
        dtype=first.dtype,
        memory_format=_memory_format(first),
    )
    for ((r0, r1), (c0, c1)), t in tiles:
        out[..., r0 : r1 + 1, c0 : c1 + 1] = t
    return out


def stitch_parts(parts: list[torch.Tensor], cat_dim: int) -> torch.Tensor:
    return torch.cat(parts, dim=cat_dim)


__all__ = ["run_tile", "run_nodes", "stitch_tiles", "stitch_parts", "resolve_op"]


def worker_input(stage, worker: int, x: torch.Tensor, *, copy: bool = True) -> torch.Tensor:
    """What the master sends worker ``worker`` of a split stage: its window, or all of x.
    ``copy=False``: the window as a view (the master's own leg reads it in place)."""
    if stage.split == "spatial":
        (r0, r1), (c0, c1) = stage.tiles[worker].window
        window = x[..., r0 : r1 + 1, c0 : c1 + 1]
        return window.contiguous(memory_format=_memory_format(x)) if copy else window
    return x


def run_worker_stage(
    graph: Graph, stage, worker: int, x: torch.Tensor, weights: dict
) -> torch.Tensor:
    """One worker's share of a split stage (``weights`` holds its slice)."""
    if stage.split == "spatial":
        tile = stage.tiles[worker]
        win = tuple(tuple(r) for r in tile.window)
        out_tile = tuple(tuple(r) for r in tile.out)
        return run_tile(
            graph, stage.nodes, stage.output, out_tile, {stage.input: (x, win)}, weights
        )
    if stage.split == "output":
        env = run_nodes(graph, stage.nodes, {stage.input: x}, weights)
        return env[stage.output]
    raise ValueError(f"stage {stage.index} is serial: it runs on the master")


def stitch(stage, outs: list[torch.Tensor], out_shape) -> torch.Tensor:
    if stage.split == "spatial":
        return stitch_tiles(
            [(tuple(tuple(r) for r in t.out), o) for t, o in zip(stage.tiles, outs)], out_shape
        )
    return stitch_parts(outs, stage.cat_dim)


def run_plan_local(
    graph: Graph, plan, weights: dict, inputs: list[torch.Tensor], slicer=None
) -> list[torch.Tensor]:
    """Run a plan in-process, worker by worker (the reference the runtime must match).

    ``slicer(stage, worker) -> dict`` gives a worker its weights (default: all weights).
    """
    env = dict(zip(graph.inputs, inputs))
    for stage in plan.stages:
        if stage.split == "serial":
            run_nodes(graph, stage.nodes, env, weights)
            continue
        x = env[stage.input]
        outs = [
            run_worker_stage(
                graph, stage, j, worker_input(stage, j, x), slicer(stage, j) if slicer else weights
            )
            for j in range(stage.workers)
        ]
        shape = list(x.shape[:1]) + list(graph.node(stage.output).shape[1:])
        env[stage.output] = stitch(stage, outs, shape)
    return [env[o] for o in graph.outputs]
