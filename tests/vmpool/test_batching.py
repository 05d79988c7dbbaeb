"""Dynamic batching: concurrent requests share one model call; a failing batch fails alone."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from vmpool.batching import Batcher, BatcherClosed, InferenceError


class Recorder(torch.nn.Module):
    """Doubles its input, records each batch size, and fails on a batch holding a negative."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        if (x < 0).any():
            raise ValueError("negative input")
        return x * 2, x.sum(dim=1)


def _batcher(module, *, max_batch_size=8, max_queue_delay_ms=200.0):
    return Batcher(
        module,
        input_names=["x"],
        output_names=["double", "total"],
        max_batch_size=max_batch_size,
        max_queue_delay_ms=max_queue_delay_ms,
        name="rec",
    )


def _rows(value: float, n: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((n, 3), value, np.float32)}


async def test_concurrent_requests_run_as_one_batch_and_get_their_own_rows():
    model = Recorder()
    batcher = _batcher(model)
    try:
        results = await asyncio.gather(*(batcher.infer(_rows(i)) for i in range(6)))
    finally:
        batcher.close()
    assert model.batches == [6]
    for i, out in enumerate(results):
        assert out["double"].tolist() == [[2.0 * i] * 3]
        assert out["total"].tolist() == [3.0 * i]


async def test_a_full_batch_goes_without_waiting_and_rows_never_exceed_the_limit():
    model = Recorder()
    # ten minutes: a full batch that waited out the delay would fail wait_for's bound (a bound,
    # not a timing); the 3-row rest waits for companions until close() sends it
    batcher = _batcher(model, max_batch_size=4, max_queue_delay_ms=600_000.0)
    try:
        first = asyncio.gather(batcher.infer(_rows(1, 2)), batcher.infer(_rows(2, 2)))
        rest = asyncio.ensure_future(batcher.infer(_rows(3, 3)))
        a, b = await asyncio.wait_for(first, 60)
        assert not rest.done()  # held for companions: the full batch did not take it along
    finally:
        await asyncio.to_thread(batcher.close)
    c = await asyncio.wait_for(rest, 60)
    assert model.batches == [4, 3]
    assert a["double"].shape == (2, 3) and b["double"][0, 0] == 4.0
    assert c["total"].tolist() == [9.0] * 3


async def test_a_lone_request_does_not_wait_for_companions_that_cannot_come():
    model = Recorder()
    batcher = Batcher(
        model,
        input_names=["x"],
        output_names=["double", "total"],
        max_batch_size=8,
        max_queue_delay_ms=600_000.0,  # ten minutes: waiting it out would fail the test
        upstream_in_flight=lambda: 1,  # the server holds this request only
    )
    try:
        out = await asyncio.wait_for(batcher.infer(_rows(1)), 60)
    finally:
        batcher.close()
    assert model.batches == [1] and out["total"].tolist() == [3.0]


async def test_a_request_waits_while_the_server_holds_another_one():
    model = Recorder()
    batcher = Batcher(
        model,
        input_names=["x"],
        output_names=["double", "total"],
        max_batch_size=2,
        max_queue_delay_ms=600_000.0,
        upstream_in_flight=lambda: 2,  # a second request is still being received
    )
    try:
        first = asyncio.ensure_future(batcher.infer(_rows(1)))
        while batcher._gathered != 1:  # the inference thread holds the first and waits
            await asyncio.sleep(0.001)
        second = await asyncio.wait_for(batcher.infer(_rows(2)), 60)
        assert (await first)["total"].tolist() == [3.0]
    finally:
        batcher.close()
    assert model.batches == [2] and second["total"].tolist() == [6.0]


async def test_a_model_error_fails_only_its_own_batch():
    model = Recorder()
    batcher = _batcher(model, max_batch_size=2)
    try:
        results = await asyncio.gather(
            batcher.infer(_rows(-1)),
            batcher.infer(_rows(1)),
            batcher.infer(_rows(2)),
            batcher.infer(_rows(3)),
            return_exceptions=True,
        )
        after = await batcher.infer(_rows(4))
    finally:
        batcher.close()
    assert model.batches == [2, 2, 1]
    assert all(isinstance(r, InferenceError) for r in results[:2])
    assert "ValueError: negative input" in str(results[0])
    assert results[2]["total"].tolist() == [6.0] and results[3]["total"].tolist() == [9.0]
    assert after["total"].tolist() == [12.0]


async def test_queue_depth_in_flight_and_close_finishes_queued_work():
    model = Recorder()
    batcher = _batcher(model, max_queue_delay_ms=600_000.0)
    pending = [asyncio.ensure_future(batcher.infer(_rows(i))) for i in range(3)]
    deadline = time.monotonic() + 60  # (the inference thread takes the first on its own time)
    while (batcher.queue_depth, batcher.in_flight) != (3, 3):
        assert time.monotonic() < deadline, (batcher.queue_depth, batcher.in_flight)
        await asyncio.sleep(0.001)
    assert model.batches == []  # all three wait for companions
    # closing runs them at once: within wait_for's bound, not after the ten-minute delay
    await asyncio.wait_for(asyncio.to_thread(batcher.close), 60)
    results = await asyncio.wait_for(asyncio.gather(*pending), 60)
    assert [r["total"][0] for r in results] == [0.0, 3.0, 6.0]
    assert (batcher.queue_depth, batcher.in_flight) == (0, 0)
    with pytest.raises(BatcherClosed):
        await batcher.infer(_rows(1))


async def test_bad_requests_and_bad_models_give_clear_errors():
    def wrong_rows(x):
        return x[:1]

    batcher = Batcher(
        wrong_rows, input_names=["x"], output_names=["y"], max_batch_size=4, max_queue_delay_ms=0
    )
    try:
        with pytest.raises(InferenceError, match=r"expected 2 rows"):
            await batcher.infer(_rows(1, 2))
        with pytest.raises(ValueError, match="exceeds max_batch_size 4"):
            await batcher.infer(_rows(1, 5))
        with pytest.raises(ValueError, match="missing input 'x'"):
            await batcher.infer({"z": np.zeros((1, 3), np.float32)})
    finally:
        batcher.close()
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(
            wrong_rows,
            input_names=["x"],
            output_names=["y"],
            max_batch_size=0,
            max_queue_delay_ms=1,
        )


async def test_read_only_wire_buffers_are_accepted():
    model = Recorder()
    batcher = _batcher(model, max_queue_delay_ms=0)
    x = np.frombuffer(np.ones(3, np.float32).tobytes(), np.float32).reshape(1, 3)
    try:
        out = await batcher.infer({"x": x})
    finally:
        batcher.close()
    assert out["double"].tolist() == [[2.0, 2.0, 2.0]]
