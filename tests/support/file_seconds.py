"""Seconds each test file took in a measured run, so `make test` hands the longest files to
the xdist workers first (longest-first keeps both workers busy to the end; xdist's own order,
by number of tests, left a 50 s file for the last minute while the other worker idled).

A file not listed counts as ``UNKNOWN_S``: new files run early enough, and a stale figure only
moves a file in the queue. Refresh the table from a run's JUnit XML:

    .venv/bin/pytest -q -n 2 --dist loadfile --junitxml=/tmp/run.xml
    .venv/bin/python -m tests.support.file_seconds /tmp/run.xml
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

TABLE = Path(__file__).with_name("file_seconds.json")
UNKNOWN_S = 5.0


def load() -> dict[str, float]:
    """Test file path (as in a node id, ``tests/...py``) -> seconds."""
    try:
        return json.loads(TABLE.read_text())
    except (OSError, ValueError):
        return {}


def from_junit(xml_path: str) -> dict[str, float]:
    """Seconds per test file (setup, call and teardown of its tests) in a JUnit XML report."""
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        # classname is the module path, then a class name if the test is in one
        while module and not Path(*module).with_suffix(".py").exists():
            module.pop()
        if module:
            seconds[str(Path(*module).with_suffix(".py"))] += float(case.get("time") or 0)
    return dict(seconds)


def sort_key(nodeid: str, table: dict[str, float]) -> float:
    """Longest file first (a stable sort keeps each file's tests in their order)."""
    return -table.get(nodeid.split("::", 1)[0], UNKNOWN_S)


if __name__ == "__main__":
    table = {k: round(v, 1) for k, v in sorted(from_junit(sys.argv[1]).items())}
    TABLE.write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    print(f"{len(table)} files, {sum(table.values()):.0f} s in all -> {TABLE}")
