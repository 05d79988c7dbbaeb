"""The batcher's side of Triton's ``timeout``: a queued request that waited past it is answered
QueueTimeout and never runs: behind a running batch (dropped when the next batch forms), and
while a batch fills (dropped as it is taken). Requests without one are untouched."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from vmpool.batching import Batcher, QueueTimeout

TINY_S = 1e-6  # expires before anyone can look at it


class Gate(torch.nn.Module):
    """Records each batch's rows; the first batch waits until ``release`` is set."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []
        self.release = threading.Event()

    def forward(self, x):
        self.batches.append(x.shape[0])
        if len(self.batches) == 1:
            assert self.release.wait(60)
        return x * 2


def batcher(module, max_batch_size: int, delay_ms: float) -> Batcher:
    return Batcher(
        module,
        input_names=["x"],
        output_names=["y"],
        max_batch_size=max_batch_size,
        max_queue_delay_ms=delay_ms,
        name="gate",
    )


def rows(n: int, value: float = 1.0) -> dict[str, np.ndarray]:
    return {"x": np.full((n, 2), value, np.float32)}


async def until(condition, timeout_s: float = 30.0) -> None:
    """Wait (on the loop, in steps) until ``condition()`` holds; fail past ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def test_a_request_queued_behind_a_running_batch_past_its_timeout_never_runs():
    model = Gate()
    b = batcher(model, max_batch_size=1, delay_ms=0.0)
    try:
        first = asyncio.ensure_future(b.infer_reported(rows(1)))
        await until(lambda: model.batches)  # running, and held
        timed = asyncio.ensure_future(b.infer_reported(rows(1, 2.0), TINY_S))
        untimed = asyncio.ensure_future(b.infer_reported(rows(1, 3.0)))
        await until(lambda: b.queue_depth == 2)
        model.release.set()
        with pytest.raises(QueueTimeout, match="Request timeout expired: waited"):
            await asyncio.wait_for(timed, 60)
        (out, _), (late, _) = await asyncio.wait_for(asyncio.gather(first, untimed), 60)
    finally:
        model.release.set()
        await asyncio.to_thread(b.close)
    assert model.batches == [1, 1]  # the timed-out request took no batch
    assert out["y"].tolist() == [[2.0, 2.0]] and late["y"].tolist() == [[6.0, 6.0]]


async def test_a_request_that_runs_out_while_its_batch_fills_is_not_taken_into_it():
    model = Gate()
    model.release.set()
    b = batcher(model, max_batch_size=4, delay_ms=600_000.0)  # a batch waits to be full
    try:
        first = asyncio.ensure_future(b.infer(rows(1)))
        await until(lambda: b.queue_depth == 1 and not b._queue)  # taken, waiting for rows
        timed = asyncio.ensure_future(b.infer_reported(rows(1), TINY_S))
        await asyncio.sleep(0)  # (queued; too few rows to wake the gathering thread)
        rest = asyncio.ensure_future(b.infer(rows(3)))
        with pytest.raises(QueueTimeout):
            await asyncio.wait_for(timed, 60)
        await asyncio.wait_for(asyncio.gather(first, rest), 60)
    finally:
        await asyncio.to_thread(b.close)
    assert model.batches == [4]  # 1 + 3: the timed-out row did not ride along
