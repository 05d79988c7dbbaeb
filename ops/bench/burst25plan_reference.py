"""How session 25 (burst25plan) updated the bundled reference profile, reproducibly.

1. ``transfer.dir``: the burst service keeps tensors in flight on /dev/shm, but the profile's
   line was timed on a disk-backed /tmp (0.46 ms + 3.08 ms/MB). The new line is fitted to the
   rounds the service itself ran on a quiet host (session 24, load 0.8,
   ``/work/coord/s24/burst_scaling_quiet.log``): median per round, the master's transfers
   1.3 ms (ResNet-50, (in + out) / 2 = 0.60 MB a leg) and 1.0 ms (VGG-11, 0.28 MB), as the
   model reads them (fixed + slope x (in + out) / 2): 0.74 ms + 0.94 ms/MB. Its slope matches
   the process CPU time of send + receive on /dev/shm (0.91 ms/MB, 1 Dec 22:48, load 10;
   /tmp: 2.79, three times that).
2. Every model's split calibration (measured / modelled wall of its split stages per fan-out)
   is rescaled by how much the new line moves the model of the plan it was measured on
   (its latency plan there), so the plans those runs measured predict as before: the
   calibration was fitted against the old line.
3. ResNet-50's compute and split scales are fitted again (``policies.calibration``'s
   ``fit_compute`` / ``fit_split``) on the quiet plan_accuracy run of session 24 (1 Dec
   21:50, load 1.0; ``/work/coord/s24/plan_accuracy_quiet.log``): one function 94.0 ms,
   its 2-worker latency plan 88.4 ms (and 87.1 ms as the x4 row, the same plan), at 1024 MB.
   The old scales had it at 96.5 and 81.4 ms: a 1.19x split measured at 1.06x.

    .venv/bin/python ops/bench/burst25plan_reference.py --repo /tmp/pred22/models [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from burst.planning import REFERENCE_PROFILE, PlanRequest, model_plan, predict_plan  # noqa: E402
from burst.service_plans import load_graph  # noqa: E402
from policies.calibration import Calibration, PlanRun, fit_compute, fit_split  # noqa: E402
from policies.profile import Profile, TransferFit  # noqa: E402

DIR_LINE = TransferFit(0.74, 0.94)
MEMORY_MB = 2048  # the reference's models were profiled at 2048 MB
# (workers, measured warm p50 ms) of ResNet-50's latency plans, session 24 quiet, 1024 MB
RESNET50_RUNS = ((1, 94.0), (2, 88.4), (2, 87.1))
RESNET50_MB = 1024
NOTE = (
    "; dir transfer (on /dev/shm) and split calibrations: ops/bench/burst25plan_reference.py"
    " (1 Dec 2026)"
)


def _split_mean(graph, plan, request, profile) -> float:
    pred = predict_plan(graph, plan, request, profile)
    return sum(e.mean_ms for s, e in zip(plan.stages, pred.stages) if s.split != "serial")


def rescale_splits(old: Profile, new: Profile, repo: Path, say) -> Profile:
    for name, times in sorted(old.models.items()):
        if not times.calibration.split:
            continue
        graph, config = load_graph(repo, name)
        split = {}
        for k, scale in sorted(times.calibration.split.items()):
            request = PlanRequest(workers=k, memory_mb=MEMORY_MB)
            plan = model_plan(graph, config, request, old)
            before, after = (_split_mean(graph, plan, request, p) for p in (old, new))
            split[k] = scale * before / after if after > 0 else scale
            say(f"{name} x{k}: split stages {before:.1f} -> {after:.1f} ms; scale "
                f"{scale:.4f} -> {split[k]:.4f}")  # fmt: skip
        cal = dataclasses.replace(times.calibration, split=split)
        new = new.with_model(name, dataclasses.replace(times, calibration=cal))
    return new


def refit_resnet50(old: Profile, profile: Profile, repo: Path, say) -> Profile:
    """``profile`` with ResNet-50's scales fitted on the plans session 24 measured (``old``'s
    latency plans), predicted by ``profile``."""
    graph, config = load_graph(repo, "resnet50")
    times = profile.models["resnet50"]
    bare = dataclasses.replace(times.calibration, compute=1.0, split={})

    def runs(cal: Calibration) -> list[PlanRun]:
        p = profile.with_model("resnet50", dataclasses.replace(times, calibration=cal))
        out = []
        for k, measured in RESNET50_RUNS:
            request = PlanRequest(workers=k, memory_mb=RESNET50_MB)
            plan = model_plan(graph, config, request, old)  # the plan that was measured
            pred = predict_plan(graph, plan, request, p)
            parts = list(zip(plan.stages, pred.stages))
            serial = sum(e.mean_ms for s, e in parts if s.split == "serial")
            split = sum(e.mean_ms for s, e in parts if s.split != "serial")
            out.append(PlanRun(k, measured, pred.p50_ms, serial, split, True))
        return out

    compute = fit_compute(runs(bare))
    split = fit_split(runs(dataclasses.replace(bare, compute=compute)))
    cal = dataclasses.replace(bare, compute=compute, split=split)
    say(f"resnet50: compute {times.calibration.compute:.4f} -> {compute:.4f}; split "
        f"{times.calibration.split} -> {split}")  # fmt: skip
    return profile.with_model("resnet50", dataclasses.replace(times, calibration=cal))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="the zoo models, exported")
    ap.add_argument("--write", action="store_true", help="write the reference profile")
    args = ap.parse_args()
    raw = json.loads(REFERENCE_PROFILE.read_text())
    old = Profile.from_json(raw)
    new = dataclasses.replace(old, transfer={**old.transfer, "dir": DIR_LINE})
    new = rescale_splits(old, new, args.repo, print)
    new = refit_resnet50(old, new, args.repo, print)
    # only what changed, written into the file as it was (its other figures untouched)
    raw["transfer"]["dir"] = new.to_json()["transfer"]["dir"]
    write_reference(raw, new, NOTE, args.write)
    return 0


def write_reference(raw: dict, new: Profile, note: str, write: bool) -> None:
    """``new``'s calibrations and ``note`` into the reference profile as it was read (``raw``:
    its other figures untouched), written when ``write`` (else a dry run)."""
    if note not in raw["source"]:
        raw["source"] += note
    for name, times in new.models.items():
        raw["models"][name]["calibration"] = times.calibration.to_json()
    if write:
        REFERENCE_PROFILE.write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
        print(f"wrote {REFERENCE_PROFILE}")


if __name__ == "__main__":
    sys.exit(main())
