"""Hypothesis on the Open Inference Protocol codec: round trips are exact, and no body, however
malformed, gets anything but a CodecError (a 400), never another exception (a 500)."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vmpool.codec import (
    CodecError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    parse_header_length,
)
from vmpool.wire import BF16, NUMPY_DTYPES

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.dtype(dt).newbyteorder("=") for dt in NUMPY_DTYPES.values() if dt != BF16]
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)


def arrays(allow_nan: bool = True):
    native = st.sampled_from(DTYPES).flatmap(
        lambda dtype: hnp.arrays(
            dtype,
            SHAPES,
            elements=hnp.from_dtype(dtype, allow_nan=allow_nan, allow_infinity=allow_nan),
        )
    )
    # BF16 (hypothesis knows no bfloat16): any bit pattern, or any finite one (exponent not 0xFF)
    patterns = st.integers(0, 0xFFFF)
    if not allow_nan:
        patterns = patterns.filter(lambda b: (b >> 7) & 0xFF != 0xFF)
    bf16 = hnp.arrays(np.uint16, SHAPES, elements=patterns).map(lambda a: a.view(BF16))
    return st.one_of(native, bf16)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit (NaN payloads and -0.0 included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@FUZZ
@given(st.dictionaries(names, arrays(), min_size=1, max_size=4), st.booleans())
def test_binary_request_round_trip_is_exact(inputs, with_id):
    body, header_length = encode_request(inputs, request_id="r-1" if with_id else None)
    decoded = decode_request(body, header_length)
    assert decoded.inputs.keys() == inputs.keys()
    assert all(same(decoded.inputs[k], np.asarray(v)) for k, v in inputs.items())
    assert decoded.id == ("r-1" if with_id else None)


@FUZZ
@given(st.dictionaries(names, arrays(allow_nan=False), min_size=1, max_size=3), st.booleans())
def test_response_round_trip_json_and_binary(outputs, binary):
    body, header_length = encode_response(
        model_name="m",
        model_version="1",
        request_id="x",
        outputs=outputs,
        requested=None,
        binary_output=binary,
    )
    decoded = decode_response(body, header_length)
    for name, array in outputs.items():
        got = decoded.outputs[name]
        assert got.shape == array.shape and got.dtype == array.dtype
        assert np.array_equal(got, array)


@FUZZ
@given(st.binary(max_size=512), st.one_of(st.none(), st.integers(-5, 600)))
def test_arbitrary_bytes_are_a_codec_error_or_a_request(body, header_length):
    try:
        decode_request(body, header_length)
    except CodecError as exc:
        assert exc.status == 400 and exc.message


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ["name", "datatype", "shape", "data", "parameters"]


@FUZZ
@given(arrays(), st.sampled_from(FIELDS + ["binary_data_size"]), json_values, st.integers(0, 64))
def test_a_valid_binary_body_with_one_field_replaced_or_truncated_is_a_400(
    array, field, value, cut
):
    body, header_length = encode_request({"x": array})
    header = orjson.loads(body[:header_length])
    entry = header["inputs"][0]
    if field == "binary_data_size":
        entry["parameters"]["binary_data_size"] = value
    else:
        entry[field] = value
    head = json.dumps(header).encode()  # stdlib: it writes integers past 64 bits, too
    mutated = head + body[header_length:]
    for candidate, length in [
        (mutated, len(head)),
        (mutated[: max(len(head), len(mutated) - cut)], len(head)),
    ]:
        try:
            decode_request(candidate, length)
        except CodecError as exc:
            assert exc.status == 400


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["inputs", "outputs", "id", "parameters"]), json_values, max_size=4
    )
)
def test_any_json_document_is_a_codec_error_or_a_request(doc):
    try:
        decode_request(json.dumps(doc).encode(), None)
    except CodecError as exc:
        assert exc.status == 400


@pytest.mark.parametrize("value", ["", "x", "-1", "1.5", "9" * 40, b"\xff", " 3"])
def test_header_length_values(value):
    try:
        assert parse_header_length(value) >= 0
    except CodecError as exc:
        assert exc.status == 400
