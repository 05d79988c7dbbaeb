"""The classification extension (Triton's): a requested output with ``"classification": k``
answers the top ``k`` classes instead of the scores, as BYTES strings ``"<score>:<index>"``,
highest first. As in Triton, an output whose first dimension is the batch is classified per
batch row over the rest of the row (flattened: shape ``[batch, k]``, a ``[batch]`` output gives
one class per row); another is classified along its last axis (shape ``[..., k]``)."""

from __future__ import annotations

import struct

import numpy as np

from vmpool.wire import CodecError


def classify(name: str, array: np.ndarray, count: int, batched: bool = False) -> np.ndarray:
    """The top ``count`` classes of each batch row of ``array`` (``batched``) or of its last
    axis, as an object array of bytes."""
    if array.ndim == 0 or array.shape[-1] == 0 or array.dtype.kind not in "fiub":
        raise CodecError(f"output {name!r} cannot be classified: it needs a numeric class axis")
    if batched:
        scores = array.reshape(array.shape[0], -1)
        lead: tuple[int, ...] = array.shape[:1]
    else:
        scores = array.reshape(-1, array.shape[-1])
        lead = array.shape[:-1]
    k = min(count, scores.shape[1])
    top = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k]
    out = np.empty((scores.shape[0], k), dtype=object)
    for row, indices in enumerate(top.tolist()):
        out[row] = [f"{float(scores[row, i]):f}:{i}".encode() for i in indices]
    return out.reshape(lead + (k,))


def batched_outputs(cfg) -> bool:
    """Whether the model's outputs lead with the batch dimension (Triton: max_batch_size > 0)."""
    return cfg.max_batch_size > 0 and all(t.shape and t.shape[0] == -1 for t in cfg.inputs)


def bytes_payload(array: np.ndarray) -> bytes:
    """BYTES elements in the protocol's binary form: each a 4-byte little-endian length, then
    its bytes, row-major."""
    return b"".join(struct.pack("<I", len(item)) + item for item in array.reshape(-1).tolist())


def bytes_strings(array: np.ndarray) -> list[str]:
    """BYTES elements as the JSON ``data`` list (text)."""
    return [item.decode("utf-8", "replace") for item in array.reshape(-1).tolist()]


def classes_of(name: str, params: dict) -> int:
    """A requested output's ``classification`` parameter: a positive integer, or 0 if absent."""
    count = params.get("classification")
    if count is None:
        return 0
    if type(count) is not int or count < 1:
        raise CodecError(f"requested output {name!r}: classification must be a positive integer")
    return count


def classes_entry(
    name: str, array: np.ndarray, count: int, binary: bool, chunks: list, batched: bool = False
) -> dict:
    """An HTTP answer's entry for output ``name`` classified (binary: its bytes go to
    ``chunks``, as ``vmpool.codec_binary.binary_entry`` does)."""
    labels = classify(name, array, count, batched)
    entry = {"name": name, "datatype": "BYTES", "shape": list(labels.shape)}
    if not binary:
        return {**entry, "data": bytes_strings(labels)}
    payload = np.frombuffer(bytes_payload(labels), dtype=np.uint8)
    chunks.append(payload)
    return {**entry, "parameters": {"binary_data_size": payload.nbytes}}
