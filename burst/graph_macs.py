"""The work of one graph node, in multiply-adds per sample (what ``burst.graph`` records as a
node's ``macs``): convs (plain, grouped, transposed, 1-D to 3-D) and linears by their weights,
recurrent layers (LSTM, GRU, RNN) by their weights times the steps, anything else by its
output's size. A matmul between activations and attention are counted over their reduced dim by
``burst.node_work``, which reads the input shapes."""

from __future__ import annotations

import math
from typing import NamedTuple

# aten's recurrent ops: (input, hx, params, has_biases, num_layers, dropout, train,
# bidirectional, batch_first)
RECURRENT_OPS = frozenset(
    {"aten.lstm.input", "aten.gru.input", "aten.rnn_tanh.input", "aten.rnn_relu.input"}
)


def per_sample(shape) -> int:
    """A shape's size at batch 1: the batch is the symbolic dim (``-k``: k times the batch), not
    always the first ([T, B, D] in attention); a shape with none has its batch first."""
    if not shape:
        return 0
    if any(d < 0 for d in shape):  # -1 times a size made MACs negative: stages "faster" than free
        return math.prod(-d if d < 0 else d for d in shape)
    return math.prod(shape[1:])


def node_macs(op: str, args: list, out_shape, weights: dict, fx_node=None) -> int:
    """Multiply-adds per sample of one call of ``op`` (encoded ``args``; ``fx_node`` for the
    input shapes a recurrent op's steps come from)."""
    if op in RECURRENT_OPS:
        return _recurrent_macs(args, weights, fx_node)
    if out_shape is None:
        return 0
    if "conv" in op and len(args) > 1:
        w = (
            weights.get(args[1]["w"], {}).get("shape")
            if isinstance(args[1], dict) and "w" in args[1]
            else None
        )
        if w and _transposed(op, args):
            return _transposed_macs(out_shape, op, args, w)
        if w:  # conv1d/2d/3d: each output element reads Cin/groups x the kernel
            return per_sample(out_shape) * math.prod(w[1:])
    if op in ("aten.linear.default",) and isinstance(args[1], dict) and "w" in args[1]:
        w = weights[args[1]["w"]]["shape"]
        return per_sample(out_shape) * w[-1]
    return per_sample(out_shape)


def _recurrent_macs(args: list, weights: dict, fx_node) -> int:
    """Each step multiplies the step's input and the hidden state by every layer's (and
    direction's) weight matrices: the steps times their sizes. Its output is a tuple, so the
    output's size was no measure: an LSTM counted 0 and was priced as free."""
    val = fx_node.args[0].meta.get("val") if fx_node is not None and fx_node.args else None
    params = args[2] if len(args) > 2 and isinstance(args[2], list) else []
    if val is None or val.dim() != 3 or not params:
        return 0
    batch_first = bool(args[8]) if len(args) > 8 else False
    steps = val.shape[1] if batch_first else val.shape[0]
    if not isinstance(steps, int):  # a dynamic sequence: burst.graph refuses the input
        return 0
    mats = [
        weights[p["w"]]["shape"]
        for p in params
        if isinstance(p, dict) and "w" in p and len(weights.get(p["w"], {}).get("shape", ())) == 2
    ]
    return steps * sum(rows * cols for rows, cols in mats)


class RecurrentWork(NamedTuple):
    """One call of a recurrent op, as the compute fit prices it (``recurrent_work``)."""

    steps: int = 0  # time steps x layers x directions, run one after another
    macs: int = 0  # GEMM multiply-adds: input projections, and steps' samples beyond one
    gate_bytes: int = 0  # gate values written and read
    weight_bytes: int = 0  # every weight, read once a call
    reread_bytes: int = 0  # hidden-to-hidden matrices read again each step (memory-equivalent)


# a weight matrix this size or less stays in one core's cache (L2: 2 MB a core on the host
# the reference profile was measured on) while a recurrent layer steps over a sequence
CACHED_WEIGHT_BYTES = 2 << 20
# what a read from that cache costs against one from memory: an LSTM 256 wide over 64 steps on
# one thread, 2.7 ms at batch 1 and 7.3 ms at batch 8, leaves ~2.0 ms for its 126 MB of
# hidden-matrix re-reads once the batch-scaled matmuls are taken out: 0.016 ms/MB, against the
# compute fit's ~0.038 ms per MB read from memory (ops/bench/pred22_recurrent_accuracy.py)
CACHED_READ_SHARE = 0.4
# ... but the cache does not hold a matrix whole up to its size and drop it past it: per step at
# batch 1, one thread, a unidirectional LSTM's re-read cost 0.010-0.014 ms/MB up to 1.05 MB,
# 0.018-0.019 at 1.33-1.64 MB, 0.026 at 1.98 MB and 0.037-0.045 from 2.36 MB (burst24,
# /tmp/burst24/thresh.py, load ~10): a share of a memory read that climbs from half the cache
# to a little past it. (size / CACHED_WEIGHT_BYTES, share), linear between, 1.0 past the last
CACHE_SHARE_STEPS = ((0.5, CACHED_READ_SHARE), (0.78, 0.46), (0.94, 0.63), (1.125, 1.0))


def recurrent_work(args: list, input_shape, weights: dict, batch: int = 1) -> RecurrentWork:
    """What one call of a recurrent op on an input of ``input_shape`` does at ``batch``,
    measured on one thread here (``ops/bench/burst24_recurrent.py``), per layer and direction:

    - its input-to-hidden matrix applied to the whole sequence at once (torch does): one
      GEMM, ``T x batch`` rows;
    - then its ``T`` steps one after another, each a few small kernels (a fixed cost a
      step) and a matrix-vector product per sample with the hidden-to-hidden matrix. At
      batch 1 a step's time is that matrix read again (from the core's cache where it fits,
      CACHED_WEIGHT_BYTES: 13 us a step for a 256-wide LSTM's 1 MB, 165 us for a 512-wide's
      4 MB from memory); each sample beyond the first adds its multiply-adds (9-11 ms per
      GMAC);
    - its gates: ``T x batch x gates x hidden`` values written and read;
    - every weight read once a call (oneDNN's LSTM reorders them into its layout on every
      call: ~0.2 ms per MB, 6x a plain read, so that term has its own fit).

    Counted as one read of every weight, its LSTMs were priced 4-10x under their time; with
    every step's multiply-adds as GEMM work and no per-call weight term, a 2-layer LSTM's
    second layer (its input matrix H x 4H) came out at half its time."""
    params = args[2] if len(args) > 2 and isinstance(args[2], list) else []
    if not input_shape or len(input_shape) != 3 or not params:
        return RecurrentWork()
    batch_first = bool(args[8]) if len(args) > 8 else False
    seq = abs(input_shape[1] if batch_first else input_shape[0])
    layers = int(args[4]) if len(args) > 4 and isinstance(args[4], int) else 1
    directions = 2 if len(args) > 7 and args[7] else 1
    shapes = [
        weights.get(p["w"], {}) for p in params if isinstance(p, dict) and "w" in p
    ]  # per layer and direction: w_ih, w_hh (then b_ih, b_hh)
    mats = [w for w in shapes if len(w.get("shape", ())) == 2]
    w_ih, w_hh = mats[0::2], mats[1::2]
    total = sum(int(w.get("bytes", 0)) for w in shapes)
    elems = lambda ws: sum(math.prod(w["shape"]) for w in ws)  # noqa: E731
    macs = seq * (batch * elems(w_ih) + (batch - 1) * elems(w_hh))
    gates = seq * batch * sum(w["shape"][0] for w in w_hh) * 4  # float32 gate values
    # a hidden-to-hidden matrix that stays in the core's cache between steps is re-read from
    # there, at CACHED_READ_SHARE of a read from memory. Priced as memory reads, a 256-wide
    # LSTM over 64 steps (1 MB a matrix) came out at 1.9x its time; not priced at all (its
    # matmuls by their MACs only), its batch-1 runs came out at 0.4-0.5x.
    hidden = sum(_reread_bytes(int(w.get("bytes", 0))) for w in w_hh)
    return RecurrentWork(seq * layers * directions, macs, gates, total, (seq - 1) * hidden)


def _reread_bytes(nbytes: int) -> int:
    """What reading a weight matrix again costs, in bytes read from memory
    (``CACHE_SHARE_STEPS``: the cache's share graded, where one step at its size priced a
    2 MB GRU's re-reads at 0.4 of their time's share and a 2.3 MB one's at 1.0)."""
    return int(nbytes * cache_share(nbytes))


def cache_share(nbytes: int) -> float:
    """The share of a read from memory that reading a matrix of ``nbytes`` again costs."""
    size = nbytes / CACHED_WEIGHT_BYTES
    (x0, y0), rest = CACHE_SHARE_STEPS[0], CACHE_SHARE_STEPS[1:]
    if size <= x0:
        return y0
    for x1, y1 in rest:
        if size <= x1:
            return y0 + (y1 - y0) * (size - x0) / (x1 - x0)
        x0, y0 = x1, y1
    return 1.0


def _transposed(op: str, args: list) -> bool:
    if op == "aten.convolution.default":
        return len(args) > 6 and bool(args[6])
    return "conv_transpose" in op


def _transposed_macs(out_shape, op: str, args: list, w: list) -> int:
    """A transposed conv's work: each input element meets Cout/groups outputs per kernel tap
    (it was counted as its output's size: a ConvTranspose2d(64, 32, 3, stride 2) planned at a
    twentieth of its time). The input's size from the output's, as torch computes it."""
    dims = len(w) - 2

    def per_dim(i: int, default: int) -> list[int]:
        v = args[i] if len(args) > i else default
        v = [v] if isinstance(v, int) else list(v) or [default]
        return v * dims if len(v) == 1 else v

    if op == "aten.convolution.default":  # (.., stride, padding, dilation, transposed, out_pad)
        stride, pad, dil, out_pad = per_dim(3, 1), per_dim(4, 0), per_dim(5, 1), per_dim(7, 0)
    else:  # conv_transpose: (.., stride, padding, output_padding, groups, dilation)
        stride, pad, out_pad, dil = per_dim(3, 1), per_dim(4, 0), per_dim(5, 0), per_dim(7, 1)
    spatial = out_shape[-dims:]
    in_sizes = [
        (o - 1 + 2 * p - d * (k - 1) - q) // s + 1
        for o, s, p, d, q, k in zip(spatial, stride, pad, dil, out_pad, w[2:])
    ]
    return max(0, w[0] * math.prod(in_sizes) * w[1] * math.prod(w[2:]))
