"""How session 26 (plan7) moved the bundled reference profile to "graph" split pricing.

``Profile.split_pricing`` "graph" (``policies.perf``): every leg of a split stage pays each
node's dispatch whole, and a spatial leg its weight reads, with the rest of the stage's time by
its share of the MACs. A model measured by ``tidegate profile`` carries split calibrations
fitted against the old ("share") pricing, so each is rescaled by how much the new pricing moves
the model of the plan it was measured on (``ops/bench/burst25plan_reference.py``'s
``rescale_splits``): the plans those runs measured predict as before, and a model without
runs of its own is priced from its graph. The rescaled scales show how much of the measured
tiling cost the graph explains (1.0: all of it).

    .venv/bin/python ops/bench/plan7_reference.py --repo /tmp/pred22/models [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from burst.planning import REFERENCE_PROFILE  # noqa: E402
from ops.bench.burst25plan_reference import rescale_splits, write_reference  # noqa: E402
from policies.profile import GRAPH_PRICING, KindFit, Profile  # noqa: E402

# a conv's call on a tile, whatever its share: 0.169 ms per MB of weights + 0.082 ms per MB of
# activations (in + out), least squares over the 68 conv shapes of resnet50, vgg16,
# mobilenet_v2 and resnet18 timed whole and on half and quarter row tiles as legs run them
# (ops/bench/plan7_tiles.py, 2 Dec 02:15-02:27 UTC, thread CPU time, load 11; rms 0.31 ms; a
# first run over resnet50's and vgg16's 32 convs read 0.212 + 0.113)
TILE_CALL = KindFit(ms_per_mb=0.082, ms_per_weight_mb=0.169)

NOTE = "; split pricing graph: ops/bench/plan7_reference.py (2 Dec 2026)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="the zoo models, exported")
    ap.add_argument("--write", action="store_true", help="write the reference profile")
    ap.add_argument(
        "--base",
        type=Path,
        default=REFERENCE_PROFILE,
        help="the profile to start from (default the bundled one; `git show 9d3f7fe:policies/"
        "data/reference_profile.json` is it before this edit)",
    )
    args = ap.parse_args()
    raw = json.loads(args.base.read_text())
    old = Profile.from_json(raw)
    if old.split_pricing == GRAPH_PRICING:
        print("the reference profile already prices splits from the graph")
        return 0
    graph = dataclasses.replace(old, split_pricing=GRAPH_PRICING, tile_call=TILE_CALL)
    new = rescale_splits(old, graph, args.repo, print)
    for label, prof in (("share", old), ("graph", new)):
        scales = [v for t in prof.models.values() for v in t.calibration.split.values()]
        if scales:
            dev = [abs(v - 1.0) for v in scales]
            print(f"{label}: split scales {min(scales):.3f}-{max(scales):.3f}, median "
                  f"{statistics.median(scales):.3f}, mean |scale - 1| {statistics.mean(dev):.3f}")  # fmt: skip
    raw["split_pricing"] = GRAPH_PRICING
    raw["tile_call"] = TILE_CALL.to_json()
    write_reference(raw, new, NOTE, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
