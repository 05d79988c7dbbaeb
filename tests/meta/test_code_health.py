"""Code-health limits that CI keeps: small files, short functions, no cross-package cycles.

A file may pass ~350 lines, or a function ~60, only when a comment at its top says why
(``# size: ...``): the exception is written down where a reader meets it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "vmpool", "burst", "policies", "ops")
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60
# imports point down only: a package may import those after it in this list
LAYERS = ["ops", "gateway", "burst", "vmpool", "policies"]


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_pb2" not in path.name:
                yield path


def _justified(lines: list[str], start: int = 0) -> bool:
    head = lines[start : start + 12]
    return any("# size:" in line for line in head)


def test_files_stay_small():
    big = []
    for path in _sources():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_FILE_LINES and not _justified(lines):
            big.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not big, "files over ~350 lines without a '# size:' reason:\n" + "\n".join(big)


def test_functions_stay_short():
    long = []
    for path in _sources():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not _justified(lines, node.lineno - 1):
                    long.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"
                    )
    assert not long, "functions over ~60 lines without a '# size:' reason:\n" + "\n".join(long)


def test_imports_point_down_only():
    wrong = []
    for path in _sources():
        own = path.relative_to(ROOT).parts[0]
        allowed = set(LAYERS[LAYERS.index(own) + 1 :]) | {own}
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not wrong, "imports that point up a layer:\n" + "\n".join(wrong)
