"""Bring your own model: copy a ``torch.export.save`` program into a repository with a config."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from vmpool.artifact import (
    CONFIG_FILE,
    PROGRAM_FILE,
    Artifact,
    ArtifactError,
    ModelConfig,
    TensorSpec,
    config_to_toml,
    validate_name,
)
from vmpool.program_specs import default_names, quiet_torch_export, tensor_spec, user_tensors


def _load_user_program(path: Path):
    if not path.is_file():
        raise ArtifactError(f"program file {path} not found")
    if not zipfile.is_zipfile(path):  # checked first: torch logs a traceback on garbage
        raise ArtifactError(
            f"{path} is not a torch.export program (.pt2 saved with "
            f"torch.export.save): not a zip archive"
        )
    try:  # a damaged directory raises past BadZipFile (UnicodeDecodeError on a name)
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            # torch reads members without their CRCs: a flipped weight byte served wrong answers
            damaged = archive.testzip()
    except Exception as exc:
        raise ArtifactError(
            f"{path} is not a torch.export program (.pt2 saved with torch.export.save): a "
            f"damaged zip archive ({type(exc).__name__})"
        ) from None
    if damaged is not None:
        raise ArtifactError(
            f"{path} is damaged: {damaged} does not match its checksum; save it again with "
            f"torch.export.save"
        )
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise ArtifactError(
            f"{path} is a torch.save file (a state_dict or checkpoint), not a program: save "
            f"with torch.export.save, or export a zoo model with these weights"
        )
    try:
        with quiet_torch_export():  # it logs a traceback before raising; we explain instead
            return torch.export.load(str(path))
    except Exception as exc:
        raise ArtifactError(
            f"{path} is not a readable torch.export program (.pt2 saved with "
            f"torch.export.save): {type(exc).__name__}"
        ) from exc


def _check_rebuilds(path: Path, program) -> None:
    """The server serves ``program.module()``: a program it cannot rebuild is refused in one
    line, before anything is written. A submodule named like an attribute of torch.fx's
    GraphModule (``meta``, ``graph``, ``code``) was imported, then failed every load."""
    try:
        with quiet_torch_export():
            program.module()
    except Exception as exc:
        clash = _clashing_submodule(program)
        if clash is not None:
            raise ArtifactError(
                f"{path}: submodule {clash!r} cannot be served: torch.export's program.module() "
                f"cannot rebuild a submodule with that name (torch.fx.GraphModule has its own "
                f"attribute {clash!r}); rename it (e.g. self.{clash}_net) and export again"
            ) from exc
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ArtifactError(
            f"{path}: torch.export's program.module(), which the server loads, fails on this "
            f"program ({type(exc).__name__}: {first})"
        ) from exc


def _clashing_submodule(program) -> str | None:
    """The first top-level submodule whose name a bare GraphModule already uses, if any."""
    taken = torch.fx.GraphModule(torch.nn.Module(), torch.fx.Graph())
    for fqn in (*program.state_dict, *program.constants):
        head, dot, _ = fqn.partition(".")
        if dot and hasattr(taken, head):
            return head
    return None


def _output_names(program, count: int) -> tuple[str, ...]:
    """A dict output's keys (``{"mask": m, "logits": y}``), else output / output__0, ..."""
    spec = program.call_spec.out_spec
    keys = getattr(spec, "context", None) if getattr(spec, "type", None) is dict else None
    if keys and len(keys) == count and all(isinstance(k, str) and k for k in keys):
        return default_names(keys, count, "output")
    return default_names(None, count, "output")


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
    _check_rebuilds(path, program)
    inputs, outputs = user_tensors(program)
    if not inputs or not outputs:
        raise ArtifactError(f"{path}: the program needs at least one tensor input and output")
    specs_in = tuple(
        tensor_spec(n, v) for n, v in zip(program.graph_signature.user_inputs, inputs, strict=True)
    )
    specs_out = tuple(
        tensor_spec(n, v)
        for n, v in zip(_output_names(program, len(outputs)), outputs, strict=True)
    )
    _check_batch_axis(path, specs_in, specs_out)
    dynamic_batch = all(s.shape and s.shape[0] == -1 for s in specs_in)
    max_batch_size = _batch_limit(program, inputs, specs_in, int(max_batch_size), on_warning)
    cfg = ModelConfig(
        name=name,
        inputs=specs_in,
        outputs=specs_out,
        max_batch_size=max_batch_size,
        slo_ms=float(slo_ms),
        extra={"source": f"program:{path.name}", "dynamic_batch": dynamic_batch},
    )
    return _write(path, Path(repo) / name, cfg)


def _check_batch_axis(path: Path, specs_in, specs_out) -> None:
    """Each output must lead with the inputs' batch dimension: the server stacks requests along
    it and hands each its rows back (an output without it failed every request)."""
    first = specs_in[0].shape[0] if specs_in[0].shape else None
    for spec in specs_out:
        if not spec.shape or spec.shape[0] != first:
            raise ArtifactError(
                f"{path}: output {spec.name!r} has shape {list(spec.shape)}, which does not "
                f"lead with the batch dimension of input {specs_in[0].name!r} "
                f"{list(specs_in[0].shape)}; return one row per input row (keepdim, or "
                f"unsqueeze(0) and expand) and export again"
            )


def _batch_limit(
    program,
    inputs: list,
    specs_in: tuple[TensorSpec, ...],
    asked: int,
    on_warning: Callable[[str], None] | None,
) -> int:
    """The max batch size the program allows: ``asked``, capped by a bounded batch dimension,
    or 1 for a fixed batch size; a change from ``asked`` is told to ``on_warning``."""
    if all(s.shape and s.shape[0] == -1 for s in specs_in):
        bounds = [b for b in (_batch_upper_bound(program, v) for v in inputs) if b is not None]
        max_batch_size = min([asked, *bounds])
        if max_batch_size < asked and on_warning is not None:
            on_warning(
                f"max batch size {asked} capped at {max_batch_size}: the program's batch "
                f"dimension goes up to {max_batch_size} (export it with a larger "
                f"torch.export.Dim max to allow more)"
            )
        return max_batch_size
    # a fixed batch of n rows: every request is those n (max 1 failed every request of n > 1:
    # "internal error: batch of 2 exceeds max_batch_size 1")
    fixed = specs_in[0].shape[0] if specs_in[0].shape and specs_in[0].shape[0] > 0 else 1
    unbatched = [s for s in specs_in if not (s.shape and s.shape[0] == -1)]
    if asked != fixed and on_warning is not None and len(unbatched) < len(specs_in):
        shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in unbatched)
        on_warning(  # some inputs batch, these do not: rows of requests cannot be stacked
            f"max batch size set to {fixed}, not {asked}: input {shapes} has no batch "
            f"dimension, so requests are not batched; give it one (a row per request, "
            f"torch.export.Dim like the others) to batch them"
        )
    elif asked != fixed and on_warning is not None:
        shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in specs_in)
        on_warning(
            f"max batch size set to {fixed}, not {asked}: the program has a fixed batch "
            f"size ({shapes}); export it with a dynamic batch dimension "
            f"(torch.export.Dim) to batch requests"
        )
    return fixed


def _write(program_path: Path, directory: Path, cfg: ModelConfig) -> Artifact:
    directory.mkdir(parents=True, exist_ok=True)
    # copy then rename, so a reader never sees half a program
    tmp_program = directory / (PROGRAM_FILE + ".tmp")
    shutil.copyfile(program_path, tmp_program)
    tmp_program.replace(directory / PROGRAM_FILE)
    tmp_cfg = directory / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(config_to_toml(cfg))
    tmp_cfg.replace(directory / CONFIG_FILE)
    return Artifact(cfg, directory)
