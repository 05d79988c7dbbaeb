"""`tidegate simulate` on random small CSV traces (1-3 tenants, seconds to minutes, fixed seeds),
checked by what must hold on any trace (issue 10, item 2): nothing lost, tenants that add up to
the totals to the cent, costs that match the hours and GB-s at the profile's prices, p50 <= p99,
cold starts <= invocations, vm-peak at 100 % where the SLO can be met, burst-only without a VM,
the same JSON byte for byte from the same input, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ops.cli import main
from ops.traces import read_trace
from policies.costs import PriceTable

PRICES = PriceTable()
CENT = 0.005  # "to the cent": within half of one


def random_csv(path: Path, seed: int) -> Path:
    """A CSV ``timestamp_s,model,tenant`` of 1-3 tenants over 2 s to 3 minutes, rows shuffled."""
    rng = np.random.default_rng(seed)
    span = float(rng.choice([2.0, 20.0, 180.0]))
    n = int(rng.integers(1, 400))
    t = rng.uniform(0, span, n)
    if seed % 3 == 1:  # a burst at one instant
        t[: n // 2] = float(rng.uniform(0, span))
    tenants = [f"t{k}" for k in rng.integers(0, int(rng.integers(1, 4)), n)]
    rows = [f"{x:.6f},resnet18,{k}" for x, k in zip(t, tenants, strict=True)]
    path.write_text("timestamp_s,model,tenant\n" + "\n".join(rows) + "\n")
    return path


def simulate_json(tmp_path: Path, *args: str, name: str = "out.json") -> dict:
    out = tmp_path / name
    assert main(["simulate", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def check_run(s: dict, requests: int) -> None:
    """The invariants of one run's summary (a preset's; the optimum's where they apply)."""
    who = s["policy"]
    assert s["requests"] == requests, who
    assert s["requests_vm"] + s["requests_burst"] + s["rejected"] == requests, who
    tenants = s["tenants"].values()
    assert sum(t["requests"] for t in tenants) == requests, who
    assert abs(sum(t["cost_usd"] for t in tenants) - s["cost_usd"]) < CENT / 100, who
    assert 0.0 <= s["slo_attainment"] <= 1.0, who
    assert s["cost_usd"] >= 0 and all(t["cost_usd"] >= 0 for t in tenants), who
    if s["p50_ms"] is not None:
        assert s["p50_ms"] <= s["p99_ms"], who
    if who == "optimum":
        return
    parts = ("vm_usd", "function_compute_usd", "function_requests_usd", "store_usd")
    assert sum(s[k] for k in parts) + s["warm_functions_usd"] == pytest.approx(s["cost_usd"])
    assert s["vm_usd"] == pytest.approx(s["vm_billed_hours"] * PRICES.vm_usd_per_hour), who
    assert s["vm_hours"] <= s["vm_billed_hours"] + 1e-12, who
    gb_s_usd = s["function_gb_s"] * PRICES.fn_usd_per_gb_s
    assert s["function_compute_usd"] == pytest.approx(gb_s_usd), who
    invocations = s["function_requests_usd"] / PRICES.fn_usd_per_request
    assert s["cold_starts"] <= invocations + 1e-6, who
    assert s["requests_burst"] <= invocations + 1e-6, who
    met = sum(t["slo_attainment"] * t["requests"] for t in tenants)
    assert met / requests == pytest.approx(s["slo_attainment"]), who


@pytest.mark.parametrize("seed", range(6))
def test_every_run_of_a_random_trace_adds_up(tmp_path, seed):
    trace = random_csv(tmp_path / f"r{seed}.csv", seed)
    n = len(read_trace(trace))
    doc = simulate_json(tmp_path, "--trace", str(trace), "--seed", str(seed))
    assert {"requests", "slo_attainment", "p50_ms", "p99_ms", "cost_usd", "vm_hours"} <= set(doc)
    assert {"function_gb_s", "cold_starts", "tenants"} <= set(doc)
    for run in doc["runs"]:
        check_run(run, n)
    runs = {r["policy"]: r for r in doc["runs"]}
    burst = runs["burst-only"]
    assert burst["vm_hours"] == burst["vm_usd"] == burst["requests_vm"] == 0
    assert burst["peak_vm_replicas"] == 0


@pytest.mark.parametrize("seed", range(3))
def test_vm_peak_meets_the_slo_on_spread_traffic(tmp_path, seed):
    """Arrivals spread within each second (no instant burst beyond what its VMs can serve
    within the SLO): the VMs for the peak second answer every request in time."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, float(rng.integers(5, 120)), int(rng.integers(1, 3000))))
    path = tmp_path / "spread.csv"
    path.write_text("".join(f"{x:.6f},resnet18\n" for x in t))
    doc = simulate_json(tmp_path, "--trace", str(path), "--policy", "vm-peak")
    assert doc["slo_attainment"] == 1.0 and doc["rejected"] == 0


def test_the_same_input_gives_the_same_json_byte_for_byte(tmp_path):
    """The wall time each run took was in the JSON (wall_s), so two runs' files differed."""
    trace = str(random_csv(tmp_path / "r.csv", 4))
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    for out in (a, b):
        assert main(["simulate", "--trace", trace, "--seed", "7", "--json", str(out)]) == 0
    assert a.read_bytes() == b.read_bytes()


def azure2019(path: Path, counts: list[int]) -> Path:
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(map(str, range(1, 1441)))
    row = ["o", "a", "f", "http"] + [str(c) for c in counts] + ["0"] * (1440 - len(counts))
    path.write_text(header + "\n" + ",".join(row) + "\n")
    return path


def test_another_seed_moves_a_per_minute_traces_arrivals_not_its_counts(tmp_path):
    counts = [30, 0, 7, 120, 1]
    path = azure2019(tmp_path / "d01.csv", counts)
    one, two = (read_trace(path, seed=s) for s in (1, 2))
    assert not np.array_equal(one.arrivals_s, two.arrivals_s)
    for trace in (one, two):  # (the day's minutes from its start: not rebased)
        per_minute = np.bincount((trace.arrivals_s // 60).astype(int), minlength=len(counts))
        assert per_minute.tolist() == counts
    a, b = (
        simulate_json(tmp_path, "--trace", str(path), "--seed", s, "--policy", "vm-peak", name=s)
        for s in ("1", "2")
    )
    assert a["requests"] == b["requests"] == sum(counts)


BAD = {
    "empty.csv": ("timestamp_s,model\n", "no requests"),
    "negative.csv": ("-1.0,resnet18\n1.0,resnet18\n", "negative"),
    "nan.csv": ("nan,resnet18\n1.0,resnet18\n", "not a finite number"),
    "inf.csv": ("0.5,resnet18\ninf,resnet18\n", "not a finite number"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_trace_is_one_line_and_a_failure(tmp_path, capsys, name):
    text, said = BAD[name]
    path = tmp_path / name
    path.write_text(text)
    assert main(["simulate", "--trace", str(path), "--policy", "vm-peak"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0] and "Traceback" not in err[0]


def test_unsorted_timestamps_are_sorted_as_docs_ops_says(tmp_path):
    """docs/ops.md, Traces: a CSV's rows in any order (sorted on reading)."""
    rows = tmp_path / "unsorted.csv"
    rows.write_text("2.0,resnet18\n0.0,resnet18\n1.0,resnet18\n")
    ordered = tmp_path / "sorted.csv"
    ordered.write_text("0.0,resnet18\n1.0,resnet18\n2.0,resnet18\n")
    a = simulate_json(tmp_path, "--trace", str(rows), "--policy", "slo-aware", name="a")
    b = simulate_json(tmp_path, "--trace", str(ordered), "--policy", "slo-aware", name="b")
    for doc in (a, b):
        doc.pop("trace")
        doc.pop("runs", None)
    assert a == b


@pytest.mark.parametrize("slo", ["0", "-5", "nan", "inf"])
def test_a_bad_slo_is_one_line_and_a_failure(tmp_path, capsys, slo):
    path = tmp_path / "ok.csv"
    path.write_text("0.0,resnet18\n1.0,resnet18\n")
    assert main(["simulate", "--trace", str(path), f"--slo-ms={slo}"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tidegate simulate: error: --slo-ms must be a finite number > 0"]


def test_a_profile_without_the_traces_model_is_one_line(tmp_path, capsys):
    bundled = Path(__file__).resolve().parents[2] / "policies/data/reference_profile.json"
    doc = json.loads(bundled.read_text())
    doc["models"] = {"mlp": doc["models"]["mlp"]}
    doc["measured_models"] = ["mlp"]
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(doc))
    path = tmp_path / "t.csv"
    path.write_text("0.0,resnet18\n1.0,resnet18\n")
    args = ["simulate", "--trace", str(path), "--profile", str(profile)]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no measurements for model 'resnet18'" in err[0]
