"""Tensors between master and workers: exact bytes, and a channels-last tensor (what the
functions' packed convs produce) arrives channels-last, with no layout conversion on the way."""

import asyncio

import pytest
import torch

from burst.execute import stitch_tiles, worker_input
from burst.store.memory import MemoryStore
from burst.tensors import TransportError, receive, send, tensor_from_bytes


def _channels_last(*shape) -> torch.Tensor:
    return torch.randn(*shape).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("transport", ["inline", "store"])
def test_a_channels_last_tensor_arrives_equal_and_channels_last(transport):
    store = MemoryStore()
    x = _channels_last(1, 16, 5, 7)

    async def go():
        ref = await send(x, store, "req/r/t", transport=transport)
        return ref, await receive(ref, store)

    ref, y = asyncio.run(go())
    assert ref["layout"] == "nhwc"
    assert torch.equal(x, y)
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_a_plain_tensor_travels_without_a_layout():
    store = MemoryStore()
    x = torch.randn(2, 3, 4, 5)

    async def go():
        ref = await send(x, store, "req/r/p", transport="store")
        return ref, await receive(ref, store)

    ref, y = asyncio.run(go())
    assert "layout" not in ref
    assert torch.equal(x, y) and y.is_contiguous()


def test_a_layout_that_does_not_fit_the_shape_is_refused():
    data = torch.zeros(6).numpy().tobytes()
    with pytest.raises(TransportError):
        tensor_from_bytes(data, "float32", [2, 3], "nhwc")
    with pytest.raises(TransportError):
        tensor_from_bytes(data, "float32", [1, 1, 2, 3], "nchw16")


class _Tile:
    def __init__(self, window, out):
        self.window, self.out = window, out


class _Stage:
    split = "spatial"
    tiles = [_Tile(((0, 3), (0, 5)), ((0, 2), (0, 5))), _Tile(((2, 5), (0, 5)), ((3, 5), (0, 5)))]


def test_windows_and_stitched_tiles_keep_channels_last():
    x = _channels_last(1, 8, 6, 6)
    windows = [worker_input(_Stage, j, x) for j in range(2)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in windows)
    assert torch.equal(windows[1], x[..., 2:6, :])
    tiles = [(((0, 2), (0, 5)), x[..., 0:3, :]), (((3, 5), (0, 5)), x[..., 3:6, :])]
    out = stitch_tiles(tiles, list(x.shape))
    assert torch.equal(out, x)
    assert out.is_contiguous(memory_format=torch.channels_last)
