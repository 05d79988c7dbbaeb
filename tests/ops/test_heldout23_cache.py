"""heldout.py's reference cost cache shared by runs of one tree (session 23)."""

from __future__ import annotations

import json

from ops.bench.heldout import save_cache


def test_a_run_writing_the_cache_keeps_the_rows_another_run_wrote_meanwhile(tmp_path):
    path = tmp_path / "cache.json"
    mine = save_cache(path, {"s0": {"vm-peak": 1.0, "optimum": 0.5}})  # a whole set's first row
    path.write_text(json.dumps({"s0": mine["s0"], "s9": {"vm-peak": 2.0, "optimum": 1.0}}))
    mine["s1"] = {"vm-peak": 3.0, "optimum": 1.5}  # its next row, written after the other run's
    save_cache(path, mine)
    assert set(json.loads(path.read_text())) == {"s0", "s1", "s9"}  # before: s9 was lost
