"""`simulate --model NAME` where nothing describes NAME: a one-line error, not ResNet-18's figures."""

from __future__ import annotations


def check_known_model(args, cfg, profile_path) -> None:
    """A --model nothing describes (not the reference profile's, no --profile or --repo, not
    named by the trace or a [trace] rule) is refused: it simulated as ResNet-18 before, with
    only a note in the banner (a typo'd name gave another model's cost)."""
    from ops.cli import CliError
    from ops.sim.profile import TARGET_MODEL
    from ops.sim.profile_target import model_target

    model = args.model
    if not model or profile_path or model == TARGET_MODEL or model_target(model) is not None:
        return
    if any(rule.model == model for rule in cfg.mapping.rules) or _trace_names_models(args):
        return  # (the trace's own names: simulated on the target's figures, as said)
    from burst.planning import load_profile

    known = sorted({TARGET_MODEL, "delay", *load_profile().models})
    raise CliError(
        f"--model {model!r} is not in the reference profile (it has: {', '.join(known)}); "
        f"measure it with `tidegate profile {model}` and pass --profile, or --repo"
    )


def _trace_names_models(args) -> bool:
    from pathlib import Path

    from ops.trace_header import detect_format
    from ops.traces import TraceError

    if args.trace_format not in ("auto", "csv"):
        return False
    try:
        path = Path(args.trace)
        return path.is_file() and (args.trace_format == "csv" or detect_format(path) == "csv")
    except (TraceError, OSError, UnicodeDecodeError):
        return False
