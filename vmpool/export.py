"""Turn a torch module (a zoo model, or any ``torch.export`` program) into a model artifact.

Every artifact has a dynamic batch dimension (``-1`` first in each config shape) up to its
``max_batch_size``; the program keeps the high-level ATen ops (conv2d, batch_norm, linear, ...)
that ``burst.graph`` walks.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from vmpool import wire, zoo
from vmpool.artifact import (
    CONFIG_FILE,
    PROGRAM_FILE,
    Artifact,
    ArtifactError,
    ModelConfig,
    TensorSpec,
    config_to_toml,
    validate_name,
    write_artifact,
)

TRACE_BATCH = 2  # batch 0 and 1 get specialised by the tracer; 2 keeps the dimension symbolic


@contextlib.contextmanager
def _quiet_torch_export():
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


def _default_names(names: Sequence[str] | None, count: int, stem: str) -> tuple[str, ...]:
    if names is None:
        return (stem,) if count == 1 else tuple(f"{stem}__{i}" for i in range(count))
    names = tuple(str(n) for n in names)
    if len(names) != count:
        raise ArtifactError(f"got {len(names)} {stem} names for {count} {stem}s")
    if len(set(names)) != count:
        raise ArtifactError(f"{stem} names must be unique, got {list(names)}")
    return names


def _spec(name: str, value) -> TensorSpec:
    """TensorSpec from a (fake) tensor; symbolic dimensions become -1."""
    if not isinstance(value, torch.Tensor):
        raise ArtifactError(
            f"{name}: only tensor inputs and outputs are supported, got {type(value).__name__}"
        )
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
    return TensorSpec(name, datatype_of(value.dtype), shape)


def _user_tensors(program) -> tuple[list, list]:
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
    in_names = _default_names(input_names, len(example_inputs), "input")
    traced_inputs = tuple(_batch_to(t.detach(), TRACE_BATCH) for t in example_inputs)
    # a range of 1..1 would make the tracer specialise; the extra headroom is harmless
    batch = torch.export.Dim("batch", min=1, max=max(int(max_batch_size), TRACE_BATCH))
    was_training = module.training
    module.eval()
    try:
        program = torch.export.export(
            module, traced_inputs, dynamic_shapes=tuple({0: batch} for _ in traced_inputs)
        )
    except Exception as exc:  # torch raises several unrelated types for the same user problem
        raise ArtifactError(
            f"cannot export {name!r} with a dynamic batch dimension: {_explain_export_error(exc)}"
        ) from exc
    finally:
        module.train(was_training)
    inputs, outputs = _user_tensors(program)
    out_names = _default_names(output_names, len(outputs), "output")
    specs_in = tuple(_spec(n, v) for n, v in zip(in_names, inputs, strict=True))
    specs_out = tuple(_spec(n, v) for n, v in zip(out_names, outputs, strict=True))
    for spec in (*specs_in, *specs_out):
        if not spec.shape or spec.shape[0] != -1:
            raise ArtifactError(
                f"cannot export {name!r}: {spec.name} has no dynamic batch "
                f"dimension (shape {list(spec.shape)})"
            )
    cfg = ModelConfig(
        name=name,
        inputs=specs_in,
        outputs=specs_out,
        max_batch_size=int(max_batch_size),
        slo_ms=float(slo_ms),
        max_queue_delay_ms=float(max_queue_delay_ms),
        extra=dict(extra or {}),
    )
    with _quiet_torch_export():  # write_artifact's "model.pt2.tmp" name draws a suffix warning
        return write_artifact(repo, program, cfg)


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """A state_dict saved with ``torch.save``; unwraps {"state_dict": ...} and DataParallel."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"weights file {path} not found") from None
    except Exception as exc:
        raise ArtifactError(
            f"cannot read weights {path}: not a torch.save state_dict ({type(exc).__name__})"
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ArtifactError(f"weights {path}: expected a state_dict (name -> tensor)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def apply_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` strictly; ArtifactError naming the first mismatched keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
    ):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{label} {len(keys)}: {', '.join(keys[:3])}{more}")
    if problems:
        raise ArtifactError(f"weights do not fit {what}: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


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


def _load_user_program(path: Path):
    if not path.is_file():
        raise ArtifactError(f"program file {path} not found")
    if not zipfile.is_zipfile(path):  # checked first: torch logs a traceback on garbage
        raise ArtifactError(
            f"{path} is not a torch.export program (.pt2 saved with "
            f"torch.export.save): not a zip archive"
        )
    with zipfile.ZipFile(path) as archive:
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in archive.namelist()):
            raise ArtifactError(
                f"{path} is a torch.save file (a state_dict or checkpoint), not a program: save "
                f"with torch.export.save, or export a zoo model with these weights"
            )
    try:
        with _quiet_torch_export():  # it logs a traceback before raising; we explain instead
            return torch.export.load(str(path))
    except Exception as exc:
        raise ArtifactError(
            f"{path} is not a readable torch.export program (.pt2 saved with "
            f"torch.export.save): {type(exc).__name__}"
        ) from exc


def _batch_upper_bound(program, value: torch.Tensor) -> int | None:
    """The largest batch the program accepts, if its batch dimension is bounded."""
    expr = getattr(value.shape[0], "node", None)
    expr = getattr(expr, "expr", None)
    bound = program.range_constraints.get(expr) if expr is not None else None
    upper = getattr(bound, "upper", None)
    if isinstance(upper, int) or getattr(upper, "is_Integer", False):
        return int(upper)
    return None  # unbounded (int_oo) or unknown


def import_program(
    path,
    repo,
    name: str,
    *,
    max_batch_size: int = 8,
    slo_ms: float = 500.0,
    on_warning: Callable[[str], None] | None = None,
) -> Artifact:
    """Bring your own model: copy a ``torch.export.save`` program into REPO/NAME with a config.

    Input names are the program's argument names; symbolic dimensions become -1. A program
    whose batch dimension is static gets ``max_batch_size = 1`` and its static shapes; a
    bounded batch dimension caps ``max_batch_size``. Either change is told to ``on_warning``.
    """
    validate_name(name)
    if int(max_batch_size) < 1:
        raise ArtifactError(f"max_batch_size must be >= 1, got {max_batch_size}")
    path = Path(path)
    program = _load_user_program(path)
    inputs, outputs = _user_tensors(program)
    if not inputs or not outputs:
        raise ArtifactError(f"{path}: the program needs at least one tensor input and output")
    specs_in = tuple(
        _spec(n, v) for n, v in zip(program.graph_signature.user_inputs, inputs, strict=True)
    )
    specs_out = tuple(
        _spec(n, v)
        for n, v in zip(_default_names(None, len(outputs), "output"), outputs, strict=True)
    )
    dynamic_batch = all(s.shape and s.shape[0] == -1 for s in specs_in)
    asked = int(max_batch_size)
    if dynamic_batch:
        bounds = [b for b in (_batch_upper_bound(program, v) for v in inputs) if b is not None]
        max_batch_size = min([asked, *bounds])
        if max_batch_size < asked and on_warning is not None:
            on_warning(
                f"max batch size {asked} capped at {max_batch_size}: the program's batch "
                f"dimension goes up to {max_batch_size} (export it with a larger "
                f"torch.export.Dim max to allow more)"
            )
    else:
        max_batch_size = 1
        if asked != 1 and on_warning is not None:
            shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in specs_in)
            on_warning(
                f"max batch size set to 1, not {asked}: the program has a fixed batch "
                f"size ({shapes}); export it with a dynamic batch dimension "
                f"(torch.export.Dim) to batch requests"
            )
    cfg = ModelConfig(
        name=name,
        inputs=specs_in,
        outputs=specs_out,
        max_batch_size=max_batch_size,
        slo_ms=float(slo_ms),
        extra={"source": f"program:{path.name}", "dynamic_batch": dynamic_batch},
    )
    directory = Path(repo) / name
    directory.mkdir(parents=True, exist_ok=True)
    # copy then rename, so a reader never sees half a program
    tmp_program = directory / (PROGRAM_FILE + ".tmp")
    shutil.copyfile(path, tmp_program)
    tmp_program.replace(directory / PROGRAM_FILE)
    tmp_cfg = directory / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(config_to_toml(cfg))
    tmp_cfg.replace(directory / CONFIG_FILE)
    return Artifact(cfg, directory)
