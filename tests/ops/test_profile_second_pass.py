"""``tidegate profile``'s second pass: the plan the new profile makes is measured when the first
pass (which ran the previous profile's plans) did not measure it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from burst.graph import build_graph
from burst.planning import load_profile, model_plan
from ops.profile_calibrate import PlanRuns, run_plans
from ops.profile_second_pass import scratch_service, second_pass
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo
from vmpool.zoo import example_input


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    export_zoo("mlp", repo)
    artifact = load_artifact(repo, "mlp")
    return repo, artifact, build_graph(artifact.load_program(), "mlp")


def _says_split(profile):
    """``profile`` with the model's nodes 100x dearer: its 2-worker latency plan splits."""
    times = profile.models["mlp"]
    return profile.with_model(
        "mlp", replace(times, node_ms={n: ms * 100 for n, ms in times.node_ms.items()})
    )


async def test_a_split_the_first_pass_did_not_run_is_measured_and_fitted(mlp):
    repo, artifact, graph = mlp
    x = example_input("mlp").numpy()
    lines: list[str] = []
    say = lines.append
    previous = load_profile()  # plans no split for this model at 2 workers
    async with scratch_service(previous, artifact, repo, [2], 512) as svc:
        first = await run_plans(svc, artifact, graph, x, [(1, "none"), (2, "auto")], 2, say)
    assert [p.split for p, _ in first] == ["none"]  # x2 planned no split: the none plan
    fitted = _says_split(previous)  # what the first pass's fit says now
    async with scratch_service(fitted, artifact, repo, [2], 512, start=False) as svc:
        new = model_plan(graph, artifact.config, svc.plan_request(2, 1, "auto"), fitted)
    assert any(s.split != "serial" for s in new.stages)

    refit = await second_pass(previous, fitted, graph, artifact, repo, first, ([2], 2, 512), x, say)

    out = "\n".join(lines)
    assert "second pass: the new profile plans x2" in out and "fitting again" in out
    assert "plan auto x2: warm p50" in out  # the new plan ran
    # its measured/predicted error is in the refit: the split was measured, not assumed
    assert 2 in refit.models["mlp"].plan_error and 1 in refit.models["mlp"].plan_error


async def test_no_second_pass_when_the_new_profile_plans_what_was_measured(mlp):
    repo, artifact, graph = mlp
    fitted = load_profile()
    async with scratch_service(fitted, artifact, repo, [2], 512, start=False) as svc:
        plan = model_plan(graph, artifact.config, svc.plan_request(2, 1, "auto"), fitted)
    lines: list[str] = []
    runs = PlanRuns([(plan, [])], [], {})
    got = await second_pass(
        fitted, fitted, graph, artifact, repo, runs, ([2], 2, 512), None, lines.append
    )
    assert got is fitted and lines == [
        "second pass: not needed (the new profile plans what was measured)"
    ]
