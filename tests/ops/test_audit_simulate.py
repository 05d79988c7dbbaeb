"""``tidegate simulate`` outputs an ops person asks for that had nothing in them."""

from __future__ import annotations

from ops.cli import main


def test_plotting_the_optimum_alone_says_there_is_nothing_over_time(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("".join(f"{i * 0.1:.1f},mlp\n" for i in range(100)))
    page = tmp_path / "o.html"
    argv = ["simulate", "--trace", str(trace), "--policy", "optimum", "--plot", str(page)]
    assert main(argv) == 2
    assert "plot a preset" in capsys.readouterr().err
    assert not page.exists()  # (it wrote a page without a chart, and no PNG)


def test_every_preset_json_has_the_summary_keys_at_the_top(tmp_path):
    """The default (--policy all) wrote only {"runs": [...]}: `requests`, `slo_attainment`, ...
    and `tenants` were missing from the top level the issue names."""
    import json

    trace = tmp_path / "t.csv"
    trace.write_text("".join(f"{i * 0.1:.1f},mlp,{'a' if i % 2 else 'b'}\n" for i in range(300)))
    out = tmp_path / "all.json"
    assert main(["simulate", "--trace", str(trace), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["policy"] == "slo-aware" and len(doc["runs"]) == 7
    for key in ("requests", "slo_attainment", "p50_ms", "p99_ms", "cost_usd", "vm_hours"):
        assert doc[key] == next(r for r in doc["runs"] if r["policy"] == "slo-aware")[key]
    assert set(doc["tenants"]) == {"a", "b"} and doc["optimum_cost_usd"] > 0
