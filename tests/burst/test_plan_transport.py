"""Per-stage transports in plans: the planner's choice reaches the plan's stages, survives its
JSON, and a plan without it hashes as it did before."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

from burst.plan import Plan, PlanError, make_plan  # noqa: E402
from burst.plan_schema import stage_transport  # noqa: E402
from burst.planning import PlanRequest, choose_stages, load_profile  # noqa: E402
from policies.profile import ComputeFit  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def graph():
    model = sm.build("grouped")
    x = torch.randn(2, *sm.input_shape("grouped"))
    return build(sm.export(model, x))


def build(program):
    from burst.graph import build_graph

    return build_graph(program, "grouped")


def _slow_compute():
    """The reference profile on a core 1000x slower: splitting pays even for this small model."""
    base = load_profile()
    rates = {f: r * 1000 for f, r in base.compute.ms_per_gmac.items()}
    return dataclasses.replace(base, compute=ComputeFit(rates, base.compute.fixed_ms_per_node))


def _plan(graph, transport: str, store_kind: str) -> Plan:
    request = PlanRequest(workers=3, transport=transport, store_kind=store_kind)
    choices = choose_stages(graph, request, _slow_compute())
    return make_plan(graph, workers=3, transport=transport, choices=choices)


def test_per_stage_plans_carry_the_planners_choice(graph):
    plan = _plan(graph, "per-stage", "sqs")
    split = [s for s in plan.stages if s.workers]
    assert split, "the planner splits something"
    assert all(s.transport in ("inline", "store", "queue") for s in split)
    assert all(s.transport is None for s in plan.stages if not s.workers)
    again = Plan.from_json(plan.to_json())
    assert [s.transport for s in again.stages] == [s.transport for s in plan.stages]
    # without queues, the queue is never chosen
    plain = _plan(graph, "per-stage", "s3")
    assert all(s.transport in ("inline", "store") for s in plain.stages if s.workers)


def test_a_plan_with_one_transport_is_unchanged(graph):
    plan = _plan(graph, "auto", "dir")
    raw = json.loads(plan.to_json())
    assert all("transport" not in s for s in raw["stages"])  # the same content, the same hash
    assert {stage_transport(plan, s) for s in plan.stages} == {"auto"}


def test_a_bad_stage_transport_is_refused(graph):
    plan = _plan(graph, "per-stage", "sqs")
    raw = json.loads(plan.to_json())
    stage = next(s for s in raw["stages"] if s["workers"])
    stage["transport"] = "carrier-pigeon"
    with pytest.raises(PlanError, match="transport must be one of"):
        Plan.from_dict(raw)


def test_a_forced_split_gets_a_transport_per_stage(graph):
    from types import SimpleNamespace

    from burst.planning import model_plan

    config = SimpleNamespace(
        inputs=[SimpleNamespace(name="x")], outputs=[SimpleNamespace(name="linear")]
    )
    request = PlanRequest(workers=2, split="spatial", transport="per-stage", store_kind="sqs")
    plan = model_plan(graph, config, request, _slow_compute())
    split = [s for s in plan.stages if s.workers]
    assert split and all(s.transport in ("inline", "store", "queue") for s in split)
    # the same split on one transport keeps the stages, without a per-stage field
    fixed = model_plan(
        graph, config, dataclasses.replace(request, transport="queue"), load_profile()
    )
    assert [s.nodes for s in fixed.stages] == [s.nodes for s in plan.stages]
    assert all(s.transport is None for s in fixed.stages)
