"""A model the profile never measured is priced from its graph when split: its spatial legs are
not predicted cheaper than they run (tiles of small maps run well above their share of the MACs:
a 2-way tile of a 14x14 conv 1.3-1.5x, ``ops/bench/plan7_tiles.py``). Thread CPU time of the
legs against the whole stage, so the host's pace cancels."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from burst.execute import run_nodes, run_worker_stage, worker_input
from burst.graph import program_weights
from burst.packed_conv import packing
from burst.planning import PlanRequest, load_profile, model_plan, perf_model
from burst.service_plans import load_graph
from vmpool.artifact import load_artifact
from vmpool.export import export_module

TOLERANCE = 0.2  # the leg's predicted share of the stage may be this much under the measured


def _cpu_ms(fn, reps: int = 9) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        times.append((time.thread_time() - t0) * 1e3)
    return statistics.median(times)


def test_an_unprofiled_models_spatial_legs_are_not_priced_below_what_they_run(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(
        *(m for _ in range(3) for m in (nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()))
    )
    export_module(net.eval(), (torch.randn(2, 256, 14, 14),), name="tiles", repo=tmp_path)
    graph, config = load_graph(tmp_path, "tiles")
    profile = load_profile()  # the bundled reference: it never measured "tiles"
    request = PlanRequest(workers=2, memory_mb=2048, split="spatial")
    plan = model_plan(graph, config, request, profile)
    stage = next(s for s in plan.stages if s.split != "serial")
    assert stage.workers == 2
    model = perf_model(graph, request, profile)
    whole_ms = model.serial_ms(stage.nodes, stage.packed)
    part_ms = model.unshared_ms(stage.nodes, "spatial", stage.packed)
    weights = program_weights(load_artifact(tmp_path, "tiles").load_program())
    torch.set_num_threads(1)
    x = torch.randn(1, 256, 14, 14)
    with torch.no_grad(), packing(stage.packed):
        measured_whole = _cpu_ms(
            lambda: run_nodes(graph, list(stage.nodes), {stage.input: x}, weights)
        )
        for leg, macs in enumerate(stage.leg_macs):
            leg_x = worker_input(stage, leg, x)
            measured = _cpu_ms(
                lambda leg=leg, leg_x=leg_x: run_worker_stage(graph, stage, leg, leg_x, weights)
            )
            share = macs / stage.macs
            predicted = part_ms + share * (whole_ms - part_ms)
            # as shares of the stage, each as its own side measured or priced it
            assert predicted / whole_ms >= (1 - TOLERANCE) * measured / measured_whole, (
                leg,
                share,
                predicted / whole_ms,
                measured / measured_whole,
            )
