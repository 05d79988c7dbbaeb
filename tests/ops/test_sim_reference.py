"""One reference for the simulator (issue 10): `simulate` uses the production target unless a
profile measured for the model being simulated says otherwise, never another model's numbers,
and says where every figure came from (the banner, `--json`'s `profile_sources`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ops.cli import main
from ops.sim import ProfileError, SimProfile, load_sim_profile
from ops.sim.profile_adapter import from_repo
from policies.profile import Profile, Quantiles
from vmpool.export import export_zoo

BUNDLED = Path(__file__).resolve().parents[2] / "policies/data/reference_profile.json"
TARGET = SimProfile.reference()
TRACE = "synth:steady:duration_s=120,rps=5"
SOURCES = {"profile", "vm_curve", "function_times", "cold_start", "vm_boot", "prices"}


def _scaled(times, factor: float):
    """``times`` with its VM service times scaled: what a fresh measurement of the model gives."""
    vm = {
        b: Quantiles(tuple(v * factor for v in q.values_ms)) for b, q in times.vm_service_ms.items()
    }
    return replace(times, vm_service_ms=vm, cold_start_ms={}, cold_billed_ms={})


def _written_for(model: str, path: Path) -> Profile:
    """A profile as `tidegate profile MODEL` writes it: the bundled profile's entries copied in,
    ``model``'s own measured (here: its VM times 1.5x the bundled ones, no cold start)."""
    bundled = Profile.from_json(json.loads(BUNDLED.read_text()))
    profile = replace(bundled, source=f"tidegate profile {model} (test)", measured_models=())
    profile = profile.with_model(model, _scaled(bundled.models[model], 1.5))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.to_json()))
    return Profile.from_json(json.loads(path.read_text()))  # (as written: rounded)


def _curve(profile: Profile, model: str):
    times = profile.models[model].vm_service_ms
    return tuple(sorted((b, q.median_ms) for b, q in times.items()))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sim_reference") / "repo"
    export_zoo("resnet18", root, size=(32, 32))
    return root


def _simulate(capsys, tmp_path, *extra: str, name: str = "out") -> tuple[dict, str]:
    out = tmp_path / f"{name}.json"
    args = ["simulate", "--trace", TRACE, "--policy", "all", "--json", str(out), *extra]
    assert main(args) == 0
    runs = {r["policy"]: r for r in json.loads(out.read_text())["runs"]}
    return runs, capsys.readouterr().err


def test_a_repo_without_a_profile_for_the_model_simulates_what_no_repo_does(repo, tmp_path, capsys):
    """Without REPO/resnet18/profile.json the VM curve, function times and cold start are the
    production target's, as without --repo (they were the bundled planner profile's: the dev
    host's 65 ms VM batch and 3 s cold start, ~75 ms p50 on VMs against 12 ms)."""
    got = from_repo(repo, "resnet18")
    assert got.vm_service_ms_by_batch == TARGET.vm_service_ms_by_batch
    assert (got.burst_p50_ms, got.burst_billed_ms) == (TARGET.burst_p50_ms, TARGET.burst_billed_ms)
    assert got.cold_start_ms == TARGET.cold_start_ms and not got.cold_start_quantiles_ms
    assert got.slo_ms == 300.0  # the repository's own config still sets the SLO and batching
    plain, _ = _simulate(capsys, tmp_path, name="plain")
    with_repo, err = _simulate(
        capsys, tmp_path, "--repo", str(repo), "--model", "resnet18", name="repo"
    )
    for policy in ("vm-peak", "burst-only"):
        assert with_repo[policy]["p50_ms"] == pytest.approx(plain[policy]["p50_ms"], rel=0.02)
    assert with_repo["vm-peak"]["cost_usd"] == pytest.approx(plain["vm-peak"]["cost_usd"])
    assert "nothing measured for resnet18" in err and "tidegate profile resnet18" in err


def test_a_profile_measured_for_mlp_carries_no_resnet18_numbers(repo, tmp_path, capsys):
    """`tidegate profile mlp` copies the bundled profile's resnet18 entry into its output: that
    is not a measurement of resnet18, in a simulation of resnet18 or of mlp."""
    path = tmp_path / "mlp_profile.json"
    written = _written_for("mlp", path)
    # a resnet18 trace with mlp's profile: refused, not simulated with the dev host's resnet18
    assert main(["simulate", "--trace", TRACE, "--profile", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no measurements for model 'resnet18'" in err and "it measured: mlp" in err
    # mlp: its own VM curve; its cold start is its profile's no-op round trip, not resnet18's
    mlp = load_sim_profile(path, "mlp")
    assert mlp.vm_service_ms_by_batch == _curve(written, "mlp")
    assert mlp.cold_start_ms == pytest.approx(written.invoke_cold_ms.median_ms)
    resnet18_cold = written.models["resnet18"].cold_start(1)
    assert resnet18_cold is not None and mlp.cold_start_ms < resnet18_cold[0].median_ms
    assert "no-op" in mlp.provenance["cold_start"] and "mlp" in mlp.provenance["vm_curve"]
    # the same file put where resnet18's profile goes: resnet18 still gets the target
    (repo / "resnet18" / "profile.json").write_text(path.read_text())
    try:
        r18 = from_repo(repo, "resnet18")
    finally:
        (repo / "resnet18" / "profile.json").unlink()
    assert r18.vm_service_ms_by_batch == TARGET.vm_service_ms_by_batch
    assert r18.cold_start_ms == TARGET.cold_start_ms
    assert "measured mlp, not resnet18" in r18.provenance["vm_curve"]


def test_a_profile_measured_for_the_model_replaces_what_it_measured(repo, tmp_path):
    """REPO/resnet18/profile.json measured for resnet18: its VM curve, and the gateway's own plan
    priced by it; the VM boot and prices stay the target's, and each says so."""
    path = repo / "resnet18" / "profile.json"
    written = _written_for("resnet18", path)
    try:
        got = from_repo(repo, "resnet18")
    finally:
        path.unlink()
    assert got.vm_service_ms_by_batch == _curve(written, "resnet18")
    assert got.vm_service_ms_by_batch != TARGET.vm_service_ms_by_batch
    assert got.burst_p50_ms != TARGET.burst_p50_ms  # the plan's prediction
    src = got.provenance
    assert str(path) in src["vm_curve"] and "measured for resnet18" in src["vm_curve"]
    assert "the gateway's plan of resnet18" in src["function_times"]
    assert src["vm_boot"] == TARGET.provenance["vm_boot"]
    assert src["prices"] == TARGET.provenance["prices"] and "PriceTable" in src["prices"]


def test_banner_and_json_name_where_each_figure_came_from(tmp_path, capsys):
    """Every group of figures has a source line in the banner and in `--json`'s
    `profile_sources`, every run's too; an override names itself as the source."""
    runs, err = _simulate(capsys, tmp_path)
    for run in runs.values():
        assert set(run["profile_sources"]) >= SOURCES
    top = json.loads((tmp_path / "out.json").read_text())
    assert top["profile_sources"]["vm_curve"].startswith("production target")
    for line in ("VM curve: production target", "function times: production target", "prices:"):
        assert line in err
    cfg = tmp_path / "serve.toml"
    cfg.write_text("[simulate]\ncold_start_ms = 2500\n")
    out = tmp_path / "one.json"
    args = ["simulate", "--trace", TRACE, "--policy", "burst-only", "--model", "mlp"]
    assert main([*args, "--config", str(cfg), "--vm-boot-s", "90", "--json", str(out)]) == 0
    src = json.loads(out.read_text())["profile_sources"]
    assert "cold_start_ms = 2500" in src["cold_start"] and str(cfg) in src["cold_start"]
    assert src["vm_boot"] == "--vm-boot-s 90"
    # no profile for mlp: the target is resnet18's, and the sources say so
    assert "resnet18's" in src["vm_curve"] and "nothing measured for mlp" in src["vm_curve"]
    err = capsys.readouterr().err
    assert "cold start: [simulate]" in err and "VM boot: --vm-boot-s 90" in err


def test_a_profile_without_the_model_is_refused_and_the_bundled_one_is_a_choice(tmp_path):
    """The bundled planner profile passed on purpose is measured (on the dev host) for every
    model it has; a profile with no entry for the model is refused."""
    dev = load_sim_profile(BUNDLED, "resnet18")
    bundled = Profile.from_json(json.loads(BUNDLED.read_text()))
    assert dev.vm_service_ms_by_batch == _curve(bundled, "resnet18")
    assert str(BUNDLED) in dev.provenance["vm_curve"]
    with pytest.raises(ProfileError, match="no measurements for model 'nosuch'"):
        load_sim_profile(BUNDLED, "nosuch")
