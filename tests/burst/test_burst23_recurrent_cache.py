"""Recurrent layers' hidden-to-hidden matrices re-read every step are priced from the core's
cache where they fit it, from memory where they do not (session 22 priced every re-read as a
memory read: an LSTM 256 wide over 64 steps at 1.9x its time on one thread)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
import audit21_models as am  # noqa: E402

from burst.graph import build_graph  # noqa: E402
from burst.graph_macs import CACHED_READ_SHARE, CACHED_WEIGHT_BYTES  # noqa: E402
from burst.node_work import node_works  # noqa: E402
from burst.planning import load_profile  # noqa: E402
from tests.burst.test_pred22_recurrent import _one_thread_ms  # noqa: E402


class _Lstm(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(8, hidden, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


@pytest.mark.parametrize("hidden", [64, 256, 520])
def test_a_re_read_costs_a_cache_read_where_the_matrix_fits_the_cache(hidden):
    steps = 12
    module = _Lstm(hidden).eval()
    graph = build_graph(torch.export.export(module, (torch.randn(1, steps, 8),)), "lstm")
    (work,) = [w for w in node_works(graph, 1) if w.op.endswith(".input")]
    every = sum(p.numel() * 4 for p in module.parameters())
    matrix = module.rnn.weight_hh_l0.numel() * 4
    fits = matrix <= CACHED_WEIGHT_BYTES
    assert fits == (hidden < 512)  # 4 x 520 x 520 floats = 4.3 MB: read from memory
    reread = int(matrix * CACHED_READ_SHARE) if fits else matrix
    assert work.weight_bytes == every  # once a call; the re-reads apart (burst24)
    assert work.reread_bytes == (steps - 1) * reread


@pytest.mark.parametrize("batch", [1, 8])
def test_the_bundled_profile_prices_a_long_lstm_near_its_time_at_either_batch(batch):
    """LSTM 256 wide, 64 steps, one thread: before, batch 1 x1.9 (its 1 MB matrices priced as
    memory reads every step); now x1.06 at batch 1 and x0.67 at batch 8 (load 3.5)."""
    torch.manual_seed(0)
    module = am.build("lstm", hidden=256).eval()
    graph = build_graph(am.export(module, [torch.randn(2, 64, 6)]), "lstm")
    fit = load_profile().compute
    predicted = sum(
        fit.ms(w.op, w.macs, w.act_bytes, w.weight_bytes, w.steps, w.reread_bytes)
        for w in node_works(graph, batch)
        if ".lstm." in w.op
    )
    measured_ms = _one_thread_ms(module.rnn, torch.randn(batch, 64, 6))
    assert 0.5 < predicted / measured_ms < 1.5, (predicted, measured_ms)
