"""Weight blobs: what prepare_plan writes and a function loads, without a copy of the weights."""

from __future__ import annotations

import io

import pytest
import torch

from burst.weights import dumps_tensors, loads_tensors


def _tensors() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "fc.weight": torch.randn(10, 6, generator=g).t(),  # not contiguous
        "half": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(3, generator=g).bfloat16(),
        "steps": torch.arange(7),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }


def test_every_tensor_comes_back_equal_with_its_dtype_and_shape():
    want = _tensors()
    got = loads_tensors(dumps_tensors(want))
    assert list(got) == list(want)
    for name, t in want.items():
        assert got[name].dtype == t.dtype and got[name].shape == t.shape, name
        assert torch.equal(got[name], t), name


def test_loaded_tensors_are_views_of_the_blob_not_copies():
    blob = dumps_tensors({"w": torch.ones(1 << 20)})  # 4 MB
    w = loads_tensors(blob)["w"]
    start = id(blob)  # CPython: the bytes' payload lies inside the object
    assert start < w.data_ptr() < start + len(blob) + 64
    assert torch.equal(w, torch.ones(1 << 20))


def test_a_blob_torch_save_wrote_still_loads():
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    assert torch.equal(loads_tensors(buf.getvalue())["w"], torch.arange(4.0))


def test_a_truncated_blob_is_an_error_not_garbage():
    blob = dumps_tensors({"w": torch.ones(1000)})
    with pytest.raises(ValueError):
        loads_tensors(blob[:-100])
