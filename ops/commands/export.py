"""``tidegate export``: write a model artifact from the zoo or from your own .pt2 program."""

from __future__ import annotations

import argparse
import difflib
import re
from pathlib import Path

from ops.cli import CliError, finite_float

HELP = "export a zoo model, or import your own torch.export program, into a model repository"

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _epilog()
    _add_source_arguments(parser)
    _add_program_arguments(parser)
    _add_serving_arguments(parser)


def _epilog() -> str:
    from vmpool import zoo

    return (
        "zoo models:\n"
        + "\n".join(f"  {e.name:<16} {e.description}" for e in zoo.MODELS.values())
        + "\n\nexamples:\n"
        "  tidegate export resnet18 --out models --batch 16 --size 160x160\n"
        "  tidegate export resnet50 --out models --weights resnet50.pth\n"
        "  tidegate export my_model.pt2 --name mymodel --out models\n\n"
        "An artifact is REPO/NAME/model.pt2 (a torch.export program with a dynamic batch\n"
        "dimension) plus REPO/NAME/config.toml (inputs, outputs, max batch size, SLO)."
    )


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """What to export and where to put it."""
    parser.add_argument(
        "model",
        metavar="NAME",
        help="a zoo model name, or the path of a program saved with "
        "torch.export.save (.pt2) to import",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="REPO",
        help="model repository directory (created if missing)",
    )
    parser.add_argument(
        "--name",
        metavar="NAME",
        help="artifact name in the repository (default: the zoo name, or the program file's stem)",
    )


def _add_program_arguments(parser: argparse.ArgumentParser) -> None:
    """How the program is built: weights, batch dimension, input size, seed."""
    parser.add_argument(
        "--weights",
        metavar="STATE_DICT",
        help="zoo only: a torch.save state_dict with torchvision key names "
        "(default: seeded random weights)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="maximum batch size; the batch dimension stays dynamic in 1..N "
        "(default: per model, 8 for imported programs)",
    )
    parser.add_argument(
        "--size",
        metavar="HxW",
        help="zoo CNNs only: input image size, e.g. 160x160 (default 224x224)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="zoo only: seed for the random weights (default 0)",
    )


def _add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """How the artifact serves: the delay model's waits and the latency SLO in its config."""
    parser.add_argument(
        "--delay-ms",
        type=finite_float,
        metavar="MS",
        help="delay model only: fixed wait of each batch (default 50)",
    )
    parser.add_argument(
        "--per-item-ms",
        type=finite_float,
        metavar="MS",
        help="delay model only: extra wait per row of a batch (default 5)",
    )
    parser.add_argument(
        "--slo-ms",
        type=finite_float,
        metavar="MS",
        help="latency SLO in milliseconds written to the config "
        "(default: per model, 500 for imported programs)",
    )


def parse_size(text: str) -> tuple[int, int]:
    match = _SIZE_RE.match(text or "")
    if not match:
        raise CliError(f"--size must look like HxW, e.g. 224x224; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _file_size(path: Path) -> str:
    size_bytes = path.stat().st_size
    if size_bytes < 2**20:
        return f"{size_bytes / 2**10:.1f} KB"
    return f"{size_bytes / 2**20:.1f} MB"


def _tensors(specs) -> str:
    return ", ".join(f"{t.name} {t.datatype}[{','.join(str(d) for d in t.shape)}]" for t in specs)


def _summary(artifact) -> str:
    cfg = artifact.config
    return (
        f"  inputs: {_tensors(cfg.inputs)}  outputs: {_tensors(cfg.outputs)}  "
        f"max_batch_size {cfg.max_batch_size}, slo {cfg.slo_ms:g} ms"
    )


def _zoo_options(args: argparse.Namespace) -> dict:
    """Options of models that take them (the delay model's waits); refused for the others."""
    given = {
        k: v
        for k, v in (("delay_ms", args.delay_ms), ("per_item_ms", args.per_item_ms))
        if v is not None
    }
    if given and args.model != "delay":
        raise CliError("--delay-ms/--per-item-ms: for the delay model only")
    if any(v < 0 for v in given.values()):
        raise CliError("--delay-ms and --per-item-ms must be >= 0")
    return given


def _export_from_zoo(args: argparse.Namespace, size: tuple[int, int] | None):
    from vmpool import export, zoo

    entry = zoo.MODELS[args.model]
    if size is not None and not entry.is_image:
        raise CliError(
            f"--size applies to image models; {entry.name} takes {entry.input_size[0]} features"
        )
    try:
        zoo.input_shape(args.model, 1, size)  # reject a bad size before the slow part
    except ValueError as exc:
        raise CliError(str(exc)) from None
    options = _zoo_options(args)  # flag mistakes before "exporting ..." says it has begun
    if args.weights is not None and not Path(args.weights).is_file():
        raise CliError(f"weights file {args.weights} not found")
    params_m = zoo.param_count(args.model) / 1e6
    print(f"exporting {args.model} ({params_m:.1f}M params) ...", flush=True)
    return export.export_zoo(
        args.model,
        args.out,
        weights=args.weights,
        max_batch_size=args.batch,
        size=size,
        seed=args.seed,
        slo_ms=args.slo_ms,
        artifact_name=args.name,
        options=options,
    )


def _import_program(args: argparse.Namespace, source: Path):
    from vmpool import export

    zoo_only = [
        flag
        for flag, value in (
            ("--weights", args.weights),
            ("--size", args.size),
            ("--seed", args.seed or None),
            ("--delay-ms", args.delay_ms),  # (an imported program took them and never waited)
            ("--per-item-ms", args.per_item_ms),
        )
        if value is not None
    ]
    if zoo_only:
        raise CliError(f"{', '.join(zoo_only)}: for zoo models only, not for an imported program")
    name = args.name or source.stem
    print(f"importing {source} as {name} ...", flush=True)
    return export.import_program(
        source,
        args.out,
        name,
        max_batch_size=8 if args.batch is None else args.batch,
        slo_ms=500.0 if args.slo_ms is None else args.slo_ms,
        on_warning=lambda text: print(f"warning: {text}", flush=True),
    )


def _valid_name(name: str) -> None:
    from vmpool.artifact import ArtifactError, validate_name

    try:
        validate_name(name)
    except ArtifactError as exc:
        raise CliError(f"--name: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from vmpool import zoo
    from vmpool.artifact import ArtifactError

    if args.batch is not None and args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    if not 0 <= args.seed < 2**63:  # torch.manual_seed's range ("Overflow when unpacking long")
        raise CliError(f"--seed must be in 0..2**63-1, got {args.seed}")
    if args.slo_ms is not None and args.slo_ms <= 0:
        raise CliError(f"--slo-ms must be positive, got {args.slo_ms:g}")
    if args.name is not None:  # an empty --name fell back to the model's own name unsaid
        _valid_name(args.name)
    size = parse_size(args.size) if args.size is not None else None
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a file, not a model repository directory")
    source = Path(args.model)
    try:
        if args.model in zoo.MODELS:
            artifact = _export_from_zoo(args, size)
        elif source.is_file():
            artifact = _import_program(args, source)
        else:
            guess = difflib.get_close_matches(args.model, list(zoo.MODELS), n=1)
            raise CliError(
                f"{args.model!r} is neither a zoo model nor a file; "
                f"zoo models: {', '.join(zoo.MODELS)}"
                + (f"; did you mean {guess[0]!r}?" if guess else "")
            )
    except ArtifactError as exc:
        raise CliError(str(exc).splitlines()[0]) from None
    except OSError as exc:  # the repository cannot be written (permissions, disk full)
        raise CliError(f"cannot write to {args.out}: {exc.strerror or exc}") from None
    except (RuntimeError, MemoryError) as exc:  # torch: e.g. --size 99999x99999 cannot allocate
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"cannot export {args.model}: {first}") from None
    print(f"wrote {artifact.program_path} ({_file_size(artifact.program_path)}), config.toml")
    print(_summary(artifact))
    return 0
