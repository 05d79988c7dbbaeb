"""What an exported program looks like from outside: its user tensors as config TensorSpecs.

Shared by ``export`` (modules we trace) and ``byo`` (programs users bring).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch

from vmpool import wire
from vmpool.artifact import ArtifactError, TensorSpec


@contextlib.contextmanager
def quiet_torch_export():
    """Mute torch.export's warnings (tracebacks, the temp-file suffix) for the duration."""
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def datatype_of(dtype: torch.dtype) -> str:
    """Open Inference Protocol datatype for a torch dtype; ArtifactError if it has none."""
    try:
        return wire.datatype_of(dtype)
    except wire.CodecError as exc:
        raise ArtifactError(exc.message) from None


def default_names(names: Sequence[str] | None, count: int, stem: str) -> tuple[str, ...]:
    if names is None:
        return (stem,) if count == 1 else tuple(f"{stem}__{i}" for i in range(count))
    names = tuple(str(n) for n in names)
    if len(names) != count:
        raise ArtifactError(f"got {len(names)} {stem} names for {count} {stem}s")
    if len(set(names)) != count:
        raise ArtifactError(f"{stem} names must be unique, got {list(names)}")
    return names


def tensor_spec(name: str, value) -> TensorSpec:
    """TensorSpec from a (fake) tensor; symbolic dimensions become -1."""
    if not isinstance(value, torch.Tensor):
        raise ArtifactError(
            f"{name}: only tensor inputs and outputs are supported, got {type(value).__name__}"
        )
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
    return TensorSpec(name, datatype_of(value.dtype), shape)


def user_tensors(program) -> tuple[list, list]:
    """(input values, output values) of an ExportedProgram's user-facing signature."""
    signature = program.graph_signature
    user_inputs = set(signature.user_inputs)
    inputs = [
        node.meta.get("val")
        for node in program.graph.nodes
        if node.op == "placeholder" and node.name in user_inputs
    ]
    output_node = next(node for node in program.graph.nodes if node.op == "output")
    n_outputs = len(signature.user_outputs)
    # the output node lists mutated buffers first, then user outputs
    outputs = [getattr(arg, "meta", {}).get("val") for arg in output_node.args[0][-n_outputs:]]
    return inputs, outputs


class Bound(NamedTuple):
    """What a user input takes: sizes ``lo..hi`` of dimension ``dim``, or with ``dim`` None,
    values ``lo..hi``."""

    dim: int | None
    lo: int
    hi: int


def input_ranges(program, names: Sequence[str]) -> dict[str, tuple[Bound, ...]]:
    """Per user input (by config name), the (dim, min, max) of each dynamic dimension past the
    batch that the program bounds (a ``torch.export.Dim(min=, max=)``; no max: a huge one), and
    for integer ids that index an embedding table, its rows. A request outside them failed
    inside the graph ("Guard failed: x.size()[1] >= 4", a 500 from the model; a token id past
    the vocabulary "IndexError: index out of range in self", a 503); ``check_ranges`` makes it a
    400 before it is batched."""
    inputs, _ = user_tensors(program)
    constraints = program.range_constraints
    rows = _embedding_rows(program)
    ranges: dict[str, tuple[Bound, ...]] = {}
    for name, value, node_name in zip(
        names, inputs, program.graph_signature.user_inputs, strict=False
    ):
        dims = [Bound(None, 0, rows[node_name] - 1)] if node_name in rows else []
        for d, size in enumerate(getattr(value, "shape", ())[1:], start=1):
            bound = constraints.get(getattr(getattr(size, "node", None), "expr", None))
            if bound is None:
                continue  # a static size (the config's shape) or a derived one
            lo, hi = int(bound.lower), bound.upper
            dims.append(Bound(d, lo, int(hi) if hi.is_finite else 1 << 62))
        if dims:
            ranges[name] = tuple(dims)
    return ranges


def _embedding_rows(program) -> dict[str, int]:
    """User inputs (by graph name) read directly as the indices of an embedding: the fewest
    rows of the tables they index."""
    user = set(program.graph_signature.user_inputs)
    rows: dict[str, int] = {}
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.embedding.default:
            continue
        table, ids = node.args[0], node.args[1]
        value = getattr(table, "meta", {}).get("val")
        if getattr(ids, "name", None) in user and isinstance(value, torch.Tensor) and value.dim():
            size = value.shape[0]
            if isinstance(size, int):
                rows[ids.name] = min(rows.get(ids.name, size), size)
    return rows
