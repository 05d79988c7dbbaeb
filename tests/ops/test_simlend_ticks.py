"""``ops/bench/sim_vs_real_ticks.py`` on a run of several models (``sim_vs_real.py --models``):
it simulates the run on the shared fleet, as the bench does, and records its ticks; it replayed
one model only (``--model`` of the run's first, the other model's requests dropped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.bench.sim_vs_real_ticks import full_record, replay, scaler_of, simulated_records
from vmpool.export import export_zoo

MODELS = {"delay": (20.0, 3.0), "delay_b": (60.0, 4.0)}
BUNDLED = Path(__file__).resolve().parents[2] / "policies/data/reference_profile.json"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A sim_vs_real run's directory as ``--models delay=20/3,delay_b=60/4`` leaves it (the
    parts the tick tool reads): the models, the trace, the configs and the bench's arguments."""
    work = tmp_path_factory.mktemp("simlend_ticks")
    for name, (delay_ms, per_ms) in MODELS.items():
        options = {"delay_ms": delay_ms, "per_item_ms": per_ms}
        export_zoo("delay", work / "repo", artifact_name=name, options=options)
    lines = ["timestamp_s,model,tenant"]
    for i in range(600):  # 30 s at 20 req/s, the models in turn
        lines.append(f"{i * 0.05:.3f},{'delay' if i % 2 else 'delay_b'},t")
    (work / "trace.csv").write_text("\n".join(lines) + "\n")
    config = (
        'routing_policy = "threshold"\n[autoscaling]\npolicy = "target"\n'
        "min_replicas = 1\nmax_replicas = 3\n[vm]\nboot_delay_s = 10.0\n"
    )
    (work / "tidegate.toml").write_text(config)
    (work / "sim.toml").write_text(config + "\n[simulate]\nvm_boot_s = 10.0\n")
    spec = ",".join(f"{n}={d:g}/{p:g}" for n, (d, p) in MODELS.items())
    args = {"model": "delay", "slo_ms": 250.0, "policy": "threshold", "models": spec}
    (work / "bench_args.json").write_text(json.dumps(args))
    return work


def test_a_run_of_two_models_is_simulated_on_the_shared_fleet(run_dir):
    records = simulated_records(run_dir, None)
    assert len(records) >= 30  # a tick a second over the trace
    busy = [r for r in records if r["arrival_rate_per_s"] > 0]
    assert busy and all(set(r["models"]) == set(MODELS) for r in busy)
    # both models' requests reach the one scaler: the fleet's rate is their sum (20 req/s)
    assert max(r["arrival_rate_per_s"] for r in busy) == pytest.approx(20.0, abs=0.5)
    for name in MODELS:
        assert max(r["models"][name]["rate_short"] for r in busy) == pytest.approx(10.0, abs=0.5)
    # what one model's simulation records: its requests only
    one = simulated_records(run_dir, "delay")
    assert max(r["arrival_rate_per_s"] for r in one) == pytest.approx(10.0, abs=0.5)


def test_full_records_replay_through_the_runs_scaler(run_dir):
    records = simulated_records(run_dir, None)
    assert all(full_record(r) for r in records)
    assert replay(records, scaler_of(run_dir)) == []  # a fresh scaler decides as recorded


def test_a_models_weight_read_comes_from_its_plan_and_store(run_dir):
    """The read a switch of model costs (``ops/sim/lend.py``): the production target reads a
    zoo model's weights from S3 (the delay model has none: S3's fixed 20 ms), whatever the
    artifact's name; a profile measured here reads the plan's from the dev host's directory
    store (0.74 ms fixed, 0.94 ms per MB), not a cold start's 1 s."""
    from dataclasses import replace

    from ops.sim.lend import weight_read_ms
    from ops.sim.profile_adapter import from_repo
    from policies.profile import ModelTimes, Profile, Quantiles

    repo = run_dir / "repo"
    target = from_repo(repo, "delay_b")
    assert weight_read_ms(target) == pytest.approx(20.0)
    bundled = Profile.from_json(json.loads(BUNDLED.read_text()))
    curve = {b: Quantiles.from_samples([60.0 + 4.0 * b]) for b in (1, 2, 4, 8)}
    times = ModelTimes(input_shape=(1, 16), node_ms={"delay": 0.2}, vm_service_ms=curve)
    measured = replace(bundled.with_model("delay_b", times), measured_models=("delay_b",))
    path = repo / "delay_b" / "profile.json"
    path.write_text(json.dumps(measured.to_json()))
    try:
        got = from_repo(repo, "delay_b")
    finally:
        path.unlink()
    assert got.fn_weight_read_ms == pytest.approx(bundled.transfer["dir"].fixed_ms)
    assert weight_read_ms(got) < got.cold_start_ms / 100
