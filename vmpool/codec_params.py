"""The infer request parameters Triton reads itself, checked as Triton checks them.

``sequence_id``, ``sequence_start``, ``sequence_end``, ``priority``, ``timeout`` and (HTTP)
``binary_data_output`` have one type each; any other parameter is the model's and passes as
it came if it is a string, a number or a boolean (the protocol's ``$parameter``; Triton refuses
an object, a list or null, and keys starting with ``triton_``). Triton refuses a reserved one of the wrong type (server ``src/http_server.cc``
``ParseJsonTritonParams``: ``MemberAsUInt`` for ``priority`` and ``timeout``; gRPC
``src/grpc/infer_handler.cc`` ``SetInferenceRequestMetadata``), so a client that sends
``priority: "high"`` learns it here rather than after a deploy onto Triton. Triton's HTTP
answers that refusal 500 (its JSON reader's errors are INTERNAL); ours is a 400, the status
Triton gives the same request over gRPC (INVALID_ARGUMENT).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from vmpool.wire import CodecError

if TYPE_CHECKING:
    import numpy as np

UINT64_MAX = 2**64 - 1
_FLAGS = ("sequence_start", "sequence_end", "binary_data_output")


def _shown(value) -> str:
    text = json.dumps(value, default=str)  # as the client wrote it: true, "high"
    return text if len(text) <= 40 else text[:37] + "..."


def _uint64(value) -> bool:
    return type(value) is int and 0 <= value <= UINT64_MAX


def check_json_parameters(params: dict) -> bool:
    """Refuse (CodecError 400) a reserved request parameter of the wrong type; return the
    request's ``binary_data_output`` (False when absent)."""
    for name in _FLAGS:
        if name in params and type(params[name]) is not bool:
            raise CodecError(f"{name} must be a boolean, got {_shown(params[name])}")
    for name in ("priority", "timeout"):
        if name in params and not _uint64(params[name]):
            raise CodecError(
                f"'{name}' must be an unsigned integer (0 to 2**64-1), got {_shown(params[name])}"
            )
    if "sequence_id" in params:
        value = params["sequence_id"]
        if not (_uint64(value) or isinstance(value, str)):
            raise CodecError(
                "'sequence_id' must be an unsigned integer or a string, got " + _shown(value)
            )
    for name, value in params.items():
        if name.startswith("triton_"):
            raise CodecError(
                f"parameter {_shown(name)}: keys starting with 'triton_' are reserved for "
                "Triton and may not be given"
            )
        if value is None or isinstance(value, (dict, list)):
            raise CodecError(
                f"parameter {_shown(name)} must be a string, a number or a boolean, "
                f"got {_shown(value)}"
            )
    return params.get("binary_data_output", False)


class TimedInputs(dict):
    """A request's inputs on the gateway -> replica hop with the queue budget its Triton
    ``timeout`` parameter left: ``deadline_s`` on the gateway's monotonic clock. The replica
    client sends what remains of it as the request's ``timeout`` (the replica's batcher drops
    the request if it waits past it); such a request is never merged with others."""

    __slots__ = ("deadline_s",)

    def __init__(self, inputs: dict[str, np.ndarray], deadline_s: float):
        super().__init__(inputs)
        self.deadline_s = deadline_s


def queue_timeout(inputs) -> dict | None:
    """``{"timeout": us}``: what is left of a ``TimedInputs``' budget, sent on to the replica (at
    least 1 us: spent, it still runs if the replica takes it at once, as Triton's would); None
    for other inputs."""
    if type(inputs) is not TimedInputs:
        return None
    left_us = round((inputs.deadline_s - time.monotonic()) * 1e6)
    return {"timeout": min(max(1, left_us), UINT64_MAX)}  # (2**64 - 1 came back a hair over)
