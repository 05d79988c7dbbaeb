"""Checking a decoded infer request against a model's config (names, datatypes, shapes, batch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from vmpool.wire import CodecError, datatype_of

if TYPE_CHECKING:
    from vmpool.artifact import ModelConfig
    from vmpool.codec import InferRequest


def validate_inputs(req: InferRequest, cfg: ModelConfig) -> None:
    """Check a decoded request against the model's config; CodecError(400) if it does not fit."""
    known = {t.name for t in cfg.inputs}
    unknown = sorted(set(req.inputs) - known)
    if unknown:
        raise CodecError(
            f"model {cfg.name} has no input {unknown[0]!r}; "
            f"inputs are {', '.join(t.name for t in cfg.inputs)}"
        )
    batch: int | None = None
    for spec in cfg.inputs:
        array = req.inputs.get(spec.name)
        if array is None:
            raise CodecError(f"model {cfg.name}: missing input {spec.name!r}")
        got = datatype_of(array)
        if got != spec.datatype:
            raise CodecError(
                f"input {spec.name!r}: datatype {got} but model {cfg.name} expects {spec.datatype}"
            )
        shape = array.shape
        if len(shape) != len(spec.shape) or any(
            want != -1 and want != d for want, d in zip(spec.shape, shape, strict=True)
        ):
            raise CodecError(
                f"input {spec.name!r}: shape {list(shape)} does not match "
                f"{list(spec.shape)} (-1 is any size)"
            )
        if spec.shape and spec.shape[0] == -1:
            if shape[0] < 1:
                raise CodecError(  # (why not served: docs/grpc.md, "Empty batches")
                    f"input {spec.name!r}: batch size must be at least 1 (an empty batch is "
                    f"refused, not run: send at least one row)"
                )
            if shape[0] > cfg.max_batch_size:
                raise CodecError(
                    f"input {spec.name!r}: batch size {shape[0]} exceeds "
                    f"max_batch_size {cfg.max_batch_size} of model {cfg.name}"
                )
            if batch is not None and shape[0] != batch:
                raise CodecError(f"inputs disagree on batch size ({batch} vs {shape[0]})")
            batch = shape[0]
    if req.outputs is not None:
        names = {t.name for t in cfg.outputs}
        for r in req.outputs:
            if r.name not in names:
                raise CodecError(
                    f"model {cfg.name} has no output {r.name!r}; "
                    f"outputs are {', '.join(t.name for t in cfg.outputs)}"
                )


def check_ranges(req: InferRequest, ranges: dict, model: str) -> None:
    """CodecError(400) for an input size outside the range its program was exported for, or
    ids outside the embedding table they index (``program_specs.input_ranges``)."""
    for name, dims in ranges.items():
        array = req.inputs.get(name)
        if array is None:
            continue
        for d, lo, hi in dims:
            if d is None:  # ids into an embedding table of hi + 1 rows
                if array.size and not lo <= array.min() <= array.max() <= hi:
                    bad = array.min() if array.min() < lo else array.max()
                    raise CodecError(
                        f"input {name!r}: value {bad} is outside {lo}..{hi}, the rows of the "
                        f"table model {model} looks it up in"
                    )
                continue
            if not lo <= array.shape[d] <= hi:
                limit = f"at least {lo}" if array.shape[d] < lo else f"at most {hi}"
                raise CodecError(
                    f"input {name!r}: dimension {d} is {array.shape[d]}, model {model} "
                    f"takes {limit} there"
                )


def repository_parameters(raw: bytes, action: str) -> dict:
    """The ``parameters`` of a repository ``load`` or ``unload`` body (empty: none); CodecError
    (400) for a body that is not a JSON object, parameters that are not one, a load's ``config``
    or ``file:`` override (ignoring it would load the repository's model in place of the one
    asked for) or an ``unload_dependents`` that is not a boolean (as Triton refuses it)."""
    try:
        params = orjson.loads(raw).get("parameters") or {} if raw.strip() else {}
    except (orjson.JSONDecodeError, AttributeError):
        raise CodecError("the request body must be a JSON object") from None
    if not isinstance(params, dict):
        raise CodecError("'parameters' must be an object")
    if action == "load" and any(k == "config" or k.startswith("file:") for k in params):
        raise CodecError("loading with config or file: parameters is not supported")
    if not isinstance(params.get("unload_dependents", False), bool):
        raise CodecError("'unload_dependents' must be true or false")
    return params
