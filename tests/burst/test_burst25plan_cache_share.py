"""A recurrent layer's hidden matrix re-read every step is priced with a cache share graded by
its size, as one thread measured it (burst24: per step at batch 1, 0.010-0.014 ms/MB up to
1.05 MB, 0.018-0.019 at 1.33-1.64 MB, 0.026 at 1.98 MB, 0.037-0.045 from 2.36 MB), not a
step at 2 MB: a 1.98 MB matrix was priced at the 1 MB one's share (0.4) and a 2.1 MB one at
a whole memory read."""

from __future__ import annotations

import pytest
import torch

from burst.graph import build_graph
from burst.graph_macs import RECURRENT_OPS
from burst.node_work import node_works
from tests.burst.test_burst23_recurrent_cache import _Lstm

STEPS = 10
MEMORY_MS_PER_MB = 0.041  # the measured rate from 2.36 MB up (the middle of 0.037-0.045)


def _share(hidden: int) -> float:
    """What a step's re-read is priced at, as a share of reading the matrix from memory."""
    module = _Lstm(hidden).eval()
    program = torch.export.export(module, (torch.randn(1, STEPS, 8),))
    (work,) = [w for w in node_works(build_graph(program, "lstm"), 1) if w.op in RECURRENT_OPS]
    matrix = module.rnn.weight_hh_l0.numel() * 4
    return work.reread_bytes / ((STEPS - 1) * matrix)


@pytest.mark.parametrize(
    "hidden, measured_ms_per_mb",
    [(256, 0.012), (320, 0.0185), (352, 0.026), (384, 0.041)],  # 1.05, 1.64, 1.98, 2.36 MB (1e6)
)
def test_the_re_read_share_climbs_with_the_matrix_as_measured(hidden, measured_ms_per_mb):
    share = _share(hidden)
    if hidden == 256:  # the cache's own share, fitted with the compute fit's re-read rate
        assert share == pytest.approx(0.4)
    else:  # before: 0.4, 0.4, 1.0 for the last three
        assert share == pytest.approx(measured_ms_per_mb / MEMORY_MS_PER_MB, abs=0.06)


def test_the_share_never_falls_as_the_matrix_grows():
    shares = [_share(h) for h in (256, 300, 340, 360, 372, 400, 520)]
    assert shares == sorted(shares)
    assert shares[-1] == 1.0
