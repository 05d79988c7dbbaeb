"""Turn a torch module (a zoo model, or any ``torch.export`` program) into a model artifact.

Every artifact has a dynamic batch dimension (``-1`` first in each config shape) up to its
``max_batch_size``; the program keeps the high-level ATen ops (conv2d, batch_norm, linear, ...)
that ``burst.graph`` walks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from vmpool import zoo
from vmpool.artifact import (
    Artifact,
    ArtifactError,
    ModelConfig,
    TensorSpec,
    validate_name,
    write_artifact,
)
from vmpool.byo import import_program
from vmpool.program_specs import (
    datatype_of,
    default_names,
    quiet_torch_export,
    tensor_spec,
    user_tensors,
)
from vmpool.weights import apply_state_dict, load_state_dict_file

# re-exported: the public surface of ``vmpool.export`` predates the split into these modules
__all__ = [
    "TRACE_BATCH",
    "apply_state_dict",
    "datatype_of",
    "export_module",
    "export_zoo",
    "import_program",
    "load_state_dict_file",
]

TRACE_BATCH = 2  # batch 0 and 1 get specialised by the tracer; 2 keeps the dimension symbolic


def _explain_export_error(exc: Exception) -> str:
    text = str(exc).strip()
    if "specialized it to be a constant" in text:
        return (
            "the model fixes the batch size (code such as x.reshape(2, -1) or x.view(1, ...)"
            "); make it batch-agnostic, e.g. x.flatten(1) or x.view(x.shape[0], -1)"
        )
    lines = [line.strip(" -") for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(exc).__name__


def _batch_to(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    if tensor.dim() == 0:
        raise ArtifactError("example inputs need a leading batch dimension, got a scalar")
    if tensor.shape[0] >= batch:
        return tensor[:batch]
    repeats = -(-batch // tensor.shape[0])
    return torch.cat([tensor] * repeats)[:batch]


def _trace(module: nn.Module, example_inputs: tuple, name: str, max_batch_size: int):
    """``module`` exported in eval mode with a symbolic batch dimension on every input."""
    traced_inputs = tuple(_batch_to(t.detach(), TRACE_BATCH) for t in example_inputs)
    # a range of 1..1 would make the tracer specialise; the extra headroom is harmless
    batch = torch.export.Dim("batch", min=1, max=max(max_batch_size, TRACE_BATCH))
    was_training = module.training
    module.eval()
    try:
        return torch.export.export(
            module, traced_inputs, dynamic_shapes=tuple({0: batch} for _ in traced_inputs)
        )
    except Exception as exc:  # torch raises several unrelated types for the same user problem
        raise ArtifactError(
            f"cannot export {name!r} with a dynamic batch dimension: {_explain_export_error(exc)}"
        ) from exc
    finally:
        module.train(was_training)


def _require_batch(name: str, specs: Sequence[TensorSpec]) -> None:
    """ArtifactError if a tensor lacks the dynamic batch dimension."""
    for spec in specs:
        if not spec.shape or spec.shape[0] != -1:
            raise ArtifactError(
                f"cannot export {name!r}: {spec.name} has no dynamic batch "
                f"dimension (shape {list(spec.shape)})"
            )


def export_module(
    module: nn.Module,
    example_inputs: tuple,
    *,
    name: str,
    repo,
    max_batch_size: int = 8,
    slo_ms: float = 500.0,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    max_queue_delay_ms: float = 2.0,
    extra: Mapping | None = None,
) -> Artifact:
    """Export ``module`` (in eval mode) with a dynamic batch dimension and write REPO/NAME.

    ``example_inputs`` are batched tensors; only their per-sample shapes and dtypes matter.
    Raises ArtifactError if the model cannot take a dynamic batch.
    """
    validate_name(name)
    if int(max_batch_size) < 1:
        raise ArtifactError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if slo_ms <= 0:
        raise ArtifactError(f"slo_ms must be positive, got {slo_ms}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not example_inputs or not all(isinstance(t, torch.Tensor) for t in example_inputs):
        raise ArtifactError("example_inputs must be a non-empty tuple of tensors")
    in_names = default_names(input_names, len(example_inputs), "input")
    program = _trace(module, example_inputs, name, int(max_batch_size))
    inputs, outputs = user_tensors(program)
    out_names = default_names(output_names, len(outputs), "output")
    specs_in = tuple(tensor_spec(n, v) for n, v in zip(in_names, inputs, strict=True))
    specs_out = tuple(tensor_spec(n, v) for n, v in zip(out_names, outputs, strict=True))
    _require_batch(name, (*specs_in, *specs_out))
    cfg = ModelConfig(
        name=name,
        inputs=specs_in,
        outputs=specs_out,
        max_batch_size=int(max_batch_size),
        slo_ms=float(slo_ms),
        max_queue_delay_ms=float(max_queue_delay_ms),
        extra=dict(extra or {}),
    )
    with quiet_torch_export():  # write_artifact's "model.pt2.tmp" name draws a suffix warning
        return write_artifact(repo, program, cfg)


def export_zoo(
    name: str,
    repo,
    *,
    weights=None,
    max_batch_size: int | None = None,
    size: tuple[int, int] | None = None,
    seed: int = 0,
    slo_ms: float | None = None,
    artifact_name: str | None = None,
    options: dict | None = None,
) -> Artifact:
    """Export zoo model ``name`` to REPO/(artifact_name or name).

    ``weights`` is a state_dict file (torchvision key names); without it the weights are the
    seeded random ones from ``zoo.build(name, seed)``. ``size`` (H, W) sets a CNN's input size.
    """
    try:
        entry = zoo.entry(name)
        example = zoo.example_input(name, TRACE_BATCH, size, seed)
    except (KeyError, ValueError) as exc:
        raise ArtifactError(exc.args[0]) from None
    try:
        module = zoo.build(name, seed, **(options or {}))
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None
    source = f"zoo:{name}"
    if weights is not None:
        apply_state_dict(module, load_state_dict_file(weights), f"zoo model {name}")
        source += f" weights:{Path(weights).name}"
    return export_module(
        module,
        (example,),
        name=artifact_name or name,
        repo=repo,
        max_batch_size=entry.max_batch_size if max_batch_size is None else max_batch_size,
        slo_ms=zoo.default_slo_ms(name, options) if slo_ms is None else slo_ms,
        extra={"source": source, "parameters": zoo.param_count(module), **(options or {})},
    )
