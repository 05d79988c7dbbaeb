"""The ``delay`` load-test model: exported like any zoo model, waits instead of computing."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch

import ops.cli
import vmpool.delay_op as delay_op
from vmpool.artifact import load_artifact


def test_export_delay_writes_its_waits_and_slo_and_serves_identity(tmp_path, monkeypatch):
    rc = ops.cli.main(
        ["export", "delay", "--out", str(tmp_path), "--delay-ms", "20", "--per-item-ms", "2"]
    )
    assert rc == 0
    raw = tomllib.loads((tmp_path / "delay" / "config.toml").read_text())
    assert (raw["delay_ms"], raw["per_item_ms"]) == (20.0, 2.0)
    assert raw["slo_ms"] == 4 * (20 + 2 * 8)  # four full batches' wait
    waits = []
    monkeypatch.setattr(delay_op.time, "sleep", waits.append)
    module = load_artifact(tmp_path, "delay").load_module()
    x = torch.arange(3 * 16, dtype=torch.float32).reshape(3, 16)
    assert torch.equal(module(x), x)
    assert waits == [pytest.approx((20 + 2 * 3) / 1000)]  # a batch of 3 waits 26 ms


def test_delay_options_are_for_the_delay_model_only(tmp_path, capsys):
    assert ops.cli.main(["export", "mlp", "--out", str(tmp_path), "--delay-ms", "5"]) == 2
    assert "delay model only" in capsys.readouterr().err
    assert ops.cli.main(["export", "delay", "--out", str(tmp_path), "--per-item-ms", "-1"]) == 2


def test_the_burst_graph_runs_the_delay_op(tmp_path, monkeypatch):
    from burst.graph import build_graph, resolve_op

    ops.cli.main(["export", "delay", "--out", str(tmp_path)])
    graph = build_graph(load_artifact(tmp_path, "delay").load_program(), "delay")
    assert [n.op for n in graph.nodes] == ["tidegate.delay.default"]
    monkeypatch.setattr(delay_op.time, "sleep", lambda s: None)
    out = resolve_op("tidegate.delay.default")(torch.ones(2, 16), 50.0, 5.0)
    assert np.array_equal(out.numpy(), np.ones((2, 16), np.float32))
