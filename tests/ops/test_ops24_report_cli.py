"""`tidegate report` edges an operator meets: an empty --since (a shell variable left unset)
is an error, not the whole ledger; control characters in a tenant's name cannot break the
table's lines or send escape sequences to the terminal."""

from __future__ import annotations

import time

import pytest

from gateway.ledger import make_backend, row_values
from ops.cli import main

NAMES = ["acme", "line\nbreak", "tab\there", "esc\x1b[2Jclear"]


@pytest.fixture
def data_dir(tmp_path):
    backend = make_backend(tmp_path / "ledger.sqlite")
    backend.migrate()
    now = time.time()
    backend.write(
        [
            row_values(f"r{i}", now - 60, name, "mlp", "vm", 200, 2.0, cost_usd=0.25)
            for i, name in enumerate(NAMES)
        ]
    )
    backend.close()
    return tmp_path


@pytest.mark.parametrize("flag", ["--since", "--until"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_window_end_is_a_one_line_error(data_dir, capsys, flag, value):
    assert main(["report", "--data-dir", str(data_dir), flag, value]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and f"{flag} is empty" in err


def test_control_characters_in_a_tenant_name_are_shown_escaped_in_the_table(data_dir, capsys):
    assert main(["report", "--data-dir", str(data_dir), "--format", "table"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "\x1b" not in "".join(lines) and "\t" not in "".join(lines)
    assert len(lines) == 2 + len(NAMES) + 1  # header, rule, one line per tenant, total
    assert len({len(line) for line in lines[:-1]}) == 1  # the columns still line up
    assert any(line.startswith("line\\nbreak ") for line in lines)
    assert any(line.startswith("esc\\x1b[2Jclear ") for line in lines)
