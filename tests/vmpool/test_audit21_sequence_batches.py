"""Requests of different sequence lengths to a model with a dynamic dimension besides the batch
(a text encoder exported with ``Dim("seq")``) are not batched together (session 21's models
audit).

Concatenated along the batch they failed together: six concurrent requests of lengths 5, 12, 20,
12, 33 and 5 to such a model behind a gateway got 2-4 503s a round, "model textdyn failed:
ValueError: all the input array dimensions except for the concatenation axis must match
exactly". Requests of one length still share a batch.
"""

from __future__ import annotations

import asyncio

import numpy as np
import torch

from vmpool.batching import Batcher


class MeanTokens(torch.nn.Module):
    """ids [B, L] and mask [B, L] -> the masked mean of the ids per row [B, 1]; records batches."""

    def __init__(self):
        super().__init__()
        self.batches: list[tuple[int, int]] = []

    def forward(self, ids, mask):
        self.batches.append(tuple(ids.shape))
        m = mask.to(torch.float32)
        return (ids.to(torch.float32) * m).sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True)


def _request(length: int, value: int) -> dict[str, np.ndarray]:
    return {
        "ids": np.full((1, length), value, np.int64),
        "mask": np.ones((1, length), np.int64),
    }


async def test_requests_of_other_lengths_get_their_own_batches():
    model = MeanTokens()
    # ten minutes: a batch that is not full waits for companions; full ones (or ones another
    # length ends) go at once, so the gathers below finish well within wait_for's bound
    batcher = Batcher(
        model,
        input_names=["ids", "mask"],
        output_names=["mean"],
        max_batch_size=2,
        max_queue_delay_ms=600_000.0,
        name="textdyn",
    )
    lengths = [5, 5, 12, 12, 20, 5, 33, 33]
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(batcher.infer(_request(n, i)) for i, n in enumerate(lengths))), 60
        )
    finally:
        await asyncio.to_thread(batcher.close)
    assert [a["mean"].tolist() for a in answers] == [[[float(i)]] for i in range(len(lengths))]
    assert model.batches == [(2, 5), (2, 12), (1, 20), (1, 5), (2, 33)]
