"""What an exported program looks like from outside: its user tensors as config TensorSpecs.

Shared by ``export`` (modules we trace) and ``byo`` (programs users bring).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

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


def input_ranges(program, names: Sequence[str]) -> dict[str, tuple[tuple[int, int, int], ...]]:
    """Per user input (by config name), the (dim, min, max) of each dynamic dimension past the
    batch that the program bounds (a ``torch.export.Dim(min=, max=)``; no max: a huge one).
    A request outside them failed inside the graph ("Guard failed: x.size()[1] >= 4", a 500
    from the model); ``check_ranges`` makes it a 400 before it is batched."""
    inputs, _ = user_tensors(program)
    constraints = program.range_constraints
    ranges: dict[str, tuple[tuple[int, int, int], ...]] = {}
    for name, value in zip(names, inputs, strict=False):
        dims = []
        for d, size in enumerate(getattr(value, "shape", ())[1:], start=1):
            bound = constraints.get(getattr(getattr(size, "node", None), "expr", None))
            if bound is None:
                continue  # a static size (the config's shape) or a derived one
            lo, hi = int(bound.lower), bound.upper
            dims.append((d, lo, int(hi) if hi.is_finite else 1 << 62))
        if dims:
            ranges[name] = tuple(dims)
    return ranges
