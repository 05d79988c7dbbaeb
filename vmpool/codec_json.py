"""The JSON half of the V2 REST codec: tensor ``data`` lists to numpy arrays and back.

``data`` may be flat (row-major) or nested to follow ``shape``; every tensor is parsed strictly:
1.5 in an INT32 tensor is an error, not a truncation, and a float tensor takes numbers only
(not "0.5" or true, which a plain conversion would turn into 0.5 and 1.0). The one exception is
null in a float tensor, read as NaN: JSON has no NaN, so KServe's SDK (orjson) writes NaN and
infinities as null, and KServe's own server reads null back as NaN.
"""

from __future__ import annotations

import array as pyarray
import itertools
import json
import math

import numpy as np
import orjson

from vmpool.wire import BF16, KIND_WORDS, CodecError, datatype_of


def json_array(data, dtype: np.dtype, shape: tuple[int, ...], where: str) -> np.ndarray:
    """The tensor an entry's ``data`` describes; CodecError for anything that does not fit."""
    if not isinstance(data, list):
        data = [data]  # a scalar stands for a one-element tensor
    count = math.prod(shape)
    if data and isinstance(data[0], list):
        flat = _flatten(data, shape, where)
    elif len(data) != count:
        raise CodecError(
            f"{where}: 'data' has {len(data)} elements but shape {list(shape)} needs {count}"
        )
    else:
        flat = data
    try:
        if dtype == BF16:
            array = _bf16_array(flat, where)
        elif dtype.kind == "f":
            array = _float_array(flat, dtype, where)
        else:
            array = _strict_array(flat, dtype, where)
    except CodecError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise CodecError(f"{where}: 'data' is not a list of numbers ({exc})") from None
    if array.size != count:  # e.g. a list hiding inside a flat list of integers
        raise CodecError(
            f"{where}: 'data' has {array.size} elements but shape {list(shape)} needs {count}"
        )
    return array.reshape(shape)


_NUMBERS = {"float", "int", "bool"}  # (bools are found below, by value)


def _float_array(flat, dtype: np.dtype, where: str) -> np.ndarray:
    # array.array takes real numbers only (no text, no None) at fromiter's speed, several times
    # faster than asarray on nested lists; a bool is a real number to it, so the values that
    # could have been one (exactly 0 or 1, few in real inputs) have their types checked
    leaves = flat if isinstance(flat, list) else list(flat)
    try:
        raw = pyarray.array("d" if dtype.itemsize > 4 else "f", leaves)
    except TypeError:
        raw = _with_nulls_as_nan(leaves, dtype, where)
    values = np.frombuffer(raw, np.float64 if dtype.itemsize > 4 else np.float32)
    for i in np.flatnonzero((values == 0) | (values == 1)).tolist():
        if type(leaves[i]) is bool:
            raise CodecError(
                f"{where}: 'data' is not a list of numbers ({datatype_of(dtype)} tensor given "
                f"bool values)"
            )
    if dtype.itemsize < values.itemsize:  # FP16 from float32
        with np.errstate(over="ignore"):
            values = values.astype(dtype)
    if not np.isfinite(values).all():
        _check_range(values, leaves, dtype, where)
    return values.astype(dtype, copy=False)


def _bf16_array(flat, where: str) -> np.ndarray:
    """A BF16 tensor from JSON numbers: read as FP32 (every BF16 value is one, exactly), then
    rounded to nearest even; a finite value past BF16's range (about 3.39e38) is an error, as
    past FP16's. Triton takes BF16 in binary only; JSON is accepted here as for FP16."""
    leaves = flat if isinstance(flat, list) else list(flat)
    try:
        values = _float_array(leaves, np.dtype(np.float32), where).astype(BF16)
    except CodecError as exc:  # (its messages name the FP32 it reads through)
        raise CodecError(exc.message.replace("FP32", "BF16")) from None
    if not np.isfinite(values).all():
        _check_range(values, leaves, BF16, where)
    return values


def _with_nulls_as_nan(leaves: list, dtype: np.dtype, where: str) -> pyarray.array:
    """``leaves`` as ``_float_array``'s buffer with each null a NaN; CodecError naming the kinds
    of anything else that is not a number (text, objects, lists)."""
    names = {"str": "text", "dict": "object"}
    kinds = sorted({names.get(type(v).__name__, type(v).__name__) for v in leaves} - _NUMBERS)
    if kinds != ["NoneType"]:
        kinds = [k for k in kinds if k != "NoneType"]
        raise CodecError(
            f"{where}: 'data' is not a list of numbers ({datatype_of(dtype)} tensor given "
            f"{', '.join(kinds)} values)"
        )
    nan = float("nan")
    return pyarray.array(
        "d" if dtype.itemsize > 4 else "f", [nan if v is None else v for v in leaves]
    )


def _check_range(values: np.ndarray, leaves: list, dtype: np.dtype, where: str) -> None:
    """A value the datatype cannot hold (1e6 in an FP16, 1e39 in an FP32) is an error; a NaN
    or an infinity the request sent (the NaN, Infinity and -Infinity tokens, or null) is kept."""
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        if leaves[i] is not None and math.isfinite(leaves[i]):
            raise CodecError(f"{where}: 'data' value out of range for {datatype_of(dtype)}")


def _strict_array(flat, dtype: np.dtype, where: str) -> np.ndarray:
    # Parse without a dtype first so 1.5 in an INT32 tensor is an error, not a truncation.
    leaves = flat if isinstance(flat, list) else list(flat)
    raw = np.asarray(leaves)
    if raw.dtype.kind in "fO" and dtype.kind in "iu" and all(type(v) is int for v in leaves):
        return _wide_integers(leaves, dtype, where)
    if raw.size and not _json_kind_ok(raw.dtype.kind, dtype.kind):
        if raw.dtype.kind == "f" and dtype.kind in "iu" and np.abs(raw).max() >= 2.0**63:
            # (the JSON parser reads an integer past 64 bits as a float)
            raise CodecError(
                f"{where} is {datatype_of(dtype)} but 'data' holds floating-point values: "
                f"a value out of range for {dtype.name}"
            )
        got = KIND_WORDS.get(raw.dtype.kind, "non-numeric")
        raise CodecError(f"{where} is {datatype_of(dtype)} but 'data' holds {got} values")
    if dtype.kind in "iu" and raw.size:
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise CodecError(f"{where}: 'data' value out of range for {dtype.name}")
    return raw.astype(dtype, copy=False)


def _wide_integers(leaves: list, dtype: np.dtype, where: str) -> np.ndarray:
    """Integers past int64's range (numpy parsed them as floats or objects): a UINT64 above
    2**63 is valid, anything else out of range."""
    try:
        return np.array(leaves, dtype=dtype)
    except OverflowError:
        raise CodecError(f"{where}: 'data' value out of range for {dtype.name}") from None


def _flatten(data: list, shape: tuple[int, ...], where: str):
    """Nested lists must follow ``shape`` level by level; returns an iterator of the leaves."""
    level = [data]
    for depth, dim in enumerate(shape):
        for item in level:
            if not isinstance(item, list) or len(item) != dim:
                raise CodecError(
                    f"{where}: nested 'data' does not follow shape {list(shape)} at depth {depth}"
                )
        if depth == len(shape) - 1:
            return itertools.chain.from_iterable(level)
        level = list(itertools.chain.from_iterable(level))
    raise CodecError(f"{where}: nested 'data' for a scalar shape []")


def _json_kind_ok(got: str, want: str) -> bool:
    if want == "b":
        return got == "b"
    return got in "iu"  # integer tensors take integers only (not floats, not booleans)


def json_entry(name: str, array: np.ndarray, data: np.ndarray) -> dict:
    """An output entry carrying its values as a flat JSON ``data`` list.

    ``data`` is ``array`` as little-endian contiguous memory (orjson serialises it natively;
    BF16, which it does not know, goes as the FP32 values it widens to exactly).
    """
    return {
        "name": name,
        "datatype": datatype_of(array),
        "shape": list(array.shape),
        "data": _bf16_data(data) if data.dtype == BF16 else data.reshape(-1),
    }


def _bf16_data(data: np.ndarray):
    """A BF16 output's JSON ``data``: its FP32 values (orjson knows no bfloat16). A NaN or an
    infinity goes as Python's ``NaN``/``Infinity`` token, not as the null other float tensors
    carry: tritonclient, the one client that reads BF16 (KServe's SDK has no BF16), reads
    the tokens but fails on a null (numpy makes no bfloat16 of None)."""
    wide = data.astype(np.float32).reshape(-1)
    if np.isfinite(wide).all():
        return wide
    return orjson.Fragment(json.dumps(wide.tolist()).encode())
