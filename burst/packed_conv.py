"""Convs in function instances on prepacked weights and channels-last activations.

``F.conv2d`` on plain (NCHW) tensors makes oneDNN reorder the weights into its blocked layout
and the activations into and out of it on every call. On this 2-core VM that memory traffic,
not the arithmetic, is what two legs running at once fight over: VGG-11's first stage, its two
legs at once, one thread each, p50 100 / 83 ms as exported, 69 / 63 ms here, and the whole
stage alone 157 -> 126 ms (``/tmp`` probes under the bench lock, load 1.3). So a conv's weights
are packed once per instance (kept on the weight tensor, keyed by the conv's geometry) and its
input goes channels-last, which the following ReLU, batch norm, add and pooling keep; ops that
read the layout (view, flatten, linear, ...) get plain tensors again (``plain_inputs``).

Results equal ``F.conv2d``'s to float rounding. Anything the packed kernel does not take (no
oneDNN, other dtypes, a failure once for a weight) runs through ``F.conv2d`` as before.

A packed weight is a second copy of the weight. In a function instance it is paid for out of
the weight cache's budget (``set_room``: the cache evicts older plans' weights for it, or
refuses and the conv runs plain), so a plan that fits the function's memory still fits with its
convs packed (before, a 1024 MB master switching VGG-16 plans died at 1058 MB).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

_ATTR = "_tidegate_packed"  # on a weight tensor: {geometry: packed weight, or None if refused}
# ops that take channels-last tensors as they are and keep the layout (or do not care)
LAYOUT_FREE_OPS = frozenset(
    {
        "aten.relu.default",
        "aten.relu_.default",
        "aten.add.Tensor",
        "aten.add_.Tensor",
        "aten.mul.Tensor",
        "aten.hardtanh.default",
        "aten.hardtanh_.default",
        "aten.batch_norm.default",
        "aten._native_batch_norm_legit_no_training.default",
        "aten.max_pool2d.default",
        "aten.max_pool2d_with_indices.default",
        "aten.avg_pool2d.default",
        "aten.adaptive_avg_pool2d.default",
        "aten.dropout.default",
        "aten.clone.default",
        "getitem",
    }
)
_AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_convolution_pointwise"
)


# asked before packing: may ``nbytes`` more be held? (None: no budget, as in the profiler)
_ROOM: Callable[[int], bool] | None = None


# whether convs run packed here: a plan marks each stage (``Stage.packed``: the planner packs a
# stage's convs only where the function has room for the copies, ``policies.packing``) and the
# runtime runs the stage under ``packing(stage.packed)``
_PACKING: ContextVar[bool] = ContextVar("tidegate_packing", default=True)


@contextmanager
def packing(enabled: bool) -> Iterator[None]:
    """Convs inside run packed (``enabled``, the default) or plain, as the plan says."""
    token = _PACKING.set(bool(enabled))
    try:
        yield
    finally:
        _PACKING.reset(token)


def set_room(room: Callable[[int], bool] | None) -> None:
    """Where packed copies are paid for: ``room(nbytes)`` True if they may be held."""
    global _ROOM
    _ROOM = room


def _pair(v) -> list[int]:
    return [int(a) for a in v] if isinstance(v, (list, tuple)) else [int(v), int(v)]


def _packed(w: torch.Tensor, stride, padding, dilation, groups: int, in_shape):
    # packed for the input's shape too: packed for no shape, oneDNN picked a layout that ran
    # VGG-11's 14x14 512->512 convs at ~10x their plain time; a plan's legs have fixed shapes
    key = (tuple(stride), tuple(padding), tuple(dilation), groups, tuple(in_shape))
    table = getattr(w, _ATTR, None)
    if table is None:
        table = {}
        setattr(w, _ATTR, table)
    if key not in table:
        if _ROOM is not None and not _ROOM(w.numel() * w.element_size()):
            return None  # no room for a second copy now: plain, and asked again next call
        try:
            table[key] = torch.ops.mkldnn._reorder_convolution_weight(
                w.detach(), padding, stride, dilation, groups, list(in_shape)
            )
        except RuntimeError:
            table[key] = None  # this build or shape: plain convs for this weight
    return table[key]


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """``F.conv2d`` (no autograd: functions only infer), on packed weights where it can."""
    stride, padding, dilation, groups = _pair(stride), _pair(padding), _pair(dilation), int(groups)
    if (
        not _AVAILABLE
        or not _PACKING.get()
        or x.dim() != 4
        or w.dim() != 4
        or x.dtype != torch.float32
        or w.dtype != torch.float32
        or (b is not None and b.dtype != torch.float32)
    ):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    packed = _packed(w, stride, padding, dilation, groups, x.shape)
    if packed is None:
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    x = x.contiguous(memory_format=torch.channels_last)
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed, b, padding, stride, dilation, groups, "none", [], ""
    )


def plain_inputs(op: str, args):
    """``args`` with channels-last tensors made plain for an op that reads the layout."""
    if op in LAYOUT_FREE_OPS:
        return args
    return [_plain(a) for a in args]


def _plain(a):
    if isinstance(a, torch.Tensor) and a.dim() == 4 and not a.is_contiguous():
        if a.is_contiguous(memory_format=torch.channels_last):
            return a.contiguous()
    if isinstance(a, (list, tuple)):
        return type(a)(_plain(v) for v in a)
    return a
