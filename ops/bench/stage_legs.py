"""A split stage's jobs timed in forked processes: the stage's nodes whole (``"whole"``) or one
leg (its index), one torch thread each, the jobs of one call started together each rep (as the
master's own leg and the workers' run). Shared by ``leg_bound.py`` and ``burst25plan_legs.py``.

Call ``use_stage`` first: the children read the graph, weights, stage and input it sets (fork).
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time

import torch

from burst.execute import run_nodes, run_worker_stage, worker_input

_CTX: dict = {}  # what the forked children read: graph, weights, stage, its input


def use_stage(graph, weights, stage, x) -> None:
    _CTX.update(graph=graph, weights=weights, stage=stage, x=x)


def _job_fn(job):
    g, w, stage, x = _CTX["graph"], _CTX["weights"], _CTX["stage"], _CTX["x"]
    if job == "whole":
        return lambda: run_nodes(g, list(stage.nodes), {stage.input: x}, w)
    leg_x = worker_input(stage, job, x)
    return lambda: run_worker_stage(g, stage, job, leg_x, w)


def _child(job, reps: int, barrier, queue) -> None:
    from burst.packed_conv import packing

    torch.set_num_threads(1)
    fn = _job_fn(job)
    out = []
    with torch.no_grad(), packing(_CTX["stage"].packed):
        for _ in range(2):
            fn()  # packs the convs' weights for these shapes, warms the allocator
        for _ in range(reps):
            barrier.wait()
            t0, w0 = time.thread_time(), time.perf_counter()
            fn()
            out.append(((time.thread_time() - t0) * 1e3, (time.perf_counter() - w0) * 1e3))
    queue.put((job, out))


def run_together(jobs: list, reps: int) -> dict:
    """{job: [(thread CPU ms, wall ms)] per rep}, the jobs started together each rep."""
    ctx = mp.get_context("fork")
    queue, barrier = ctx.Queue(), ctx.Barrier(len(jobs))
    procs = [ctx.Process(target=_child, args=(j, reps, barrier, queue)) for j in jobs]
    for p in procs:
        p.start()
    got = dict(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return got


CPU_MS, WALL_MS = 0, 1  # (a sample's fields)


def median(samples, field: int) -> float:
    return statistics.median(s[field] for s in samples)
