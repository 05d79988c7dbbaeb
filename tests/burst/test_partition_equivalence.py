"""Partitioned execution equals the unsplit model, for every zoo model and the awkward cases.

Each worker runs with only the weights ``burst.weights.worker_weights`` gives it, so an output
split that needed more than its slice would fail here.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

from burst.execute import run_plan_local  # noqa: E402
from burst.graph import build_graph, program_weights  # noqa: E402
from burst.plan import make_plan, weight_budget_bytes  # noqa: E402
from burst.weights import worker_weights  # noqa: E402
from vmpool import zoo  # noqa: E402

torch.set_num_threads(1)
TOLERANCE = 1e-5  # relative to max|y|
WORST: dict[str, float] = {}
_MODELS: dict[str, tuple] = {}

ZOO_SIZES = {
    "resnet18": (224, 224),
    "resnet34": (64, 64),
    "resnet50": (64, 64),
    "wide_resnet50_2": (64, 64),
    "vgg11": (64, 64),
    "vgg16": (64, 64),
    "mobilenet_v2": (96, 96),
    "mlp": None,
}


def _model(name: str):
    if name not in _MODELS:
        _MODELS.clear()  # keep one big model in memory at a time
        if name in sm.SPECIAL:
            module = sm.build(name)
            x = torch.randn(2, *sm.input_shape(name), generator=torch.Generator().manual_seed(3))
        else:
            module = zoo.build(name)
            x = zoo.example_input(name, batch=2, size=ZOO_SIZES[name], seed=3)
        program = sm.export(module, x)
        with torch.no_grad():
            ref = module(x)
        graph = build_graph(program, name)
        _MODELS[name] = (graph, program_weights(program), x, ref)
    return _MODELS[name]


def _check(name: str, split: str, workers: int, batch: int = 2):
    graph, weights, x, ref = _model(name)
    x, ref = x[:batch], ref[:batch]
    plan = make_plan(graph, workers=workers, split=split, batch=batch)
    with torch.no_grad():
        y = run_plan_local(
            graph, plan, weights, [x], slicer=lambda st, j: worker_weights(graph, st, j, weights)
        )[0]
    assert y.shape == ref.shape
    diff = (y - ref).abs().max().item() / ref.abs().max().item()
    WORST[name] = max(WORST.get(name, 0.0), diff)
    assert diff <= TOLERANCE, f"{name} {split} x{workers}: relative diff {diff:.2e}"
    return plan


@pytest.mark.parametrize("name", list(ZOO_SIZES))
def test_zoo_model_partitioned_equals_full(name):
    splits_seen = set()
    for split in ("spatial", "output"):
        for workers in (1, 2, 4, 8):
            plan = _check(name, split, workers)
            splits_seen |= {s.split for s in plan.stages}
    _check(name, "auto", 4)
    _check(name, "spatial", 4, batch=1)
    expected = {"output"} if name == "mlp" else {"spatial", "output"}
    assert expected <= splits_seen


@pytest.mark.parametrize("name", list(sm.SPECIAL))
def test_special_model_partitioned_equals_full(name):
    for split in ("spatial", "output", "auto"):
        for workers in (1, 2, 3, 8):
            _check(name, split, workers)
    _check(name, "spatial", 4, batch=1)


def test_spatial_plans_really_tile_the_awkward_layers():
    graph, _, _, _ = _model("poolzoo")
    plan = make_plan(graph, workers=4, split="spatial", batch=2)
    tiled = {
        graph.node(n).op
        for s in plan.stages
        if s.split == "spatial" and s.workers == 4
        for n in s.nodes
    }
    assert {"aten.avg_pool2d.default", "aten.max_pool2d.default", "aten.conv2d.default"} <= tiled
    graph, _, _, _ = _model("grouped")
    plan = make_plan(graph, workers=4, split="spatial", batch=2)
    tiled = {
        graph.node(n).op
        for s in plan.stages
        if s.split == "spatial" and s.workers == 4
        for n in s.nodes
    }
    assert {"aten.cat.default", "aten.add.Tensor", "aten.batch_norm.default"} <= tiled


def test_uneven_adaptive_pool_runs_on_the_master():
    graph, _, _, _ = _model("adaptive")
    plan = make_plan(graph, workers=4, split="spatial", batch=2)
    where = {
        graph.node(n).shape[2]: s.split
        for s in plan.stages
        for n in s.nodes
        if "adaptive" in graph.node(n).op
    }
    assert where == {8: "spatial", 3: "serial"}


def test_output_split_gives_each_worker_one_nth_of_the_weights():
    graph, _, _, _ = _model("vgg16")
    plan = make_plan(graph, workers=8, split="output", batch=1)
    fc = [
        s
        for s in plan.stages
        if s.split == "output" and graph.node(s.nodes[0]).op == "aten.linear.default"
    ]
    assert len(fc) == 3  # all three classifier layers are split 8 ways
    for st in fc:
        group = sum(graph.node(n).weight_bytes for n in st.nodes)
        assert st.workers == 8
        assert max(st.weight_bytes) <= group / 8 * 1.01
        assert sum(st.weight_bytes) == group


def test_planned_vgg16_fits_512_mb_functions_by_splitting_its_classifier():
    graph, _, _, _ = _model("vgg16")
    # 8 workers: with 4, the master's quarter of fc6 plus the convs overflows a 512 MB function
    # (measured: a 4-way plan's master peaked at 522 MB and was killed)
    plan = make_plan(graph, workers=8, memory_mb=512, batch=1)
    fc1 = next(s for s in plan.stages if graph.node(s.nodes[0]).op == "aten.linear.default")
    assert fc1.split == "output" and fc1.workers >= 2  # 411 MB of weights: must be split
    assert plan.totals["fits_memory"]
    assert plan.totals["master_weight_bytes"] <= weight_budget_bytes(512)
    assert plan.totals["max_worker_weight_bytes"] <= weight_budget_bytes(512)


@pytest.mark.parametrize("name", ["resnet50", "vgg11", "grouped", "poolzoo"])
def test_stages_leaning_on_the_master_equal_the_full_model(name):
    """Leg 0 given more rows or channels than an even share (the planner's lead variants,
    at their largest) still computes exactly the unsplit model."""
    from burst.candidates import forced_choices, lead_options

    graph, weights, x, ref = _model(name)
    leaned = 0
    for split in ("spatial", "output"):
        choices = []
        for c in forced_choices(graph, split, 2):
            if c.split.value == "spatial":
                size = graph.node(c.output).shape[2]
            elif c.split.value == "output":
                op = graph.node(c.nodes[0]).op
                size = graph.node(c.output).shape[1 if op != "aten.linear.default" else -1]
            else:
                choices.append(c)
                continue
            lead = max(lead_options(size, 2))
            leaned += lead > 0
            choices.append(dataclasses.replace(c, lead=lead))
        plan = make_plan(graph, workers=2, batch=2, choices=choices)
        with torch.no_grad():
            y = run_plan_local(
                graph,
                plan,
                weights,
                [x],
                slicer=lambda st, j: worker_weights(graph, st, j, weights),
            )[0]
        diff = (y - ref).abs().max().item() / ref.abs().max().item()
        WORST[name] = max(WORST.get(name, 0.0), diff)
        assert diff <= TOLERANCE, f"{name} {split} leaning on the master: {diff:.2e}"
    assert leaned


def test_zz_print_worst_diffs():
    print("\nworst relative diff per model:")
    for name, diff in sorted(WORST.items()):
        print(f"  {name:<18} {diff:.2e}")
    assert WORST and max(WORST.values()) <= TOLERANCE
