"""What a conv's call on a tile costs whatever the tile's share: the ``tile_call`` of "graph"
split pricing (``policies.perf``), measured.

Every distinct conv of the given models is timed whole (its own padding, as one function runs
it) and on row tiles of about a half and a quarter of its output, as a spatial leg runs them
(``burst.execute``: a crop of the input, padded explicitly at the border, a conv of padding 0),
on packed weights, one thread, thread CPU time (what a loaded host inflates least). A tile's
time is read as ``a + share * (whole - a)``: ``a`` (the call's part that does not shrink) is
fitted per conv, then over every conv by least squares as ms per MB of weights and ms per MB
of activations (in + out). 2 Dec 2026, 02:15-02:27 UTC, load 11, the 68 convs of resnet50,
vgg16, mobilenet_v2 and resnet18 (``--models``): 0.169 ms/weight MB + 0.082 ms/MB, rms 0.31 ms
(tiles ran 0.9-1.5x their share of the whole at a half, up to 2x at a quarter).

    flock /work/coord/bench.lock .venv/bin/python ops/bench/plan7_tiles.py --repo R
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SHARES = (0.5, 0.25)


def _cpu_ms(fn, reps: int) -> float:
    for _ in range(3):
        fn()  # packs the weights for this shape, warms the allocator
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        times.append((time.thread_time() - t0) * 1e3)
    return float(np.median(times))


def conv_shapes(repo: Path, models: list[str]) -> list[dict]:
    """The distinct convs of the models' graphs: channels, kernel, stride, padding, groups
    and input size (square kernels and strides, as the zoo's)."""
    from burst.graph import build_graph, node_inputs
    from burst.partition import window_spec
    from vmpool.artifact import load_artifact

    seen: dict[tuple, dict] = {}
    for model in models:
        graph = build_graph(load_artifact(repo, model).load_program(), model)
        shapes = {n.name: n.shape for n in graph.nodes}
        shapes.update(zip(graph.inputs, graph.input_shapes))
        for node in graph.nodes:
            spec = window_spec(graph, node)
            if not spec or spec.get("kind") != "conv":
                continue
            cin, h, w = shapes[node_inputs(node)[0]][1:]
            cout, oh, ow = node.shape[1:]
            groups = max(1, round(cin * cout * spec["k"][0] ** 2 * oh * ow / max(node.macs, 1)))
            key = (cin, cout, spec["k"][0], spec["s"][0], spec["p"][0], h, w, groups)
            seen.setdefault(key, dict(zip(("cin", "cout", "k", "s", "p", "h", "w", "groups"), key)))
    return list(seen.values())


def time_conv(c: dict, reps: int) -> dict:
    from burst.packed_conv import conv2d, packing

    k, s, p, g = c["k"], c["s"], c["p"], c["groups"]
    weight = torch.randn(c["cout"], c["cin"] // g, k, k)
    x = torch.randn(1, c["cin"], c["h"], c["w"]).contiguous(memory_format=torch.channels_last)
    out_rows = (c["h"] + 2 * p - k) // s + 1
    row = dict(c, out_rows=out_rows, weight_mb=weight.numel() * 4 / 1e6)
    row["act_mb"] = (x.numel() + c["cout"] * out_rows * ((c["w"] + 2 * p - k) // s + 1)) * 4 / 1e6
    with torch.no_grad(), packing(True):
        row["whole_ms"] = _cpu_ms(lambda: conv2d(x, weight, None, s, p, 1, g), reps)
        row["tiles"] = []
        for share in SHARES:
            rows = max(1, round(out_rows * share) + 1)  # a tile's rows, a halo row with it
            crop = x[:, :, : min(c["h"], (rows - 1) * s + k - p), :]
            ms = _cpu_ms(
                lambda crop=crop: conv2d(F.pad(crop, (p, p, p, 0)), weight, None, s, 0, 1, g), reps
            )
            row["tiles"].append((rows / out_rows, ms))
    return row


def fit(rows: list[dict]) -> tuple[float, float, float]:
    """(ms per weight MB, ms per activation MB, rms ms) of the calls' unshrinking part."""
    a = [np.mean([(ms - sh * r["whole_ms"]) / (1 - sh) for sh, ms in r["tiles"]]) for r in rows]
    x = np.array([[r["weight_mb"], r["act_mb"]] for r in rows])
    coef, *_ = np.linalg.lstsq(x, np.array(a), rcond=None)
    rms = float(np.sqrt(np.mean((x @ coef - np.array(a)) ** 2)))
    return float(coef[0]), float(coef[1]), rms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="the zoo models, exported")
    ap.add_argument("--models", default="resnet50,vgg16,mobilenet_v2,resnet18")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/plan7_tiles.json")
    args = ap.parse_args()
    import os

    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    rows = []
    for c in conv_shapes(args.repo, args.models.split(",")):
        rows.append(r := time_conv(c, args.reps))
        tiles = " ".join(
            f"{sh:.2f}: {ms:.3f} ({ms / (sh * r['whole_ms']):.2f}x)" for sh, ms in r["tiles"]
        )
        print(f"{c['cin']:>5} {c['cout']:>5} k{c['k']} s{c['s']} {c['h']:>4}  whole {r['whole_ms']:.3f}  {tiles}", flush=True)  # fmt: skip
    per_weight_mb, per_mb, rms = fit(rows)
    print(f"tile call: {per_weight_mb:.3f} ms/weight MB + {per_mb:.3f} ms/MB (rms {rms:.2f} ms); "
          f"load {load0:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"load": load0, "rows": rows, "fit": [per_weight_mb, per_mb, rms]}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
