"""Recurrent layers of sizes the profile's probes do not have: predicted against one thread.

LSTM and GRU layers (one or two layers, one or two directions, 6 to 200 input features,
hidden 48 to 1024, 5 to 100 steps, batch 1 to 32): each recurrent node's time on one thread
(thread CPU time, ``ops.profiler.node_times_ms``, as ``tidegate profile`` times a model's
nodes) against the bundled profile's price (``burst.node_work`` + ``policies.compute_fit``).
None of these sizes is a probe's (``ops.perfgen_fit._RECURRENT_SIZES``). ``--out`` writes the
measured rows (tests/burst/data/burst24_recurrent_times.json holds one such run).

    flock /work/coord/bench.lock python ops/bench/burst24_recurrent.py [--reps 7] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# (kind, hidden, layers, steps, batch, features, bidirectional): the pred22 bench's models
# (6 features, 2 layers) and others
SIZES = (
    ("lstm", 64, 2, 9, 1, 6, False),
    ("lstm", 64, 2, 64, 8, 6, False),
    ("lstm", 256, 2, 9, 1, 6, False),
    ("lstm", 256, 2, 64, 1, 6, False),
    ("lstm", 256, 2, 64, 8, 6, False),
    ("lstm", 48, 1, 100, 1, 200, False),
    ("lstm", 160, 3, 20, 2, 40, False),
    ("lstm", 200, 1, 30, 32, 16, True),
    ("lstm", 448, 1, 25, 1, 64, False),
    ("lstm", 1024, 1, 5, 1, 10, False),
    ("lstm", 128, 2, 50, 4, 128, True),
    ("gru", 64, 2, 9, 1, 6, False),
    ("gru", 256, 2, 64, 8, 6, False),
    ("gru", 48, 1, 100, 1, 200, False),
    ("gru", 160, 3, 20, 2, 40, False),
    ("gru", 200, 1, 30, 32, 16, True),
    ("gru", 448, 1, 25, 1, 64, False),
    ("gru", 1024, 1, 5, 1, 10, False),
)


def measure(size: tuple, reps: int) -> tuple[float, float]:
    """(measured ms, predicted ms) of the recurrent node of one size."""
    import torch
    from torch import nn

    from burst.graph import build_graph
    from burst.graph_macs import RECURRENT_OPS
    from burst.node_work import node_works
    from burst.planning import load_profile
    from ops import profiler

    kind, hidden, layers, steps, batch, features, bidir = size

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            rnn = nn.LSTM if kind == "lstm" else nn.GRU
            self.rnn = rnn(features, hidden, layers, batch_first=True, bidirectional=bidir)

        def forward(self, x):
            return self.rnn(x)[0]

    torch.manual_seed(0)
    x = torch.randn(batch, steps, features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        program = torch.export.export(Seq().eval(), (x,))
    graph = build_graph(program, kind)
    (node,) = [n for n in graph.nodes if n.op in RECURRENT_OPS]
    ms = profiler.node_times_ms(graph, program, {graph.inputs[0]: x.numpy()}, reps)[node.name]
    (w,) = [w for w in node_works(graph, batch) if w.name == node.name]
    fit = load_profile().compute
    return ms, fit.ms(w.op, w.macs, w.act_bytes, w.weight_bytes, w.steps, w.reread_bytes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'kind':<5} {'H':>5} {'L':>2} {'T':>4} {'B':>3} {'F':>4} {'bi':>3} "
        f"{'measured':>9} {'predicted':>9} {'ratio':>6}"
    )
    rows, within = [], 0
    for size in SIZES:
        ms, pred = measure(size, args.reps)
        within += abs(pred / ms - 1) <= 0.25
        rows.append({"size": list(size), "measured_ms": round(ms, 4), "predicted_ms": pred})
        k, h, L, t, b, f, bi = size
        print(
            f"{k:<5} {h:>5} {L:>2} {t:>4} {b:>3} {f:>4} {'y' if bi else 'n':>3} "
            f"{ms:9.3f} {pred:9.3f} {pred / ms:6.2f}",
            flush=True,
        )
    print(f"within 25 %: {within} of {len(rows)}; load average now {os.getloadavg()[0]:.1f}")
    if args.out:
        args.out.write_text(json.dumps({"load": os.getloadavg()[0], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
