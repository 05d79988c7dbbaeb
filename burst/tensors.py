"""Binary tensor transport between master and workers: inline base64 or by object-store key.

A tensor reference in an event is ``{"dtype", "shape", "b64"}`` (inline) or
``{"dtype", "shape", "key"}`` (in the store). Never JSON lists of numbers.
"""

from __future__ import annotations

import base64

import torch

# JSON framing around the base64 text (field names, dtype, shape, other event fields)
_ENVELOPE_BYTES = 4096


class TransportError(Exception):
    """A tensor reference is malformed or its bytes are missing."""


def tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def tensor_from_bytes(data: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    try:
        dt = getattr(torch, dtype)
        if not isinstance(dt, torch.dtype):
            raise AttributeError(dtype)
    except AttributeError:
        raise TransportError(f"unknown dtype {dtype!r}") from None
    count = 1
    for d in shape:
        count *= int(d)
    expected = count * torch.empty((), dtype=dt).element_size()
    if len(data) != expected:
        raise TransportError(
            f"tensor needs {expected} bytes for {dtype}{list(shape)}, got {len(data)}"
        )
    if not data:
        return torch.empty([int(d) for d in shape], dtype=dt)
    return (
        torch.frombuffer(bytearray(data), dtype=torch.uint8)
        .view(dt)
        .reshape([int(d) for d in shape])
    )


def inline_size(nbytes: int) -> int:
    """Size of a tensor of ``nbytes`` inside a JSON event (base64 plus framing)."""
    return 4 * ((nbytes + 2) // 3) + _ENVELOPE_BYTES


def encode_inline(t: torch.Tensor) -> dict:
    return {
        "dtype": str(t.dtype).removeprefix("torch."),
        "shape": list(t.shape),
        "b64": base64.b64encode(tensor_bytes(t)).decode("ascii"),
    }


async def send(
    t: torch.Tensor, store, key: str, *, transport: str = "auto", limit_bytes: int = 6 * 1024 * 1024
) -> dict:
    """A reference to ``t``: inline if it fits under ``limit_bytes`` (or forced), else by key:
    "queue" and "auto" through the store as configured (an SQS store: its queues), "store"
    through the object store (an SQS store's backing one: the key says so, ``object_key``)."""
    nbytes = t.numel() * t.element_size()
    if transport == "inline" or (transport == "auto" and inline_size(nbytes) <= limit_bytes):
        return encode_inline(t)
    if transport == "store":
        from burst.store.sqs_names import object_key

        key = object_key(key)
    await store.put(key, tensor_bytes(t))
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "key": key}


async def receive(ref: dict, store) -> torch.Tensor:
    """The tensor a reference points to."""
    if not isinstance(ref, dict) or "dtype" not in ref or "shape" not in ref:
        raise TransportError("tensor reference needs dtype and shape")
    if "b64" in ref:
        try:
            # non-strict decoding is ~10x faster; the byte count check below catches truncation
            data = base64.b64decode(ref["b64"])
        except (ValueError, TypeError) as exc:
            raise TransportError(f"bad base64 tensor data: {exc}") from exc
    elif "key" in ref:
        from burst.store.base import StoreError

        try:
            data = await store.get(ref["key"])
        except StoreError as exc:
            problem = "is not in the store" if exc.missing else "cannot be read"
            raise TransportError(f"tensor {ref['key']} {problem}: {exc}") from exc
    else:
        raise TransportError("tensor reference needs 'b64' or 'key'")
    return tensor_from_bytes(data, ref["dtype"], ref["shape"])
