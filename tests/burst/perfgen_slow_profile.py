"""A profile under which the planner splits even a small model: for tests of what a split
answers (equal to the VM path's), not of whether a split pays. The bundled profile prices
small models honestly since its bytes-aware compute fit (policies/compute_fit.py), and a 3 ms
model stays in one function there, as it should."""

from __future__ import annotations

import json
from pathlib import Path

from burst.planning import REFERENCE_PROFILE


def write_slow_profile(repo: Path, model: str, scale: float = 50.0) -> None:
    """REPO/MODEL/profile.json: the bundled profile with every compute rate ``scale`` times
    and no measured models (each node priced by the fit)."""
    raw = json.loads(REFERENCE_PROFILE.read_text())
    compute = raw["compute"]
    compute["ms_per_gmac"] = {k: v * scale for k, v in compute["ms_per_gmac"].items()}
    kinds = compute.get("kinds", {})
    compute["kinds"] = {k: {t: v * scale for t, v in f.items()} for k, f in kinds.items()}
    raw["models"], raw["measured_models"] = {}, []
    (repo / model / "profile.json").write_text(json.dumps(raw))
