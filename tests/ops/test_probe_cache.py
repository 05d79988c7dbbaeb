"""`tidegate profile`'s probe programs are kept between runs (ops/probe_cache.py): a second run
loads what the first exported, the graph it plans from is the same, and a damaged or unwritable
cache falls back to exporting."""

from __future__ import annotations

import torch
import torch.nn as nn

from burst.graph import build_graph
from ops import probe_cache
from ops.perfgen_fit import graph_rows


class _Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(6, 16, batch_first=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


def _rows(program, x):
    graph = build_graph(program, "p")
    return [r[:-1] for r in graph_rows(graph, {n.name: 1.0 for n in graph.nodes}, x.shape[0])]


def test_a_second_run_loads_the_program_the_first_exported(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDEGATE_CACHE_DIR", str(tmp_path))
    x = torch.randn(2, 5, 6)
    first = probe_cache.exported("lstm", _Probe(), x, _Probe)
    kept = list((tmp_path / "probes").glob("lstm-*.pt2"))
    assert len(kept) == 1

    def no_export(*a, **k):
        raise AssertionError("exported again: the cache was not used")

    monkeypatch.setattr(torch.export, "export", no_export)
    second = probe_cache.exported("lstm", _Probe(), x, _Probe)
    assert _rows(second, x) == _rows(first, x) and _rows(first, x)
    # another input shape is another program
    monkeypatch.undo()
    monkeypatch.setenv("TIDEGATE_CACHE_DIR", str(tmp_path))
    probe_cache.exported("lstm", _Probe(), torch.randn(2, 7, 6), _Probe)
    assert len(list((tmp_path / "probes").glob("lstm-*.pt2"))) == 2


def test_a_damaged_file_is_exported_again_and_an_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDEGATE_CACHE_DIR", str(tmp_path))
    x = torch.randn(1, 4, 6)
    probe_cache.exported("lstm", _Probe(), x, _Probe)
    (path,) = (tmp_path / "probes").glob("lstm-*.pt2")
    path.write_bytes(b"not a program")
    program = probe_cache.exported("lstm", _Probe(), x, _Probe)
    assert _rows(program, x) and path.read_bytes()[:2] == b"PK"  # replaced by a whole .pt2

    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("TIDEGATE_CACHE_DIR", str(blocked))  # a file where the dir should be
    assert _rows(probe_cache.exported("lstm", _Probe(), x, _Probe), x)
