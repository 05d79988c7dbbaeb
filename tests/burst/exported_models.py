"""A test model library's models, each exported once per test process with a dynamic batch
from a batch of 2 (``byo_models``, ``audit20_models``, ``audit21_models``: each has ``build``,
``example`` and ``export``), with their graph and weights, and the checks the split tests share:
a plan run in process (``run_split``), every way the burst path may split a model
(``check_split_every_way``), a plan through the fork-join master (``run_through_master``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from burst.execute import run_plan_local
from burst.graph import build_graph, program_weights
from burst.plan import make_plan
from burst.runtime import reset_cache, run_master
from burst.store.local_dir import LocalDirStore
from burst.tensors import encode_inline, receive
from burst.weights import prepare_plan, worker_weights

BUILT: dict[tuple[str, str], tuple] = {}
TOLERANCE = 1e-5  # relative to max|y|


def exported(lib, name: str) -> tuple:
    """(module, program, graph, weights) of ``lib``'s model ``name``."""
    key = (lib.__name__, name)
    if key not in BUILT:
        module = lib.build(name)
        program = lib.export(module, lib.example(name))
        BUILT[key] = (module, program, build_graph(program, name), program_weights(program))
    return BUILT[key]


def assert_same(got: list[torch.Tensor], want, what: str) -> None:
    """``got`` equals the model's answer ``want`` (a tensor, or a tuple/list of them, or any
    pytree): same shapes and dtypes, floats within TOLERANCE of max|y|, others exactly."""
    want = torch.utils._pytree.tree_leaves(want)
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, what
        if w.is_floating_point():
            diff = (g - w).abs().max().item() / max(w.abs().max().item(), 1e-12)
            assert diff <= TOLERANCE, f"{what}: relative diff {diff:.2e}"
        else:
            assert torch.equal(g, w), what


def run_split(graph, plan, weights, xs) -> list[torch.Tensor]:
    """``plan`` run in process, each worker given only its own slice of the weights."""
    with torch.no_grad():
        return run_plan_local(
            graph, plan, weights, xs, slicer=lambda st, j: worker_weights(graph, st, j, weights)
        )


def check_split_every_way(lib, name: str, batches, ways) -> None:
    """Model ``name`` of ``lib`` answers the same split each of ``ways`` ((split, workers)
    pairs) at each batch size of ``batches``."""
    module, _, graph, weights = exported(lib, name)
    for batch in batches:
        xs = lib.example(name, batch=batch, seed=7)
        with torch.no_grad():
            want = module(*xs)
        for split, workers in ways:
            plan = make_plan(graph, workers=workers, split=split, batch=batch)
            got = run_split(graph, plan, weights, xs)
            assert_same(got, want, f"{split} x{workers} b{batch}")


async def run_through_master(program, graph, plan, xs, store_dir: Path) -> list[torch.Tensor]:
    """``plan`` run by the fork-join master with in-process workers on a directory store."""
    from test_runtime import InProcessInvoker  # tests/burst, on sys.path where this is imported

    store = LocalDirStore(store_dir)
    await prepare_plan(program, plan, store, graph=graph)
    reset_cache()
    event = {"plan_id": plan.plan_id, "request_id": "r1", "inputs": [encode_inline(x) for x in xs]}
    result = await run_master(event, InProcessInvoker(store), store)
    assert result["report"]["invocations"] > 0
    return [await receive(o, store) for o in result["outputs"]]


def tensor_names(graph) -> SimpleNamespace:
    """A model config with only what ``model_plan`` reads of one: its tensors' names."""
    return SimpleNamespace(
        inputs=[SimpleNamespace(name=n) for n in graph.inputs],
        outputs=[SimpleNamespace(name=n) for n in graph.outputs],
    )
