"""``tidegate profile --compute-only`` writes the compute fit it measured (``compute.kinds``),
as a full run does: it timed the probe layers and then kept the kinds the profile came with
(none, for a profile from before the bytes-aware fit), so unmeasured nodes stayed priced by
MACs alone."""

from __future__ import annotations

import json

import pytest

from ops.cli import main
from policies.profile import Profile
from vmpool.export import export_zoo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    export_zoo("resnet18", root, size=(32, 32), max_batch_size=2)
    return root


def test_compute_only_writes_the_compute_fit(repo, tmp_path):
    from burst.planning import load_profile

    raw = load_profile().to_json()
    raw["compute"].pop("kinds")  # a profile from before the bytes-aware fit
    out = tmp_path / "profile.json"
    out.write_text(json.dumps(raw))
    args = ["--compute-only", "--reps", "2", "--vm-batches", "1", "--out", str(out)]
    assert main(["profile", "resnet18", "--repo", str(repo), *args]) == 0
    written = json.loads(out.read_text())
    kinds = written["compute"].get("kinds", {})
    # the probes cover what resnet18 lacks: SiLU, concats, attention
    assert {"conv", "linear", "copy", "attention", "transcendental"} <= set(kinds)
    fit = Profile.from_json(written).compute
    assert fit.kinds["conv"].ms_per_gmac > 0
    assert len(written["models"]["resnet18"]["node_ms"]) > 50
