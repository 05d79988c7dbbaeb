"""Binary infer bodies forwarded as they came, on the gateway -> replica hop and back.

The gateway decodes a request (every check: structure, datatypes, shapes, the model's inputs and
outputs, tenants, routing) into numpy views of the body's bytes. When the replica would answer
the very body the gateway would have built from the answer, re-encoding is wasted work on both
hops: the request is sent as its own bytes (``WireInputs``) and the answer's bytes go back to the
client as they came (``WireOutputs``). That holds when the client asked for binary outputs only,
sent every input as binary data and no parameter but ``binary_data_output``: the replica
then decodes the same request and encodes its answer as the gateway's ``encode_answer`` does,
with the model's name and version, which the gateway checks on the answer's first bytes.
Anything else (JSON tensors, merged calls, the burst path) decodes and re-encodes as before.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import orjson

from vmpool.codec import InferRequest, decode_response

_FORWARDED_PARAMETERS = {"binary_data_output"}  # the only request parameter a replica may see


class WireInputs(dict):
    """A request's decoded inputs (views into ``body``) that may travel as ``body`` itself."""

    __slots__ = ("body", "header_length")

    def __init__(self, inputs: dict[str, np.ndarray], body: bytes, header_length: int):
        super().__init__(inputs)
        self.body = body
        self.header_length = header_length


def wire_inputs(req: InferRequest, body: bytes, header_length: int | None) -> dict:
    """``req.inputs``, as ``WireInputs`` when the body may be forwarded as it came (see the module
    docstring), else unchanged."""
    if header_length is None or not req.parameters.keys() <= _FORWARDED_PARAMETERS:
        return req.inputs
    if req.outputs is None:
        if not req.binary_output:
            return req.inputs
    elif not all(r.binary or (r.binary is None and req.binary_output) for r in req.outputs):
        return req.inputs  # (tritonclient names its outputs, each binary, and no parameters)
    binary_bytes = 0
    for array in req.inputs.values():
        binary_bytes += array.nbytes
    if binary_bytes != len(body) - header_length:  # an input sent as a JSON list
        return req.inputs
    return WireInputs(req.inputs, body, header_length)


class WireOutputs(Mapping):
    """A replica's binary answer, kept as its bytes; decoded only if someone reads a tensor."""

    __slots__ = ("body", "header_length", "_decoded")

    def __init__(self, body: bytes, header_length: int):
        self.body = body
        self.header_length = header_length
        self._decoded: dict[str, np.ndarray] | None = None

    def _outputs(self) -> dict[str, np.ndarray]:
        if self._decoded is None:
            self._decoded = decode_response(self.body, self.header_length).outputs
        return self._decoded

    def __getitem__(self, name: str) -> np.ndarray:
        return self._outputs()[name]

    def __iter__(self):
        return iter(self._outputs())

    def __len__(self) -> int:
        return len(self._outputs())

    def answers(self, prefix: bytes) -> bool:
        """Whether these bytes are the answer the gateway would send: ``prefix`` is
        ``answer_prefix`` of the model the client asked for."""
        return self.body.startswith(prefix)


@functools.lru_cache(maxsize=256)
def answer_prefix(model_name: str, model_version: str | None) -> bytes:
    """The first bytes of ``encode_answer``'s body for this model (its JSON header's opening)."""
    head: dict = {"model_name": model_name}
    if model_version is not None:
        head["model_version"] = model_version
    return orjson.dumps(head)[:-1] + b","


def check_answer(body: bytes, header_length: int) -> None:
    """A cheap check of a forwarded answer: its JSON header parses and its binary tensors
    account for every byte after it (CodecError(502) otherwise, as ``decode_response``)."""
    from vmpool.wire import CodecError

    try:
        head = orjson.loads(memoryview(body)[:header_length])
        binary_bytes = sum([entry["parameters"]["binary_data_size"] for entry in head["outputs"]])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise CodecError(f"malformed response: {exc!r}", status=502) from None
    if binary_bytes != len(body) - header_length:
        raise CodecError("malformed response: binary sizes do not match the body", status=502)


__all__ = ["WireInputs", "WireOutputs", "answer_prefix", "check_answer", "wire_inputs"]
