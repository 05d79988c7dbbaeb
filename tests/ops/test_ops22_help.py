"""Session 22 (ops22): every flag of the ops commands says its default in `--help` (before:
simulate's --model, --repo, --config, --param, --json and --plot, loadgen's --config, --key,
--json, --csv and --no-progress, report's --ledger, --tenant, --by, --out and --config, and
ledger prune's --ledger and --dry-run did not)."""

from __future__ import annotations

import argparse

import pytest

from ops.cli import build_parser

COMMANDS = ("simulate", "tune", "loadgen", "report", "ledger")


def _flags(parser: argparse.ArgumentParser, where: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _flags(sub, f"{where} {name}")
        elif action.option_strings and action.dest != "help" and not action.required:
            yield where, action


@pytest.mark.parametrize("command", COMMANDS)
def test_every_optional_flag_says_its_default(command):
    top = build_parser(command)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    silent = [
        f"{where} {'/'.join(a.option_strings)}"
        for where, a in _flags(sub.choices[command], command)
        if "default" not in (a.help or "").lower()
    ]
    assert not silent, "flags whose help gives no default: " + ", ".join(silent)
