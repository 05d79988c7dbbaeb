"""docs/configuration.md shows a default only for a key a table may leave out (docs22).

It showed `kind` = `'local'` in `[burst.platform]` and `'dir'` in `[burst.store]`, and `policy` =
`'none'` in `[autoscaling]`, but a table that leaves its `kind` (or `policy`) out is refused
("the table needs kind = one of ..."): those are the choices a missing table stands for.
"""

from __future__ import annotations

import re

from gateway.settings import Settings
from ops.config_reference import render

# a table written with only this key, for each table the reference lists by kind or policy
ONE_KEY = {
    ("burst.platform", "local"): {"burst": {"platform": {"kind": "local"}}},
    ("burst.store", "dir"): {"burst": {"store": {"kind": "dir"}}},
    ("autoscaling", "none"): {"autoscaling": {"policy": "none"}},
}


def _sections(text: str) -> dict[tuple[str, str], str]:
    found = {}
    for match in re.finditer(
        r"^## `\[([a-z_.]+)\]` — (?:kind|policy) `([a-z_-]+)`\n(.*?)(?=^## )", text, re.M | re.S
    ):
        found[(match.group(1), match.group(2))] = match.group(3)
    return found


def test_a_tables_kind_or_policy_is_shown_as_required():
    sections = _sections(render())
    assert len(sections) >= 12, sorted(sections)
    for (table, tag), body in sections.items():
        row = next(r for r in body.splitlines() if re.match(r"\| `(kind|policy)` \|", r))
        assert "(required" in row, (table, tag, row)


def test_the_tables_a_missing_table_stands_for_say_so():
    text = render()
    for (table, tag), values in ONE_KEY.items():
        Settings(**values)  # the key itself is accepted ...
        body = _sections(text)[(table, tag)]
        row = next(r for r in body.splitlines() if re.match(r"\| `(kind|policy)` \|", r))
        assert "Without the table, this one." in row, (
            row
        )  # ... and the reference says what no table means


def test_the_reference_on_disk_is_the_generated_one():
    from pathlib import Path

    on_disk = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert on_disk == render()
