"""Session 26's settings (``[ledger] spill_scan_s``, ``[burst] instance_idle_s``): a bad value
is one line naming the setting, from the settings file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import Settings, describe_error

CASES = [
    ("ledger", "spill_scan_s", "-1"),
    ("ledger", "spill_scan_s", "7200"),
    ("ledger", "spill_scan_s", '"soon"'),
    ("burst", "instance_idle_s", "0"),
    ("burst", "instance_idle_s", "-5"),
    ("burst", "instance_idle_s", "86400"),
]


@pytest.mark.parametrize("table,name,value", CASES)
def test_a_bad_value_is_one_line_naming_it(tmp_path, table, name, value):
    config = tmp_path / "tidegate.toml"
    config.write_text(f"[{table}]\n{name} = {value}\n")
    with pytest.raises(ValidationError) as err:
        Settings.load(config)
    line = describe_error(err.value)
    assert f"{table}.{name}" in line and "\n" not in line
