"""Model artifacts: ``REPO/NAME/model.pt2`` (a ``torch.export`` program) plus ``config.toml``.

The config is the contract every other part reads: input and output tensors (name, datatype,
shape with ``-1`` for the dynamic batch dimension), the maximum batch size, the latency SLO and
the dynamic batching knobs. It is plain TOML so a person can read and edit it.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
import re
import threading
import tomllib
import warnings
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


_KNOWN = (
    "name",
    "batching",
    "inputs",
    "outputs",
    "max_batch_size",
    "slo_ms",
    "version",
    "platform",
)


def _spec(raw, where: str) -> TensorSpec:
    if not isinstance(raw, dict):
        raise ArtifactError(f"{where}: each tensor is a table with name, datatype and shape")
    _no_unknown(raw, ("name", "datatype", "shape"), where)
    try:
        name, datatype, shape = raw["name"], raw["datatype"], raw["shape"]
    except KeyError as exc:
        raise ArtifactError(
            f"{where}: each tensor needs name, datatype and shape ({exc})"
        ) from None
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"{where}: name must be a non-empty string, got {name!r}")
    if datatype not in DATATYPES:
        raise ArtifactError(f"{where} {name}: unsupported datatype {datatype!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= -1 for d in shape):
        raise ArtifactError(
            f"{where} {name}: shape must be a list of sizes (-1: any), got {shape!r}"
        )
    return TensorSpec(name, datatype, tuple(shape))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_unknown(raw: dict, known, where: str, *, near_only: bool = False) -> None:
    """A key that is not one of ``known`` is an error (``near_only``: only a near miss of one,
    the other keys are kept as the model's extra metadata)."""
    for key in raw:
        if key in known:
            continue
        guess = difflib.get_close_matches(str(key).lower(), known, n=1, cutoff=0.8)
        if guess or not near_only:
            hint = f" (did you mean {guess[0]}?)" if guess else f" (known: {', '.join(known)})"
            raise ArtifactError(f"{where}: unknown key {key!r}{hint}")


def _number(raw: dict, key: str, default: float, where: str, *, low: float, strict: bool) -> float:
    value = raw.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ArtifactError(f"{where}: {key} must be a number {bound}, got {value!r}")
    return float(value)


def config_from_dict(raw: dict, default_name: str = "") -> ModelConfig:
    """The model's config from its ``config.toml`` table; ``ArtifactError`` names a mistake."""
    name = validate_name(str(raw.get("name", default_name)))
    where = f"model {name} config"
    _no_unknown(raw, _KNOWN, where, near_only=True)
    batching = raw.get("batching", {})
    if not isinstance(batching, dict):
        raise ArtifactError(f"{where}: [batching] must be a table")
    _no_unknown(batching, ("max_queue_delay_ms",), f"{where} [batching]")
    tensors = {}
    for section in ("inputs", "outputs"):
        listed = raw.get(section, [])
        if not isinstance(listed, list):
            raise ArtifactError(f"{where}: {section} must be [[{section}]] tables")
        tensors[section] = tuple(_spec(t, f"model {name} {section[:-1]}") for t in listed)
    if not tensors["inputs"] or not tensors["outputs"]:
        raise ArtifactError(f"model {name}: config needs at least one input and one output")
    max_batch_size = raw.get("max_batch_size", 8)
    if not _is_int(max_batch_size) or max_batch_size < 1:
        raise ArtifactError(
            f"{where}: max_batch_size must be an integer >= 1, got {max_batch_size!r}"
        )
    return ModelConfig(
        name=name,
        inputs=tensors["inputs"],
        outputs=tensors["outputs"],
        max_batch_size=max_batch_size,
        slo_ms=_number(raw, "slo_ms", 500.0, where, low=0.0, strict=True),
        max_queue_delay_ms=_number(
            batching, "max_queue_delay_ms", 2.0, where, low=0.0, strict=False
        ),
        version=str(raw.get("version", "1")),
        platform=str(raw.get("platform", "pytorch_torch_export")),
        extra={k: v for k, v in raw.items() if k not in _KNOWN},
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
        with _LOAD_LOCK, _quiet_load():
            program = torch.export.load(str(self.program_path))
            _forget_torch_leftovers()
            return program

    def verify(self) -> None:
        """ArtifactError when ``model.pt2``'s members do not match their checksums: torch reads
        them without, so a byte flipped on disk after export served wrong answers. Reads the
        whole file (resnet18: 45 MB, ~50 ms)."""
        import zipfile

        try:
            with zipfile.ZipFile(self.program_path) as archive:
                damaged = archive.testzip()
        except Exception as exc:  # noqa: BLE001 - a damaged directory, an unreadable file
            raise ArtifactError(
                f"model {self.name}: {self.program_path} is damaged ({type(exc).__name__}): "
                f"export it again"
            ) from None
        if damaged is not None:
            raise ArtifactError(
                f"model {self.name}: {self.program_path} is damaged ({damaged} does not match "
                f"its checksum): export it again"
            )

    def load_module(self):
        """A callable ``torch.nn.Module`` in eval mode."""
        return self.load_program().module()


@contextlib.contextmanager
def _quiet_load():
    """torch.export.load without its noise on stderr: a FutureWarning from its own pytree code
    on every load, and, for a file it cannot read, a logged traceback before the error it
    raises (which the caller reports in one line)."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def load_artifact(repo: str | Path, name: str) -> Artifact:
    directory = Path(repo) / validate_name(name)
    cfg_path = directory / CONFIG_FILE
    if not cfg_path.is_file() or not (directory / PROGRAM_FILE).is_file():
        there = [p.parent.name for p in Path(repo).glob(f"*/{CONFIG_FILE}")]  # none if no repo
        guess = difflib.get_close_matches(name, there, n=1)
        raise ArtifactError(
            f"model {name!r} not found in repository {repo} "
            f"(need {name}/{PROGRAM_FILE} and {name}/{CONFIG_FILE})"
            + (f"; did you mean {guess[0]!r}?" if guess else "")
        )
    try:
        raw = tomllib.loads(cfg_path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{cfg_path}: {exc}") from exc
    cfg = config_from_dict(raw, default_name=name)
    if cfg.name != name:  # served under one name, listed under the other
        raise ArtifactError(f"{cfg_path}: name {cfg.name!r} is not its directory's ({name!r})")
    return Artifact(cfg, directory)


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


# the newest generated sources (torch.fx's forward code) kept for tracebacks: a model's load
# compiles ~7 graph modules (mlp), and torch kept every one's source for the process's life
KEEP_GENERATED_SOURCES = 32


def _forget_torch_leftovers() -> None:
    """What torch keeps for the life of the process from every program loaded, dropped after
    each load: ~100 objects per model reload on a replica, without bound (issue mem23). Caches
    only: nothing is computed differently, and the program loaded last keeps what it adds until
    the next load.

    - ``ShapeEnv`` methods cached with ``functools.lru_cache`` at class level, keyed on the
      instance (``constrain_symbol_range`` has no maxsize): each load's ShapeEnv, its symbols,
      ranges and fake-tensor cache stayed; and fake tensors' own dispatch cache.
    - torch.fx's source of each generated ``forward`` (``linecache`` and its loader's cache):
      the newest ``KEEP_GENERATED_SOURCES`` are kept; an older module's traceback shows no
      source line."""
    import linecache

    from torch.fx import graph_module
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    for attr in vars(ShapeEnv).values():
        clear = getattr(attr, "cache_clear", None)
        if clear is not None:
            clear()
    FakeTensorMode.cache_clear()
    sources = getattr(getattr(graph_module, "_loader", None), "eval_cache", None)
    if isinstance(sources, dict) and len(sources) > KEEP_GENERATED_SOURCES:
        for key in list(sources)[:-KEEP_GENERATED_SOURCES]:  # (oldest first)
            del sources[key]
            linecache.cache.pop(key, None)
