"""The ``tidegate`` command line: one sub-command per module in ``ops.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Only the chosen command's module is imported, so ``tidegate model-server`` starts fast.
Errors a user can fix raise ``CliError``: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import math
import os
import re
import sys

# name -> (module, one-line help shown by `tidegate --help`)
COMMANDS = {
    "serve": ("ops.commands.serve", "run the gateway (VM pool + burst functions)"),
    "export": ("ops.commands.export", "export a zoo model or import a .pt2 into a repository"),
    "model-server": ("ops.commands.model_server", "run one VM model server (a replica)"),
    "plan": ("ops.commands.plan", "show the partition plan of a model for N workers"),
    "profile": ("ops.commands.profile", "measure a model's performance profile on this machine"),
    "function-runtime": (
        "ops.commands.function_runtime",
        "run the local function runtime (Lambda Invoke API)",
    ),
    "simulate": ("ops.commands.simulate", "simulate policies on a request trace (simulated time)"),
    "tune": ("ops.commands.tune", "search a policy's parameters on a trace (Optuna)"),
    "loadgen": ("ops.commands.loadgen", "replay a trace open-loop against a live gateway"),
    "report": ("ops.commands.report", "per-tenant cost and SLO report from the ledger"),
    "ledger": ("ops.commands.ledger", "ledger upkeep: prune rows before a date"),
}


# examples shown under each command's --help (docs' commands, run as written: tests/ops/test_audit20_docs.py)
EXAMPLES = {
    "serve": (
        "tidegate serve                                  # defaults: 127.0.0.1:8000, demo resnet18",
        "tidegate serve --config tidegate.toml           # every key: docs/configuration.md",
        "tidegate serve --repo models --port 9000 --replicas 2",
        "TIDEGATE_VM__REPLICAS=2 tidegate serve          # any setting by environment variable",
        "curl -s localhost:8000/v2/health/ready          # 200 once replicas and plans are ready",
    ),
    "model-server": ("tidegate model-server --repo models --model resnet18 --port 9001",),
    "plan": (
        "tidegate plan resnet18 --repo .tidegate/models --workers 4",
        "tidegate plan resnet18 --repo .tidegate/models --objective cost --slo-ms 200 --json",
        "tidegate plan resnet18 --repo .tidegate/models --split spatial --batch 8",
    ),
    "profile": (
        "tidegate export mlp --out models && tidegate profile mlp --repo models",
        "tidegate profile resnet18 --repo .tidegate/models --workers 2 --reps 3 --cold-reps 0",
    ),
    "function-runtime": ("tidegate function-runtime --port 9000 --keep-alive-s 60",),
    "simulate": (
        "tidegate simulate --trace synth:mmpp:duration_s=3600,low_rps=30,high_rps=400 --policy all",
        "tidegate simulate --trace trace.csv --policy slo-aware --json run.json --plot run.html",
        "tidegate simulate --trace trace.csv --policy config --config tidegate.toml",
        "(traces, presets and where each figure comes from: docs/ops.md)",
    ),
    "tune": (
        "tidegate tune --trace synth:flash-crowd:base_rps=20,peak_mult=20 --policy slo-aware "
        "--slo-attainment 0.99   # 20 trials, minutes",
        "tidegate serve --config tidegate-tuned.toml     # the snippet it writes, as is",
    ),
    "loadgen": (
        "tidegate loadgen --trace synth:steady:duration_s=60,rps=5 --url http://127.0.0.1:8000",
        "tidegate loadgen --trace trace.csv --url http://127.0.0.1:8000 --speedup 10 "
        "--key acme=KEY --json live.json",
    ),
    "report": (
        "tidegate report                                 # every tenant, the whole ledger",
        "tidegate report --tenant acme --since 2026-11-01 --by model,path --format csv",
        "tidegate report --format html --out report.html --vm-bill-usd 120",
    ),
    "ledger": ("tidegate ledger prune --before 2025-01-01 --dry-run",),
}

EPILOG = """start here:
  make serve   (or: tidegate serve)   the gateway on 127.0.0.1:8000, demo model resnet18
  tidegate COMMAND --help             what a command does, its defaults and examples

docs: README.md (calling it, configuration), docs/operations.md (running it),
docs/ops.md (simulate, tune, loadgen, report), docs/configuration.md (every setting)"""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps a one-line description; keeps a multi-line text (examples) as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _examples(name: str) -> str | None:
    lines = EXAMPLES.get(name)
    return "examples:\n" + "\n".join("  " + line for line in lines) if lines else None


# output files a command writes only at the end of a long run: checked before it starts (for
# commands whose own module does not; profile.py sits at the size limit)
OUTPUT_FILES = {"profile": ("out",)}


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake in the flags is one line (its usage block is in ``--help``) that
    names the nearest right spelling of a misspelt flag or choice."""

    argv: list[str] = []  # what main() parses: a missing required flag may be a misspelt one

    def error(self, message: str):
        strays = unknown_flags(self, self.argv)
        if message.startswith("the following arguments are required") and strays:
            message = f"unrecognized arguments: {' '.join(strays)}"  # --outt, not "need --out"
        self.exit(
            2,
            f"{self.prog}: error: {message}{self.hint(message, strays)} (see {self.prog} --help)\n",
        )

    def hint(self, message: str, flags: list[str]) -> str:
        """``; did you mean X?`` for a misspelt choice or flag, else nothing."""
        choice = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)", message)
        if choice:
            options = [o.strip().strip("'") for o in choice.group(2).split(",")]
            guess = difflib.get_close_matches(choice.group(1), options, n=1)
            return f"; did you mean '{guess[0]}'?" if guess else ""
        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        model = [a for a in self._actions if not a.option_strings and a.dest in ("name", "model")]
        for flag in flags:
            if model and flag.split("=", 1)[0] in ("--model", "--name"):  # (simulate's habit)
                name = (model[0].metavar or model[0].dest).upper()
                return f"; the model is the {name} argument here, no flag: {self.prog} ... {name}"
            guess = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1)
            if guess:
                return f"; did you mean {guess[0]}?"
        return ""


def unknown_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The ``--name`` words in argv that name none of parser's flags (nor abbreviate one)."""
    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    words = argv[: argv.index("--")] if "--" in argv else argv
    return [
        w
        for w in words
        if w.startswith("--") and not any(k.startswith(w.split("=", 1)[0]) for k in known)
    ]


def finite_float(text: str) -> float:
    """An argparse ``type``: a number, not nan or inf (which no flag means)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def seed_int(text: str) -> int:
    """An argparse ``type`` for ``--seed``: an integer >= 0 (numpy's generators take no other)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tidegate")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def build_parser(only: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    _Parser.argv = list(argv or [])
    parser = _Parser(
        prog="tidegate",
        description="Tidegate: a hybrid VM + serverless inference gateway "
        "(Open Inference Protocol v2).",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tidegate {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_examples(name),
            formatter_class=HelpFormatter,
        )
        if name == only:
            module = importlib.import_module(module_name)
            p.description = module.HELP
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None, argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the sub-command's parser, not the top one ("tidegate: error")
        name = getattr(args, "command", None)
        sub = _subparser(parser, name) if name else parser
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        if OUTPUT_FILES.get(args.command):
            from ops.commands.outputs import check_writable

            for dest in OUTPUT_FILES[args.command]:
                check_writable(getattr(args, dest, None), "--" + dest.replace("_", "-"))
        return int(args._run(args) or 0)
    except CliError as exc:
        # one line, whatever the message carries (a driver's error often spans several)
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"tidegate {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader closed early (``tidegate plan ... | head``): quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (exit's flush too)
        return 0


if __name__ == "__main__":
    sys.exit(main())
