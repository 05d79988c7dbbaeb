"""The bytes-aware compute fit (``policies.compute_fit``): which measured nodes it is fitted
over, and the probe layers that cover what a model's own nodes do not.

A profile's node times come from the models it measured, and the zoo's are all CNNs and
batch-1 classifiers: no SiLU or GELU, no concat or upsampling, no attention, no linear over a
sequence of tokens (whose weights are read once for many rows, where a batch-1 classifier's
stream from memory: the same MACs, 25x apart). ``probe_rows`` times small layers of each of
those kinds, at several sizes, on one thread as ``tidegate profile`` times a model's nodes
(``ops.profiler.node_times_ms``, the same executor and packing), and ``fit_kinds`` fits every
op kind by non-negative least squares over the measured models' nodes and the probes'."""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np

from policies.compute_fit import KINDS, KindFit, fit_kind, op_kind, op_name

MIN_NODES = 3  # a kind measured on fewer nodes is priced as elementwise
# an op's own fit needs a node this big: the SE gates' sigmoids (16-96 elements, all fixed
# cost) fitted 100 ns an element, which a full-size sigmoid would have been priced at
MIN_OWN_MACS = 100_000


def graph_rows(graph, node_ms: dict[str, float], batch: int = 1) -> list[tuple[str, float, ...]]:
    """(op, MACs, activation bytes, weight bytes read, steps, re-read bytes, ms) of each
    measured node of ``graph`` (at batch 1, as a model's node times are measured; a probe's at
    its own)."""
    from burst.node_work import node_works

    return [
        (w.op, float(w.macs), float(w.act_bytes), float(w.weight_bytes), float(w.steps))
        + (float(w.reread_bytes), node_ms[w.name])
        for w in node_works(graph, batch)
        if w.name in node_ms and w.wait_ms == 0.0
    ]


def fit_kinds(rows) -> dict[str, KindFit]:
    """Per op kind, and per op, with at least ``MIN_NODES`` nodes (an op's own: one as big as
    ``MIN_OWN_MACS`` among them): its non-negative least-squares fit
    (``policies.compute_fit.fit_keys``)."""
    by_kind: dict[str, list] = defaultdict(list)
    for op, *row in rows:
        for key in {op_name(op), op_kind(op)}:  # (elementwise: a fallback to other kinds)
            by_kind[key].append(tuple(row))
    return {
        k: fit_kind(r)
        for k, r in sorted(by_kind.items())
        if len(r) >= MIN_NODES and (k in KINDS or max(x[0] for x in r) >= MIN_OWN_MACS)
    }


# (hidden, layers, steps, batch, input features): small to large, short to long, one sequence
# and several, narrow and wide inputs, so the fixed cost a step, the weights read every step,
# the weights read once a call (a second layer's input matrix is H x 4H) and the MACs (which
# grow with the batch and the input width where the rest does not) come apart. With every
# probe 32 features wide and one layer's input matrix small, the fit put an LSTM's per-step
# cost into its activation bytes and priced a 6-feature 2-layer model at 0.4-0.7x.
_RECURRENT_SIZES = (
    (16, 1, 8, 1, 32),
    (32, 2, 64, 1, 6),
    (64, 2, 32, 1, 32),
    (64, 1, 24, 8, 6),
    (96, 1, 128, 1, 32),
    (128, 1, 16, 1, 128),
    (128, 2, 48, 16, 6),
    (192, 2, 48, 1, 32),
    (256, 1, 32, 8, 32),
    (256, 2, 16, 1, 128),
    (320, 1, 24, 1, 6),
    (384, 1, 16, 4, 32),
    (512, 1, 8, 1, 32),
    (512, 2, 40, 1, 6),
    (640, 1, 16, 16, 64),
    (768, 1, 12, 1, 128),
)


def _probe_modules():
    """(name, module, one input) per probe: each kind the zoo lacks, at a few sizes."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Tokens(nn.Module):  # a pre-norm transformer block's layers on [1, T, D]
        def __init__(self, d: int, heads: int):
            super().__init__()
            self.ln, self.heads = nn.LayerNorm(d), heads
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln(x)).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
            s = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
            x = x + self.out(a) + s.transpose(1, 2).reshape(b, t, d)
            return x + self.fc2(F.gelu(self.fc1(self.ln(x))))

    class Pixels(nn.Module):  # memory-bound conv-net layers on [1, C, H, W]
        def __init__(self, c: int):
            super().__init__()
            self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
            self.dense = nn.Conv2d(c, c, 3, padding=1)
            self.narrow = nn.Conv2d(2 * c, 2, 1)
            self.up = nn.ConvTranspose2d(c, c // 2, 2, stride=2)
            self.bn, self.gn = nn.BatchNorm2d(c), nn.GroupNorm(4, c)
            self.fc = nn.Linear(c, 10)

        def forward(self, x):
            y = F.silu(self.bn(self.dw(x)))
            y = y * torch.sigmoid(F.adaptive_avg_pool2d(y, 1)) + torch.relu(self.dense(x))
            y = torch.tanh(self.gn(y)) * F.hardswish(y) + torch.sigmoid(y)
            cat = torch.cat([y, x], dim=1)
            z = self.narrow(F.max_pool2d(cat, 2)) + F.avg_pool2d(self.narrow(cat), 2)
            half = F.max_pool2d(y, 2)
            u = F.interpolate(half, scale_factor=2, mode="bilinear") + self.up(half).mean()
            w = F.interpolate(y, scale_factor=2, mode="nearest") + z.mean()
            return u.sum() + w.amax() + self.fc(y.mean(dim=(2, 3))).sum()

    out = []
    for d, t in ((64, 16), (128, 64), (192, 197), (384, 50)):
        out.append((f"tokens{d}x{t}", Tokens(d, max(1, d // 64)), torch.randn(1, t, d)))
    for c, hw in ((16, 112), (32, 56), (64, 28), (96, 56), (32, 160), (96, 112)):
        out.append((f"pixels{c}x{hw}", Pixels(c), torch.randn(1, c, hw, hw)))
    return out + _recurrent_probes()


def _recurrent_probes():
    """(name, module, input) per recurrent probe: LSTM, GRU and RNN at ``_RECURRENT_SIZES``."""
    import torch
    import torch.nn as nn

    class Sequence(nn.Module):  # a recurrent layer over [B, T, F]: its steps run in turn
        def __init__(self, rnn: type[nn.Module], hidden: int, layers: int, features: int):
            super().__init__()
            self.rnn = rnn(features, hidden, num_layers=layers, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    out = []
    # LSTM (oneDNN's kernel in torch on CPU) and GRU (a cell's kernels a step) cost 4-15 us a
    # step at any size, and read their hidden-to-hidden weights every step
    for rnn in (nn.LSTM, nn.GRU, nn.RNN):
        for hidden, layers, t, batch, features in _RECURRENT_SIZES:
            name = f"{rnn.__name__.lower()}{hidden}x{t}b{batch}f{features}l{layers}"
            module = Sequence(rnn, hidden, layers, features)
            out.append((name, module, torch.randn(batch, t, features)))
    return out


def probe_rows(reps: int, say=print) -> list[tuple[str, float, ...]]:
    """(op, MACs, activation bytes, weight bytes, steps, ms) of every probe layer's nodes, timed
    on one thread here (median of ``reps`` passes)."""
    from burst.graph import build_graph
    from ops import profiler
    from ops.probe_cache import exported

    rows: list = []
    for name, module, x in _probe_modules():
        program = exported(name, module, x, sys.modules[__name__])  # (this file's code: the key)
        graph = build_graph(program, name)
        ms = profiler.node_times_ms(graph, program, {graph.inputs[0]: x.numpy()}, reps)
        rows += graph_rows(graph, ms, x.shape[0])
    say(f"compute probes: {len(rows)} nodes, {sum(r[-1] for r in rows):.1f} ms on one thread")
    return rows


def sum_error(fit, rows) -> float:
    """(predicted - measured) / measured of the rows' total time under ``fit`` (a
    ``ComputeFit``)."""
    meas = float(np.sum([r[-1] for r in rows]))
    return (float(np.sum([fit.ms(*r[:-1]) for r in rows])) - meas) / meas
