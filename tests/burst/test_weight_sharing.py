"""Plans that run the same thing share one identity, and weights are cached by what they hold:
alternating two kinds of request for one model must not reload its weights on every request
(a 2048 MB VGG-11 master reloaded 531 MB each time: 464-536 ms instead of 163-170 ms)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import special_models as sm  # noqa: E402

from burst.graph import build_graph  # noqa: E402
from burst.plan import Split, StageChoice, make_plan  # noqa: E402
from burst.runtime import reset_cache, run_master  # noqa: E402
from burst.store.local_dir import LocalDirStore  # noqa: E402
from burst.tensors import encode_inline  # noqa: E402
from burst.weights import prepare_plan  # noqa: E402

torch.set_num_threads(1)


class _Mlp(torch.nn.Module):
    """~6 MB of weights: large beside the cache's ~1 MB per plan's graph."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(512, 1024)
        self.b = torch.nn.Linear(1024, 1024)
        self.c = torch.nn.Linear(1024, 10)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.fixture(scope="module")
def mlp6():
    torch.manual_seed(0)
    model = _Mlp().eval()
    x = torch.randn(2, 512, generator=torch.Generator().manual_seed(1))
    program = sm.export(model, x)
    return program, build_graph(program, "mlp6"), x


def _serial(graph, packed: bool):
    """The whole model on the master, as the planner writes it when splitting does not pay."""
    return [StageChoice(Split.SERIAL, tuple(n.name for n in graph.nodes), packed=packed)]


def test_a_plan_with_no_split_stage_is_the_none_plan(mlp6):
    _, graph, _ = mlp6
    none = make_plan(graph, batch=2, workers=1, split="none")
    for workers in (1, 2, 4):
        asked = make_plan(
            graph, batch=2, workers=workers, split="auto", choices=_serial(graph, True)
        )
        assert asked.plan_id == none.plan_id and asked.workers == 1 and asked.split == "none"
    split = make_plan(graph, batch=2, workers=2, split="output")
    assert split.plan_id != none.plan_id and split.workers == 2


def _one_leg_split(graph):
    """A plan with split stages whose one leg the master runs itself (its slices are a blob
    of their own): no worker invocations, so only the master's cache is in play."""
    plan = make_plan(graph, batch=2, workers=1, split="output")
    assert any(s.split == "output" for s in plan.stages)
    return plan


async def _alternate(program, graph, x, store, plans, rounds: int = 2) -> list[int]:
    for p in plans:
        await prepare_plan(program, p, store, graph=graph)
    loads = []
    for r in range(rounds):
        for i, p in enumerate(plans):
            event = {"plan_id": p.plan_id, "request_id": f"r{r}-{i}", "inputs": [encode_inline(x)]}
            result = await run_master(event, None, store)
            loads.append(result["report"]["weights_loaded"])
    return loads


async def test_plans_holding_the_same_weights_share_one_cached_copy(mlp6, tmp_path):
    """Two serial plans that differ (packed convs or not) but hold the same tensors: the
    master loads them once, and a budget for one copy evicts nothing."""
    program, graph, x = mlp6
    packed = make_plan(graph, batch=2, workers=1, split="none", choices=_serial(graph, True))
    plain = make_plan(graph, batch=2, workers=1, split="none", choices=_serial(graph, False))
    assert packed.plan_id != plain.plan_id
    whole = packed.totals["master_weight_bytes"]
    cache = reset_cache(budget_bytes=int(whole * 1.5) + (4 << 20))  # one copy, not two
    loads = await _alternate(program, graph, x, LocalDirStore(tmp_path), [packed, plain])
    assert loads == [1, 0, 0, 0]
    assert not cache.evictions


async def test_a_split_plan_keeps_the_whole_model_cached_when_both_fit(mlp6, tmp_path):
    program, graph, x = mlp6
    whole = make_plan(graph, batch=2, workers=1, split="none")
    split = _one_leg_split(graph)
    cache = reset_cache(budget_bytes=64 << 20)
    loads = await _alternate(program, graph, x, LocalDirStore(tmp_path), [whole, split])
    # the split plan's master loads its own blob and its leg's slices once
    assert loads[2:] == [0, 0] and loads[0] == 1
    assert not cache.evictions


async def test_when_both_do_not_fit_the_log_says_which_plan_evicted_which(mlp6, tmp_path, caplog):
    program, graph, x = mlp6
    whole = make_plan(graph, batch=2, workers=1, split="none")
    split = _one_leg_split(graph)
    reset_cache(budget_bytes=int(whole.totals["master_weight_bytes"] * 1.2) + (2 << 20))
    with caplog.at_level(logging.WARNING, logger="burst.weights"):
        loads = await _alternate(program, graph, x, LocalDirStore(tmp_path), [whole, split])
    assert loads[2] == 1  # memory does not allow both: the whole model is read again
    lines = [r.getMessage() for r in caplog.records if "evicts" in r.getMessage()]
    assert any(
        line.startswith(f"weight cache: plan {whole.plan_id} master")
        and f"evicts plan {split.plan_id}" in line
        for line in lines
    ), lines
    assert any(f"evicts plan {whole.plan_id} master" in line for line in lines), lines


async def test_alternating_one_and_two_workers_through_the_local_runtime_loads_once(tmp_path):
    """``X-Tidegate-Workers: 1`` and ``: 2`` in turns on one model, through the real local
    function runtime: where 2 workers plan no split, both run one plan, loaded once."""
    from burst.service import BurstService
    from vmpool.export import export_zoo
    from vmpool.zoo import example_input

    repo = tmp_path / "models"
    export_zoo("mlp", repo)
    x = example_input("mlp").numpy()
    svc = BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(tmp_path / "objects")},
        memory_mb=512,
        function_timeout_s=120,
        log_dir=tmp_path / "logs",
        max_workers=2,
    )
    await svc.start()
    try:
        one, two = await svc.plan_for("mlp", 1, 1), await svc.plan_for("mlp", 2, 1)
        assert not any(s.split != "serial" for s in two.stages)  # the case this test is about
        assert two.plan_id == one.plan_id
        answers = [await svc.infer("mlp", {"input": x}, workers=w) for w in (1, 2, 1, 2)]
    finally:
        await svc.close()
    assert [a.report.weights_loaded for a in answers] == [1, 0, 0, 0]
    assert all(np.allclose(a.outputs["output"], answers[0].outputs["output"]) for a in answers)
