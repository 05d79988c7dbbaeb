"""Recurrent models' compute, predicted by the bundled profile against one thread measured.

LSTM and GRU models (``tests/burst/audit21_models.Recurrent``: two layers over [B, T, 6], a
linear head) of two hidden sizes and two sequence lengths at batch 1 and 8: each recurrent
node's time measured on one thread (thread CPU time, ``ops.profiler.node_times_ms``) against
the reference profile's price now (steps, weights read every step, the ``recurrent`` kinds)
and before pred22 (one read of the weights, priced as a linear layer, no steps).

    flock /work/coord/bench.lock python ops/bench/pred22_recurrent_accuracy.py [--reps 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests/burst"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    import audit21_models as am
    import torch

    from burst.graph import build_graph
    from burst.graph_macs import RECURRENT_OPS
    from burst.node_work import node_works
    from burst.planning import load_profile
    from ops import profiler

    torch.set_num_threads(1)
    fit = load_profile().compute
    old = dataclasses.replace(  # before: no recurrent kinds (priced as linears), no steps
        fit, kinds={k: v for k, v in fit.kinds.items() if k not in ("recurrent", "lstm", "gru")}
    )
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':<6} {'hidden':>6} {'T':>3} {'b':>2} {'measured':>9} {'before':>8} {'now':>8}")
    for name in ("lstm", "gru"):
        for hidden in (64, 256):
            for steps in (9, 64):
                module = am.build(name, hidden=hidden)
                program = am.export(module, [torch.randn(2, steps, 6)])
                graph = build_graph(program, name)
                (node,) = [n for n in graph.nodes if n.op in RECURRENT_OPS]
                for b in (1, 8):
                    x = {graph.inputs[0]: torch.randn(b, steps, 6).numpy()}
                    ms = profiler.node_times_ms(graph, program, x, args.reps)[node.name]
                    (w,) = [w for w in node_works(graph, b) if w.name == node.name]
                    now = fit.ms(w.op, w.macs, w.act_bytes, w.weight_bytes, w.steps, w.reread_bytes)
                    was = old.ms(w.op, w.macs, w.act_bytes, node.weight_bytes)
                    print(
                        f"{name:<6} {hidden:>6} {steps:>3} {b:>2} {ms:>9.3f} {was:>8.3f} "
                        f"{now:>8.3f}  (x{was / ms:.2f} -> x{now / ms:.2f})"
                    )
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
