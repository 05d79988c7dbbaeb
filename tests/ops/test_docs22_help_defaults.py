"""Every optional flag's --help says its default (docs22: `serve --config`, `plan --slo-ms` and
`function-runtime --function` did not say what leaving them out means)."""

from __future__ import annotations

import argparse

import pytest

from ops.cli import build_parser

# the commands whose modules this task owns; the others' flags are checked by their owners
COMMANDS = ["serve", "export", "model-server", "plan", "function-runtime"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_optional_flag_names_its_default(name):
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    silent = [
        action.option_strings[0]
        for action in sub.choices[name]._actions
        if action.option_strings
        and not action.required
        and not isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction))
        and "default" not in (action.help or "")
    ]
    assert not silent, f"tidegate {name}: no default in the help of {silent}"
