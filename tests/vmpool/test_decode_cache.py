"""The gateway's decode cache: a repeated request header decodes as the full decoder would."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from vmpool.codec import CodecError, DecodeCache, decode_request, encode_request

from .test_codec import BAD_REQUESTS, BINARY_X


def _same(a, b) -> None:
    assert (a.id, a.outputs, a.binary_output, a.parameters) == (
        b.id,
        b.outputs,
        b.binary_output,
        b.parameters,
    )
    assert list(a.inputs) == list(b.inputs)
    for name in a.inputs:
        assert a.inputs[name].dtype == b.inputs[name].dtype
        np.testing.assert_array_equal(a.inputs[name], b.inputs[name])


def test_a_repeated_header_gives_each_body_its_own_tensors():
    cache = DecodeCache()
    rng = np.random.default_rng(0)
    for _ in range(3):
        inputs = {
            "a": rng.standard_normal((2, 3)).astype(np.float32),
            "b": rng.integers(0, 9, (2,), dtype=np.int64),
        }
        body, hl = encode_request(inputs, outputs=["y"], binary_output=True, request_id="r1")
        got = cache.decode(body, hl)
        _same(got, decode_request(body, hl))
        np.testing.assert_array_equal(got.inputs["a"], inputs["a"])
        np.testing.assert_array_equal(got.inputs["b"], inputs["b"])
    assert len(cache._plans) == 1  # one header, seen three times


def test_a_cached_request_is_the_callers_own_to_change():
    cache = DecodeCache()
    body, hl = encode_request({"x": np.ones((1, 2), np.float32)}, binary_output=True)
    first = cache.decode(body, hl)
    first.parameters["extra"] = 1
    second = cache.decode(body, hl)
    assert "extra" not in second.parameters


@pytest.mark.parametrize("body,header_length,message", BAD_REQUESTS)
def test_bad_bodies_fail_alike_after_a_good_one_with_the_same_header(body, header_length, message):
    cache = DecodeCache()
    cache.decode(BINARY_X + b"\0" * 8, len(BINARY_X))  # cached: x, FP32 [1, 2]
    with pytest.raises(CodecError) as info:
        cache.decode(body, header_length)
    assert info.value.status == 400
    assert message in str(info.value)


def test_json_tensors_are_decoded_in_full_each_time():
    cache = DecodeCache()
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "j", "shape": [2], "datatype": "INT32", "data": [4, 5]},
                {"name": "x", "shape": [1, 2], "datatype": "FP32"},
            ]
        }
    )
    header = header.replace(b'"FP32"}', b'"FP32","parameters":{"binary_data_size":8}}')
    body = header + np.array([[1.5, 2.5]], np.float32).tobytes()
    for _ in range(2):
        got = cache.decode(body, len(header))
        _same(got, decode_request(body, len(header)))
    assert not cache._plans


def test_the_cache_is_bounded():
    cache = DecodeCache(max_entries=4)
    for i in range(10):
        body, hl = encode_request(
            {"x": np.ones((1, 2), np.float32)}, binary_output=True, request_id=f"id-{i}"
        )
        assert cache.decode(body, hl).id == f"id-{i}"
    assert 1 <= len(cache._plans) <= 4
