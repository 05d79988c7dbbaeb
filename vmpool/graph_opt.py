"""Load-time rewrites of an exported program's module for serving on CPU.

``torch.export`` keeps the graph as the user wrote it: each ``batch_norm`` after its ``conv2d``,
and every ``conv2d`` on plain (NCHW) tensors, so oneDNN reorders the activations and the weights
into its blocked layout and back on every call. Two rewrites, each done once at load:

1. **Batch norm folded into the conv**: at inference the norm is a fixed per-channel scale and
   shift of the conv's output, so it goes into the conv's weight and bias.
2. **oneDNN layout end to end** (resnet and VGG shapes): the input is reordered once, convs run
   on prepacked weights (``mkldnn_convolution``), ReLU, residual adds and pooling stay in the
   blocked layout, and the activations come back to plain tensors once, before ``flatten``.
   Taken only when the whole convolutional trunk can stay in that layout (one reorder in, one
   out per graph input); MobileNet's ``hardtanh`` has no oneDNN-layout kernel, and reordering
   around each one would cost more than it saves, so such graphs keep their convs as exported.

resnet18, batch 1, 2 threads on this 2-core VM (issue 6): p50 72.1 -> 61.3 ms, best 56.7 ->
46.7 ms (load 7.5, /tmp probes; ``ops/bench/model_server_latency.py`` prints both sides).
Results equal the exported program's to float rounding (about 1e-6 relative); ``optimize``
checks that on an example input and keeps the exported module when they differ or fail.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections.abc import Callable

import torch

log = logging.getLogger("tidegate.model_server")
_aten = torch.ops.aten
_CONV_DEFAULTS = (None, [1, 1], [0, 0], [1, 1], 1)  # bias, stride, padding, dilation, groups
# ops with a oneDNN-layout kernel that keep its layout (ATen's MkldnnCPU dispatch key)
_ONEDNN_OPS = {
    _aten.relu.default,
    _aten.relu_.default,
    _aten.add.Tensor,
    _aten.max_pool2d.default,
    _aten.adaptive_avg_pool2d.default,
}
MAX_RELATIVE_ERROR = 1e-4  # of the rewritten module's outputs against the exported one's


def optimize(module: torch.fx.GraphModule, example: tuple[torch.Tensor, ...]):
    """``module`` rewritten for serving (a copy), or ``module`` itself when nothing applies or
    the rewrite does not reproduce its outputs on ``example``. Returns (module, what changed)."""
    try:
        # a module of its own graph that shares the exported module's parameters (no copy)
        rewritten = torch.fx.GraphModule(module, copy.deepcopy(module.graph))
        folded = fold_batch_norms(rewritten)
        packed = to_onednn_layout(rewritten)
        if not folded and not packed:
            return module, "as exported"
        with torch.inference_mode():
            want, got = module(*example), rewritten(*example)
        _check_close(want, got)
    except Exception as exc:  # a graph these rewrites do not know: serve it as exported
        log.warning("serving the program as exported (rewrite failed: %s)", exc)
        return module, "as exported"
    _drop_unused(rewritten)
    return rewritten, f"{folded} batch norms folded, {packed} convs in oneDNN layout"


def _drop_unused(module: torch.fx.GraphModule) -> None:
    """Let go of the weights the rewrites replaced (the exported module is dropped by the
    caller): otherwise a served resnet holds its conv weights three times."""
    used = {n.target for n in module.graph.nodes if n.op == "get_attr"}
    for name, _ in [*module.named_parameters(), *module.named_buffers()]:
        if name not in used:
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            owner._parameters.pop(attr, None)
            owner._buffers.pop(attr, None)


def _check_close(want, got) -> None:
    want = want if isinstance(want, (tuple, list)) else (want,)
    got = got if isinstance(got, (tuple, list)) else (got,)
    for a, b in zip(want, got, strict=True):
        scale = max(float(a.abs().max()), 1.0) if a.numel() else 1.0
        error = float((a - b).abs().max()) / scale if a.numel() else 0.0
        if a.shape != b.shape or not error <= MAX_RELATIVE_ERROR:
            raise ValueError(f"outputs differ by {error:.2e} (relative)")


def fold_batch_norms(module: torch.fx.GraphModule) -> int:
    """Fold each inference-mode ``batch_norm`` whose input is a ``conv2d`` used by nothing
    else, with constant parameters, into that conv, in place; returns how many."""
    graph = module.graph
    folded = 0
    for norm in list(graph.nodes):
        constants = _foldable(module, norm)
        if constants is None:
            continue
        conv = norm.args[0]
        weight, bias = _folded(module, conv, constants, eps=float(norm.args[7]))
        with graph.inserting_before(conv):
            weight_node = graph.get_attr(_register(module, f"_bn_folded_weight_{folded}", weight))
            bias_node = graph.get_attr(_register(module, f"_bn_folded_bias_{folded}", bias))
        args = list(conv.args) + list(_CONV_DEFAULTS[len(conv.args) - 2 :])
        args[1], args[2] = weight_node, bias_node
        conv.args = tuple(args)
        norm.replace_all_uses_with(conv)
        graph.erase_node(norm)
        folded += 1
    if folded:
        _finish(module)
    return folded


def _foldable(module, norm) -> tuple[torch.Tensor, ...] | None:
    """(norm weight, norm bias, running mean, running var) when ``norm`` folds, else None."""
    if norm.op != "call_function" or norm.target is not _aten.batch_norm.default:
        return None
    if len(norm.args) != 9 or norm.kwargs or norm.args[5]:  # args[5]: training
        return None
    conv, *params = norm.args[:5]
    if not isinstance(conv, torch.fx.Node) or conv.target is not _aten.conv2d.default:
        return None
    if len(conv.users) != 1 or conv.kwargs:
        return None
    conv_params = [a for a in conv.args[1:3] if a is not None]
    if not all(_is_constant(a) for a in [*params, *conv_params]):
        return None
    return tuple(_constant(module, a) for a in params)


def _folded(module, conv, constants, *, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    norm_weight, norm_bias, mean, var = constants
    weight = _constant(module, conv.args[1])
    bias_node = conv.args[2] if len(conv.args) > 2 else None
    bias = _constant(module, bias_node) if bias_node is not None else torch.zeros_like(mean)
    scale = norm_weight / torch.sqrt(var + eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return (weight * scale.reshape(shape)).contiguous(), ((bias - mean) * scale + norm_bias)


def to_onednn_layout(module: torch.fx.GraphModule) -> int:
    """Run the convolutional trunk in oneDNN's layout (module docstring), in place; returns the
    convs rewritten, 0 (``module`` unchanged) when the graph does not qualify."""
    if not torch.backends.mkldnn.is_available():
        return 0
    convs, reorders_in = _rewrite_onednn(module, dry_run=True)
    inputs = sum(1 for n in module.graph.nodes if n.op == "placeholder")
    if not convs or reorders_in > inputs:  # layout round trips inside the trunk: not worth it
        return 0
    convs, _ = _rewrite_onednn(module, dry_run=False)
    _finish(module)
    return convs


def _rewrite_onednn(module, *, dry_run: bool) -> tuple[int, int]:
    """Returns (convs rewritten, reorders into the layout inserted); ``dry_run`` only counts."""
    # size: one walk that tracks the layout of every value; its cases read best together
    graph = module.graph
    blocked: set[torch.fx.Node] = set()  # nodes whose value is in oneDNN's layout
    convs = reorders_in = 0

    def into_layout(node, before):
        nonlocal reorders_in
        if node in blocked:
            return node
        reorders_in += 1
        if dry_run:
            return node
        with graph.inserting_before(before):
            converted = graph.call_function(_aten.to_mkldnn.default, (node,))
        blocked.add(converted)
        return converted

    def out_of_layout(arg, before):
        if dry_run or not isinstance(arg, torch.fx.Node) or arg not in blocked:
            return arg
        with graph.inserting_before(before):
            return graph.call_function(_aten.to_dense.default, (arg,))

    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is _aten.conv2d.default:
            if _conv_weight(module, node) is not None:
                source = into_layout(node.args[0], node)
                if dry_run:
                    blocked.add(node)
                else:
                    new = _onednn_conv(module, node, convs, source)
                    node.replace_all_uses_with(new)
                    graph.erase_node(node)
                    blocked.add(new)
                convs += 1
                continue
        elif node.op == "call_function" and node.target in _ONEDNN_OPS:
            tensors = [a for a in node.args if isinstance(a, torch.fx.Node)]
            if any(a in blocked for a in tensors):
                args = [into_layout(a, node) if a in tensors else a for a in node.args]
                node.args = node.args if dry_run else tuple(args)
                blocked.add(node)
                continue
        if node.op in ("call_function", "output"):
            node.args = torch.fx.node.map_arg(node.args, lambda a, at=node: out_of_layout(a, at))
    return convs, reorders_in


def _conv_weight(module, conv) -> torch.Tensor | None:
    """The weight of a ``conv2d`` that ``mkldnn_convolution`` can run prepacked, else None."""
    weight_node = conv.args[1]
    bias_node = conv.args[2] if len(conv.args) > 2 else None
    if conv.kwargs or not all(_is_constant(a) for a in (weight_node, bias_node) if a is not None):
        return None
    weight = _constant(module, weight_node)
    return weight if weight.dtype == torch.float32 and weight.dim() == 4 else None


def _onednn_conv(module, conv, index: int, source):
    """A ``mkldnn_convolution`` node with prepacked weights in place of ``conv``."""
    args = list(conv.args) + list(_CONV_DEFAULTS[len(conv.args) - 2 :])
    _, _, bias_node, stride, padding, dilation, groups = args
    weight = _conv_weight(module, conv)
    stride, padding, dilation = (_pair(v) for v in (stride, padding, dilation))
    packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
        weight.to_mkldnn(), padding, stride, dilation, groups
    )
    bias = _constant(module, bias_node) if bias_node is not None else torch.zeros(weight.shape[0])
    graph = conv.graph
    with graph.inserting_before(conv):
        w = graph.get_attr(_register(module, f"_onednn_weight_{index}", packed))
        b = graph.get_attr(_register(module, f"_onednn_bias_{index}", bias.contiguous()))
        return graph.call_function(
            _aten.mkldnn_convolution.default, (source, w, b, padding, stride, dilation, groups)
        )


def _pair(value) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value, value]


def _is_constant(node) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "get_attr"


def _constant(module, node) -> torch.Tensor:
    value = module
    for part in node.target.split("."):
        value = getattr(value, part)
    return value.detach()


def _register(module, name: str, tensor: torch.Tensor) -> str:
    module.register_buffer(name, tensor, persistent=False)
    return name


def _finish(module) -> None:
    module.graph.eliminate_dead_code()  # the replaced weights' get_attr nodes
    module.graph.lint()
    module.recompile()


class ExactOnNonFinite:
    """The rewritten module for finite inputs; the program as exported for a batch holding a
    NaN or an infinity. oneDNN's ReLU maps NaN to 0 where ATen's keeps it, so a rewritten
    resnet answered finite numbers to a NaN input that the burst path (and the exported
    program) answers NaN. The exported module is loaded on the first such batch, not kept from
    the start: the rewrite dropped its weights (45 MB for resnet18) and NaN inputs are rare.
    ``load_exact`` returns it, or None when the program on disk is no longer the one served
    (then the rewritten module answers, as before)."""

    def __init__(self, fast, load_exact: Callable[[], torch.nn.Module | None]):
        self.fast = fast
        self._load_exact = load_exact
        self._exact: torch.nn.Module | None = None
        self._tried = False
        self._lock = threading.Lock()

    @property
    def validate_inputs(self) -> bool:
        return bool(getattr(self.fast, "validate_inputs", True))

    @validate_inputs.setter
    def validate_inputs(self, value: bool) -> None:
        self.fast.validate_inputs = value
        if self._exact is not None:
            self._exact.validate_inputs = value

    def __call__(self, *args):
        if all(_finite(a) for a in args):
            return self.fast(*args)
        exact = self.exact()
        return (exact or self.fast)(*args)

    def exact(self) -> torch.nn.Module | None:
        with self._lock:  # one load, whichever thread asks first
            if not self._tried:
                self._tried = True
                try:
                    self._exact = self._load_exact()
                except Exception as exc:  # noqa: BLE001 - the rewritten module still answers
                    log.warning("non-finite input: cannot load the exported program: %s", exc)
                if self._exact is not None:
                    self._exact.validate_inputs = self.validate_inputs
            return self._exact


def _finite(tensor) -> bool:
    """Whether ``tensor`` holds no NaN or infinity (or overflows its sum: then it takes the
    exact path too, which is only slower). The sum: 8 us for 1x3x224x224, isfinite().all()
    400 us (it writes a mask)."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        return True
    wide = tensor.dtype if tensor.element_size() >= 4 else torch.float32  # fp16 sums overflow
    return math.isfinite(float(tensor.sum(dtype=wide)))
