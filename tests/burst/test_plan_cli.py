"""Plans as JSON (round trip, rejection of bad plans) and the ``tidegate plan`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from burst.graph import build_graph
from burst.plan import PLAN_VERSION, Plan, PlanError, make_plan
from ops.cli import main
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    export_zoo("resnet18", root, size=(64, 64), max_batch_size=4)
    export_zoo("mlp", root)
    return root


@pytest.fixture(scope="module")
def graph(repo):
    return build_graph(load_artifact(repo, "resnet18").load_program(), "resnet18")


def test_plan_json_round_trip(graph):
    plan = make_plan(graph, workers=4, split="auto", memory_mb=2048, batch=2)
    again = Plan.from_json(plan.to_json())
    assert again.to_dict() == plan.to_dict()
    assert again.plan_id == plan.plan_id and len(plan.plan_id) == 16
    assert again.input_shapes == [[2, 3, 64, 64]] and again.memory_mb == 2048
    # the id is a content hash: another plan, another id
    assert make_plan(graph, workers=2, batch=2).plan_id != plan.plan_id
    assert make_plan(graph, workers=4, memory_mb=2048, batch=2).plan_id == plan.plan_id


def test_workers_one_is_a_valid_plan(graph):
    plan = make_plan(graph, workers=1, split="spatial")
    assert all(s.workers in (0, 1) for s in plan.stages)
    assert any(s.split == "spatial" for s in plan.stages)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.update(plan_version=99), "unsupported plan_version 99"),
        (lambda d: d.pop("stages"), "missing field 'stages'"),
        (lambda d: d["stages"][0].update(split="diagonal"), "split must be"),
        (lambda d: d["stages"][0].update(nodes=[]), "non-empty node list"),
        (lambda d: d.update(workers=7), "plan_id does not match"),
    ],
)
def test_malformed_plans_are_rejected_clearly(graph, mutate, message):
    raw = json.loads(make_plan(graph, workers=2).to_json())
    mutate(raw)
    with pytest.raises(PlanError, match=message):
        Plan.from_json(json.dumps(raw))


def test_garbage_is_not_a_plan():
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.from_json("{nope")
    with pytest.raises(PlanError, match="JSON object"):
        Plan.from_json("[1, 2]")


def test_bad_arguments_are_rejected(graph):
    for kwargs, message in [
        ({"workers": 0}, "workers"),
        ({"workers": 2, "split": "x"}, "split"),
        ({"workers": 2, "transport": "pigeon"}, "transport"),
        ({"workers": 2, "batch": 0}, "batch"),
    ]:
        with pytest.raises(PlanError, match=message):
            make_plan(graph, **kwargs)


def test_cli_prints_stages_and_totals(repo, capsys):
    assert (
        main(["plan", "resnet18", "--repo", str(repo), "--workers", "4", "--split", "spatial"]) == 0
    )
    out = capsys.readouterr().out
    assert "spatial" in out and "2x2" in out and "totals:" in out and "worker invocations" in out


def test_cli_json_is_a_loadable_plan(repo, capsys):
    assert (
        main(
            [
                "plan",
                "mlp",
                "--repo",
                str(repo),
                "--workers",
                "3",
                "--split",
                "output",
                "--json",
                "--batch",
                "2",
            ]
        )
        == 0
    )
    plan = Plan.from_json(capsys.readouterr().out)
    assert plan.plan_version == PLAN_VERSION and plan.batch == 2
    heads = [s for s in plan.stages if s.split == "output"]
    assert heads and all(s.workers == 3 for s in heads)


def test_cli_unknown_model_is_one_line_exit_2(repo, capsys):
    assert main(["plan", "nope", "--repo", str(repo), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tidegate plan: error:") and "nope" in err and "\n" not in err


def test_cli_json_names_the_models_tensors_and_functions(repo, capsys):
    """Issue 7: the plan named inputs/outputs by graph names (x, linear) and the functions
    tidegate-master instead of the README's tidegate-master-{MB}mb."""
    assert (
        main(
            [
                "plan",
                "resnet18",
                "--repo",
                str(repo),
                "--workers",
                "2",
                "--memory-mb",
                "768",
                "--json",
            ]
        )
        == 0
    )
    raw = json.loads(capsys.readouterr().out)
    assert raw["inputs"] == ["input"] and raw["outputs"] == ["output"]
    assert raw["master_function"] == "tidegate-master-768mb"
    assert raw["worker_function"] == "tidegate-worker-768mb"
    assert raw["predicted_p99_ms"] >= raw["predicted_p50_ms"] > 0 and raw["cost_usd"] > 0
    assert len(raw["stage_predictions"]) == len(raw["stages"])


def test_cli_cost_objective_needs_an_slo_and_meets_it(repo, capsys):
    assert main(["plan", "resnet18", "--repo", str(repo), "--objective", "cost"]) == 2
    assert "--slo-ms" in capsys.readouterr().err
    assert main(["plan", "resnet18", "--repo", str(repo), "--workers", "4", "--json"]) == 0
    fastest = json.loads(capsys.readouterr().out)
    slo = fastest["predicted_p99_ms"] * 3
    assert (
        main(
            [
                "plan",
                "resnet18",
                "--repo",
                str(repo),
                "--workers",
                "4",
                "--json",
                "--objective",
                "cost",
                "--slo-ms",
                str(slo),
            ]
        )
        == 0
    )
    cheapest = json.loads(capsys.readouterr().out)
    assert cheapest["predicted_p99_ms"] <= slo
    assert cheapest["cost_usd"] <= fastest["cost_usd"]
    assert (
        main(["plan", "resnet18", "--repo", str(repo), "--objective", "cost", "--slo-ms", "0.5"])
        == 2
    )
    err = capsys.readouterr().err
    assert "no plan meets" in err
    # the refusal names the least SLO a plan meets (rounded up): given, it is met
    least = err.split("the fastest plan's is ")[1].split(" ms")[0]
    cmd = ["plan", "resnet18", "--repo", str(repo), "--objective", "cost", "--json"]
    assert main([*cmd, "--slo-ms", least]) == 0
    assert json.loads(capsys.readouterr().out)["predicted_p99_ms"] <= float(least)


def test_gateway_runs_the_plan_the_cli_prints(repo, tmp_path, capsys):
    """X-Tidegate-Workers: N uses exactly `tidegate plan --workers N` (same config)."""
    import asyncio

    from burst.service import BurstService
    from gateway.settings import Settings

    config = tmp_path / "tidegate.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[burst]\nmemory_mb = 640\n')
    for workers in (1, 3):
        assert (
            main(
                [
                    "plan",
                    "resnet18",
                    "--repo",
                    str(repo),
                    "--workers",
                    str(workers),
                    "--config",
                    str(config),
                    "--json",
                ]
            )
            == 0
        )
        printed = Plan.from_json(capsys.readouterr().out)
        svc = BurstService.from_settings(Settings.load(config, repo=str(repo)))
        served = asyncio.run(svc.plan_for("resnet18", workers, 1))
        assert served.plan_id == printed.plan_id and served.to_dict() == printed.to_dict()
        assert printed.memory_mb == 640


def test_cli_says_when_no_split_pays_for_the_workers_asked(repo, capsys):
    # mlp is far too small for a fork-join to pay: the plan (the gateway's too) is one function
    assert main(["plan", "mlp", "--repo", str(repo), "--workers", "4"]) == 0
    out = capsys.readouterr().out
    assert "workers 1  split none" in out and "asked for 4 workers; no split pays" in out
    assert main(["plan", "mlp", "--repo", str(repo), "--workers", "4", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["workers"] == 1 and answer["workers_asked"] == 4


def test_cli_piped_into_a_reader_that_closes_early_ends_quietly(repo):
    """``tidegate plan ... | head -1``: the reader goes away before the plan is printed."""
    read, write = os.pipe()
    os.close(read)  # a reader that is already gone
    done = subprocess.run(
        [sys.executable, "-m", "ops", "plan", "resnet18", "--repo", str(repo), "--workers", "4"],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    os.close(write)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_cli_refuses_more_workers_than_a_request_may_ask(repo, capsys):
    """The gateway answers X-Tidegate-Workers above burst.max_workers 400; the CLI, which
    prints the plan such a request runs, says so at once (100000 planned for minutes)."""
    assert main(["plan", "mlp", "--repo", str(repo), "--workers", "100000"]) == 2
    err = capsys.readouterr().err
    assert "above burst.max_workers (16)" in err and len(err.strip().splitlines()) == 1
