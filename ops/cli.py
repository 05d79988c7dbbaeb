"""The ``tidegate`` command line: one sub-command per module in ``ops.commands``.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Errors a user can fix raise ``CliError`` and print one line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "serve": "ops.commands.serve",
    "export": "ops.commands.export",
    "model-server": "ops.commands.model_server",
    "plan": "ops.commands.plan",
    "function-runtime": "ops.commands.function_runtime",
}


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidegate",
        description="Tidegate: a hybrid VM + serverless inference gateway "
                    "(Open Inference Protocol v2).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CliError as exc:
        print(f"tidegate {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
