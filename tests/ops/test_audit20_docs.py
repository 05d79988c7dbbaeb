"""The docs' commands as a user copies them: every `tidegate X --flag` in README.md, docs/*.md
and the commands' own --help examples names a flag X takes; every `ops/bench/*.py --flag` too;
every TOML block loads where the docs say it goes; the MMPP table in docs/ops.md is what
`tidegate simulate` prints today."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ops.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
COMMAND = re.compile(r"\btidegate ((?:" + "|".join(map(re.escape, COMMANDS)) + r")(?: prune)?)\b")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _line(text: str, offset: int) -> int:
    return text[:offset].count("\n") + 1


def _code(text: str) -> list[tuple[int, str]]:
    """(line, code) for each line of a fenced block (a `\\` continuation joined) and each
    inline code span (which may wrap over lines)."""
    out = []
    for m in FENCE.finditer(text):
        body = m.group(2).replace("\\\n", " ")
        out += [(_line(text, m.start()) + 1 + i, s) for i, s in enumerate(body.splitlines())]
    rest = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"`([^`]+)`", rest):
        out.append((_line(rest, m.start()), m.group(1).replace("\n", " ")))
    return out


def _flags(command: str) -> set[str]:
    """The option strings `tidegate COMMAND` (or `tidegate ledger prune`) takes."""
    name, _, action = command.partition(" ")
    parser = build_parser(name)
    for level in (name, action):
        if not level:
            break
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[level]
    return {s for a in parser._actions for s in a.option_strings}


def _uses(where: str, code: str):
    """(where, command, flags) for each `tidegate X ...` in one line of code: its flags run to
    the next command, a `#` comment or the end."""
    for m in COMMAND.finditer(code):
        rest = re.split(r"\btidegate |#|;| && ", code[m.end() :])[0]
        yield where, m.group(1), FLAG.findall(rest)


def _doc_uses():
    for doc in DOCS:
        for line, code in _code(doc.read_text()):
            yield from _uses(f"{doc.relative_to(ROOT)}:{line}", code)


def test_every_tidegate_flag_in_the_docs_is_one_its_command_takes():
    uses = list(_doc_uses())
    # the reader finds the docs' commands (an empty walk would pass anything)
    assert len(uses) > 60 and {c for _, c, _ in uses} >= set(COMMANDS) - {"ledger"}
    wrong = [f"{w}: tidegate {c} {f}" for w, c, flags in uses for f in flags if f not in _flags(c)]
    assert not wrong, wrong


def _epilogs(parser: argparse.ArgumentParser) -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    nested = [e for sub in subs for p in sub.choices.values() for e in _epilogs(p)]
    return [parser.epilog or "", *nested]


def test_every_help_example_names_flags_its_command_takes():
    """The examples under each --help (tidegate export's, tidegate ledger prune's too)."""
    lines = {
        line for name in COMMANDS for e in _epilogs(build_parser(name)) for line in e.splitlines()
    }
    uses = [u for line in sorted(lines) for u in _uses("--help", line)]
    assert {c for _, c, _ in uses} == set(COMMANDS) - {"ledger"} | {"ledger prune"}
    wrong = [f"tidegate {c} {f}" for _, c, flags in uses for f in flags if f not in _flags(c)]
    assert not wrong, wrong


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_says_what_and_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"] if command else ["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    if command is None:
        assert "tidegate COMMAND --help" in text and "make serve" in text
        assert all(name in text for name in COMMANDS)
    else:
        assert "examples:" in text and f"tidegate {command}" in text.split("examples:")[1]


def test_every_bench_script_and_flag_the_docs_name_exists():
    bench = re.compile(r"\b(ops/bench/[a-z_0-9]+\.py)\b([^`\n|]*)")
    seen = 0
    for doc in DOCS:
        for line, code in _code(doc.read_text()):
            for m in bench.finditer(code):
                script = ROOT / m.group(1)
                assert script.is_file(), f"{doc.name}:{line}: {m.group(1)}"
                source = script.read_text()
                for flag in FLAG.findall(m.group(2).split("#")[0]):
                    seen += 1
                    assert f'"{flag}"' in source, f"{doc.name}:{line}: {m.group(1)} {flag}"
    assert seen > 10


def _toml_blocks():
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1).strip() == "toml":
                yield f"{doc.relative_to(ROOT)}:{_line(text, m.start())}", m.group(2)


def test_every_toml_block_loads_where_the_docs_say(tmp_path):
    """A settings block loads as `tidegate serve --config` reads it; a [trace] block (docs/ops.md:
    simulate, tune and loadgen only) is refused by serve and read by the simulator."""
    from gateway.settings import Settings
    from ops.sim.config import load_config

    blocks = list(_toml_blocks())
    assert len(blocks) >= 7
    for where, body in blocks:
        path = tmp_path / "block.toml"
        path.write_text(body)
        if body.lstrip().startswith("[trace]"):
            with pytest.raises(ValueError, match="trace"):
                Settings.load(path)
            assert load_config(path).mapping is not None, where
        else:
            Settings.load(path)  # raises, naming the key, on anything it does not know


MMPP = "synth:mmpp:duration_s=3600,low_rps=30,high_rps=400,mean_low_s=240,mean_high_s=15"


def test_the_mmpp_table_in_ops_md_is_what_simulate_prints():
    """docs/ops.md shows `tidegate simulate --policy all --trace MMPP`'s whole table; its
    slo-aware and optimum rows are what the simulator prints today (vm-peak/x aside: it
    needs vm-peak in the same run)."""
    ops_md = (ROOT / "docs/ops.md").read_text()
    assert f"tidegate simulate --policy all --trace {MMPP}\n" in ops_md
    table = ops_md.split("The whole table for the MMPP trace")[1].split("```")[1]
    cmd = [sys.executable, "-m", "ops", "simulate", "--policy", "slo-aware", "--trace", MMPP]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr

    def row(text: str, policy: str) -> list[str]:
        cells = next(ln.split() for ln in text.splitlines() if ln.startswith(policy + " "))
        return cells[:7] + cells[8:]  # without vm-peak/x

    for policy in ("slo-aware", "optimum"):
        assert row(table, policy) == row(proc.stdout, policy), proc.stdout


def test_every_repository_path_the_docs_name_exists():
    """`ops/...`, `gateway/...`, `tests/...` in backticks: a file moved or renamed leaves the
    docs pointing at nothing (a pattern such as `plans/{plan_id}/` is not a path; the
    benchmarks' output directory exists once one has run)."""
    path = re.compile(r"`((?:ops|gateway|burst|vmpool|policies|tests|docs)/[\w./-]+)([^`]?)")
    named = {
        (doc.name, m.group(1).rstrip("."))
        for doc in DOCS
        for m in path.finditer(doc.read_text())
        if m.group(2) not in ("{", "*", "<")
    }
    assert len(named) > 50
    missing = [
        f"{doc}: {p}"
        for doc, p in sorted(named)
        if not (ROOT / p).exists() and p != "ops/bench/results/"
    ]
    assert not missing, missing


def _setting_keys(path: list[str]) -> set[str]:
    """The keys of the settings table at ``path`` (every shape a `kind`/`policy` may take)."""
    import typing

    from pydantic import BaseModel

    from gateway.settings import Settings

    def models(annotation) -> list:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for a in typing.get_args(annotation) for m in models(a)]

    tables = [Settings]
    for part in path:
        tables = [
            m
            for t in tables
            if part in t.model_fields
            for m in models(t.model_fields[part].annotation)
        ]
    return {key for t in tables for key in t.model_fields}


def test_every_table_key_the_docs_name_is_a_setting():
    """`[ledger] retain_days`, `[burst.weights] grace_h`, `[simulate] fn_host_cores`: the key
    exists in that table (serve's settings; [simulate] and [trace] are the simulator's)."""
    from ops.sim.config import SIM_KEYS

    named = re.compile(r"`\[{1,2}([a-z_.]+)\]{1,2} ([a-z_]+)")
    seen, wrong = 0, []
    for doc in DOCS:
        for m in named.finditer(doc.read_text()):
            table, key = m.group(1), m.group(2)
            if table.startswith("trace"):
                continue
            seen += 1
            keys = SIM_KEYS | {"in"} if table == "simulate" else _setting_keys(table.split("."))
            if key not in keys:
                wrong.append(f"{doc.name}: [{table}] {key}")
    assert seen > 15 and not wrong, wrong


def test_readme_cli_at_a_glance_names_every_command():
    readme = (ROOT / "README.md").read_text()
    glance = readme.split("## The CLI at a glance")[1].split("```")[1]
    listed = {m.group(1).split()[0] for m in COMMAND.finditer(glance)}
    assert listed == set(COMMANDS), set(COMMANDS) - listed
