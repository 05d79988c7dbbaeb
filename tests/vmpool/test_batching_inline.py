"""A lone one-row request of a cheap model runs on the caller's thread (vmpool/batching.py):
same answers and errors, no hand-off; anything that could batch still goes to the thread."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import torch

from vmpool.batching import Batcher, InferenceError


class ThreadRecorder(torch.nn.Module):
    """Doubles its input, records the thread of each call; fails on a negative input."""

    def __init__(self):
        super().__init__()
        self.threads: list[int] = []

    def forward(self, x):
        self.threads.append(threading.get_ident())
        if (x < 0).any():
            raise ValueError("negative input")
        return x * 2


def _batcher(model, held: list[int], inline_max_ms: float = 50.0, max_rows: int = 8) -> Batcher:
    return Batcher(
        model,
        input_names=["x"],
        output_names=["double"],
        max_batch_size=max_rows,
        max_queue_delay_ms=600_000.0,
        upstream_in_flight=lambda: held[0],
        inline_max_ms=inline_max_ms,
    )


def _row(value: float) -> dict[str, np.ndarray]:
    return {"x": np.full((1, 3), value, np.float32)}


async def _settled(batcher: Batcher) -> None:
    """Until the inference thread has let go of its last batch (it hands the answers over
    first, as a client's next request would find it a round trip later)."""
    while batcher.in_flight:
        await asyncio.sleep(0.001)


async def test_a_lone_request_of_a_cheap_model_runs_on_the_callers_thread():
    model, held = ThreadRecorder(), [1]
    batcher = _batcher(model, held)
    try:
        first = await batcher.infer(_row(1))  # measured on the inference thread first
        await _settled(batcher)
        second, report = await batcher.infer_reported(_row(2))
        try:
            await batcher.infer(_row(-1))
            raise AssertionError("a failing model must fail the request")
        except InferenceError as exc:
            assert "negative input" in str(exc)
        third = await batcher.infer(_row(3))  # the failure left the batcher usable
    finally:
        batcher.close()
    me = threading.get_ident()
    assert model.threads[0] != me and model.threads[1:] == [me, me, me]
    assert first["double"].tolist() == [[2.0] * 3] and second["double"].tolist() == [[4.0] * 3]
    assert third["double"].tolist() == [[6.0] * 3]
    assert report.rows == 1 and report.service_ms >= 0


async def test_requests_that_could_batch_still_go_to_the_inference_thread():
    model, held = ThreadRecorder(), [1]
    batcher = _batcher(model, held, max_rows=2)  # the second request completes the batch
    try:
        await batcher.infer(_row(1))
        await _settled(batcher)
        held[0] = 2  # the server holds another request: it may join this one's batch
        first = asyncio.ensure_future(batcher.infer(_row(2)))
        while batcher._gathered != 1:
            await asyncio.sleep(0.001)
        second = await asyncio.wait_for(batcher.infer(_row(3)), 60)
        await first
    finally:
        batcher.close()
    assert threading.get_ident() not in model.threads
    assert second["double"].tolist() == [[6.0] * 3]


async def test_a_slow_model_stays_on_the_inference_thread():
    model, held = ThreadRecorder(), [1]
    batcher = _batcher(model, held, inline_max_ms=0.0)
    try:
        for value in range(3):
            await batcher.infer(_row(value))
            await _settled(batcher)
    finally:
        batcher.close()
    assert threading.get_ident() not in model.threads


async def test_a_burst_of_requests_is_batched_not_run_inline_one_by_one():
    """As a server reads 16 requests in one loop iteration: each counts itself in flight when
    its task starts, so the first one's check alone would find nobody else."""
    model, held = ThreadRecorder(), [0]
    batcher = _batcher(model, held, max_rows=16)

    async def request(value: float):
        held[0] += 1
        try:
            return await batcher.infer(_row(value))
        finally:
            held[0] -= 1

    try:
        await request(1)  # a lone one, measured on the inference thread
        await _settled(batcher)
        before = len(model.threads)
        answers = await asyncio.wait_for(asyncio.gather(*(request(v) for v in range(16))), 60)
    finally:
        batcher.close()
    assert len(model.threads) == before + 1  # one batch of all 16, on the inference thread
    assert threading.get_ident() not in model.threads
    assert [a["double"][0, 0] for a in answers] == [2.0 * v for v in range(16)]
