"""Model artifacts: ``REPO/NAME/model.pt2`` (a ``torch.export`` program) plus ``config.toml``.

The config is the contract every other part reads: input and output tensors (name, datatype,
shape with ``-1`` for the dynamic batch dimension), the maximum batch size, the latency SLO and
the dynamic batching knobs. It is plain TOML so a person can read and edit it.
"""

from __future__ import annotations

import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from vmpool.wire import DATATYPES  # noqa: F401  (re-exported: the one datatype table)

PROGRAM_FILE = "model.pt2"
CONFIG_FILE = "config.toml"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# one torch.export.load at a time per process (see Artifact.load_program)
_LOAD_LOCK = threading.Lock()


class ArtifactError(Exception):
    """A model artifact is missing or malformed."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 marks a dynamic dimension (the batch dimension is first)

    def to_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelConfig:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 8
    slo_ms: float = 500.0
    max_queue_delay_ms: float = 2.0
    version: str = "1"
    platform: str = "pytorch_torch_export"
    extra: dict = field(default_factory=dict, compare=False)

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise ArtifactError(
            f"invalid model name {name!r}: use letters, digits, '_', '.', '-' (max 128)"
        )
    return name


def _spec(raw: dict, where: str) -> TensorSpec:
    try:
        name, datatype, shape = raw["name"], raw["datatype"], tuple(int(d) for d in raw["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: each tensor needs name, datatype and shape ({exc})") from exc
    if datatype not in DATATYPES:
        raise ArtifactError(f"{where}: unsupported datatype {datatype!r}")
    return TensorSpec(str(name), datatype, shape)


def config_from_dict(raw: dict, default_name: str = "") -> ModelConfig:
    name = validate_name(str(raw.get("name", default_name)))
    batching = raw.get("batching", {})
    inputs = tuple(_spec(t, f"model {name} input") for t in raw.get("inputs", []))
    outputs = tuple(_spec(t, f"model {name} output") for t in raw.get("outputs", []))
    if not inputs or not outputs:
        raise ArtifactError(f"model {name}: config needs at least one input and one output")
    known = {
        "name",
        "batching",
        "inputs",
        "outputs",
        "max_batch_size",
        "slo_ms",
        "version",
        "platform",
    }
    return ModelConfig(
        name=name,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=int(raw.get("max_batch_size", 8)),
        slo_ms=float(raw.get("slo_ms", 500.0)),
        max_queue_delay_ms=float(batching.get("max_queue_delay_ms", 2.0)),
        version=str(raw.get("version", "1")),
        platform=str(raw.get("platform", "pytorch_torch_export")),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_to_toml(cfg: ModelConfig) -> str:
    lines = [
        f"# Tidegate model config for {cfg.name}. Shapes use -1 for the dynamic batch dimension.",
        f"name = {_toml_value(cfg.name)}",
        f"version = {_toml_value(cfg.version)}",
        f"platform = {_toml_value(cfg.platform)}",
        f"max_batch_size = {cfg.max_batch_size}",
        f"slo_ms = {_toml_value(float(cfg.slo_ms))}",
    ]
    for key, value in cfg.extra.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    lines += [
        "",
        "[batching]",
        f"max_queue_delay_ms = {_toml_value(float(cfg.max_queue_delay_ms))}",
    ]
    for section, specs in (("inputs", cfg.inputs), ("outputs", cfg.outputs)):
        for t in specs:
            lines += [
                "",
                f"[[{section}]]",
                f"name = {_toml_value(t.name)}",
                f"datatype = {_toml_value(t.datatype)}",
                f"shape = {_toml_value(t.shape)}",
            ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Artifact:
    """One model in a repository."""

    config: ModelConfig
    directory: Path

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def program_path(self) -> Path:
        return self.directory / PROGRAM_FILE

    def load_program(self):
        """The ``torch.export.ExportedProgram`` (weights included). Safe from any thread."""
        import torch

        import vmpool.delay_op  # noqa: F401  (registers tidegate::delay for the delay model)

        # torch.export.load keeps its deserializer in a global: two loads at once in one
        # process fail with "_CURRENT_DESERIALIZER is already set" (issue 7)
        with _LOAD_LOCK:
            return torch.export.load(str(self.program_path))

    def load_module(self):
        """A callable ``torch.nn.Module`` in eval mode."""
        return self.load_program().module()


def load_artifact(repo: str | Path, name: str) -> Artifact:
    directory = Path(repo) / validate_name(name)
    cfg_path = directory / CONFIG_FILE
    if not cfg_path.is_file() or not (directory / PROGRAM_FILE).is_file():
        raise ArtifactError(
            f"model {name!r} not found in repository {repo} "
            f"(need {name}/{PROGRAM_FILE} and {name}/{CONFIG_FILE})"
        )
    try:
        raw = tomllib.loads(cfg_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ArtifactError(f"{cfg_path}: {exc}") from exc
    return Artifact(config_from_dict(raw, default_name=name), directory)


def list_models(repo: str | Path) -> list[str]:
    root = Path(repo)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if (p / PROGRAM_FILE).is_file() and (p / CONFIG_FILE).is_file()
    )


def write_artifact(repo: str | Path, program, cfg: ModelConfig) -> Artifact:
    """Save ``program`` (an ExportedProgram) and ``cfg`` atomically under ``repo/cfg.name``."""
    import torch

    directory = Path(repo) / validate_name(cfg.name)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_program = directory / "model.tmp.pt2"  # torch wants the .pt2 suffix
    torch.export.save(program, str(tmp_program))
    tmp_program.replace(directory / PROGRAM_FILE)
    tmp_cfg = directory / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(config_to_toml(cfg))
    tmp_cfg.replace(directory / CONFIG_FILE)
    return Artifact(cfg, directory)
