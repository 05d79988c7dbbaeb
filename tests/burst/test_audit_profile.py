"""A hand-edited or corrupted REPO/NAME/profile.json is one clear line, never a traceback or a
plan at NaN ms; and a profile written while the gateway runs is the one its plans use, as
``tidegate plan`` uses it (issue 7's audit)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json

import pytest

from burst.planning import REFERENCE_PROFILE
from burst.service import BurstService
from ops.cli import main
from policies.profile import Profile, ProfileError
from vmpool.export import export_zoo

REF = json.loads(REFERENCE_PROFILE.read_text())


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    export_zoo("mlp", root)
    return root


def _edited(edit) -> dict:
    raw = copy.deepcopy(REF)
    edit(raw)
    return raw


def _set(path: str, value):
    def edit(raw):
        *parents, last = path.split(".")
        for p in parents:
            raw = raw[p]
        raw[last] = value

    return edit


HOSTILE = {
    # each once planned at NaN/inf ms, said "no plan fits", or raised a traceback
    "nan": _set("compute.fixed_ms_per_node", float("nan")),
    "inf": _set("transfer.dir.ms_per_mb", float("inf")),
    "overflowing": _set("compute.fixed_ms_per_node", 1e308),
    "negative time": _set("models.mlp.node_ms.linear", -4.0),
    "no fan-out measured": _set("invoke_warm_ms", {}),
    "no dir transfer fit": _set("transfer", {"inline": {"fixed_ms": 0.0, "ms_per_mb": 1.0}}),
    "zero cores": _set("cores", 0),
    "zero slowdown": _set("split_slowdown.spatial.2", 0),
    "zero calibration": _set("models.mlp.calibration.compute", 0),
    "zero-sized input": _set("models.mlp.input_shape", [1, 0]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_profile_is_refused_by_name(case):
    with pytest.raises(ProfileError):
        Profile.from_json(_edited(HOSTILE[case]))


def test_the_reference_profile_still_reads():
    assert Profile.from_json(REF).models


def _plan(repo, *args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["plan", "mlp", "--repo", str(repo), "--workers", "2", "--json", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", ["nan", "no fan-out measured", "no dir transfer fit"])
def test_plan_with_a_hostile_profile_in_the_repository_is_one_line(repo, case):
    path = repo / "mlp" / "profile.json"
    path.write_text(json.dumps(_edited(HOSTILE[case])))
    try:
        for split in ("auto", "output"):
            code, out, err = _plan(repo, "--split", split)
            assert code == 2 and not out, out
            assert len(err.strip().splitlines()) == 1 and "cannot read profile" in err, err
    finally:
        path.unlink()


def _slow_compute(raw):
    """A profile in which compute is 50x the reference's: splitting the mlp pays."""
    raw["compute"]["ms_per_gmac"] = {k: v * 50 for k, v in raw["compute"]["ms_per_gmac"].items()}
    kinds = raw["compute"].get("kinds", {})  # the bytes-aware fit too (policies/compute_fit.py)
    raw["compute"]["kinds"] = {k: {t: v * 50 for t, v in f.items()} for k, f in kinds.items()}
    raw["models"] = {}


def test_the_gateway_plans_with_a_profile_written_while_it_runs(repo, tmp_path):
    """The burst service kept the plans it made before ``tidegate profile`` wrote
    REPO/NAME/profile.json; ``tidegate plan`` printed another plan for the same arguments."""
    svc = BurstService(
        repo, platform={"kind": "local"}, store={"kind": "dir", "root": str(tmp_path / "o")}
    )
    before = asyncio.run(svc.plan_for("mlp", 2, 1))
    code, out, _ = _plan(repo)
    assert code == 0 and json.loads(out)["plan_id"] == before.plan_id and before.workers == 1
    path = repo / "mlp" / "profile.json"
    path.write_text(json.dumps(_edited(_slow_compute)))
    try:
        code, out, _ = _plan(repo)
        printed = json.loads(out)
        assert code == 0 and printed["workers"] == 2  # the profile changed the plan
        served = asyncio.run(svc.plan_for("mlp", 2, 1))
        assert served.plan_id == printed["plan_id"]
    finally:
        path.unlink()
    assert asyncio.run(svc.plan_for("mlp", 2, 1)).plan_id == before.plan_id
