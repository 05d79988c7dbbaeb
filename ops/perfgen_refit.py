"""Refit a profile's compute section (``compute.kinds``: the bytes-aware fit) from the node
times it holds, plus the probe layers timed here and now (``ops.perfgen_fit``). How the
bundled reference profile's was made, reproducibly:

    python -m ops.perfgen_refit policies/data/reference_profile.json --reps 8 --write

It exports every measured zoo model into a scratch repository (seeded weights: node times
do not depend on them), builds its graph for each node's op, MACs and bytes, fits every op
kind by non-negative least squares over those nodes and the probes', prints each kind's
coefficients and each model's total against the fit (and left out of it), and with
``--write`` replaces the profile's ``compute.kinds`` only (the MACs-only fit and everything
else stay as measured). Under ``flock /work/coord/bench.lock``: the probes are timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def zoo_rows(raw: dict, repo: Path) -> dict[str, list]:
    """Per measured model of the profile: its nodes' (op, MACs, bytes, weight bytes, ms)."""
    from burst.graph import build_graph
    from ops.perfgen_fit import graph_rows
    from vmpool.artifact import load_artifact
    from vmpool.export import export_zoo

    rows = {}
    for model in raw.get("measured_models", []):
        times = raw["models"][model]
        if not (repo / model / "model.pt2").is_file():
            size = tuple(times["input_shape"][2:]) if len(times["input_shape"]) == 4 else None
            export_zoo(model, repo, size=size)
        graph = build_graph(load_artifact(repo, model).load_program(), model)
        rows[model] = graph_rows(graph, times["node_ms"])
    return rows


def report(rows: dict[str, list], probes: list, say=print) -> dict:
    """The fit over every model's nodes and the probes', with each model's total against it
    and against a fit without that model (leave-one-out)."""
    from ops.perfgen_fit import fit_kinds, sum_error
    from policies.compute_fit import ComputeFit

    everything = [r for rs in rows.values() for r in rs] + probes
    kinds = fit_kinds(everything)
    for k, f in kinds.items():
        say(
            f"  {k:<15} {f.fixed_ms:7.4f} ms + {f.ms_per_gmac:9.2f} ms/GMAC + "
            f"{f.ms_per_mb:6.4f} ms/MB + {f.ms_per_weight_mb:6.4f} ms/weight MB + "
            f"{f.ms_per_step:6.4f} ms/step + {f.ms_per_reread_mb:6.4f} ms/re-read MB"
        )
    fit = ComputeFit({}, 0.0, kinds)
    for model, rs in rows.items():
        rest = [r for m, other in rows.items() if m != model for r in other] + probes
        left_out = ComputeFit({}, 0.0, fit_kinds(rest))
        say(
            f"  {model:<16} {sum(r[-1] for r in rs):8.2f} ms measured; fit "
            f"{sum_error(fit, rs):+.0%}, left out of it "
            f"{sum_error(left_out, rs):+.0%}"
        )
    return kinds


def main(argv=None) -> int:
    import torch

    from ops.perfgen_fit import probe_rows
    from policies.compute_fit import KindFit

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--reps", type=int, default=8, help="passes each probe node is timed")
    ap.add_argument("--repo", type=Path, help="a repository with the zoo models (else scratch)")
    ap.add_argument("--write", action="store_true", help="write compute.kinds into PROFILE")
    ap.add_argument(
        "--only",
        help="comma-separated kinds and ops to write (recurrent,lstm,gru,rnn_tanh); the "
        "profile's other kinds stay as they were fitted (on a quieter host)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    raw = json.loads(args.profile.read_text())
    with tempfile.TemporaryDirectory(prefix="tidegate-refit-") as tmp:
        rows = zoo_rows(raw, args.repo or Path(tmp))
    kinds = fitted = report(rows, probe_rows(args.reps))
    if args.only:
        only = set(args.only.split(","))
        if only - set(kinds):
            print(f"--only: no fit for {sorted(only - set(kinds))}", file=sys.stderr)
            return 2
        kinds = {k: KindFit.from_json(v) for k, v in raw["compute"].get("kinds", {}).items()}
        kinds.update({k: f for k, f in fitted.items() if k in only})
    if args.write:
        raw["compute"]["kinds"] = {k: f.to_json() for k, f in sorted(kinds.items())}
        args.profile.write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
        print(f"wrote compute.kinds ({len(kinds)} kinds) into {args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
