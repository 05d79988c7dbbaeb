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
