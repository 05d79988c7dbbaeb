"""A recurrent node a profile measured at batch 1 is priced at batch b as its fit grows, not
b times over (burst24, issue 7).

A measured node's time at batch b was ``fixed + (measured - fixed) x b``: right for a conv,
whose work is all per sample, wrong for an LSTM, whose weights (reordered once a call) and
hidden matrices (read again every step) cost the same at any batch. A profiled 256-wide LSTM
over 64 steps (3.0 ms at batch 1, 7.5 at batch 8 on one thread) was priced at ~24 ms at 8."""

from __future__ import annotations

import pytest

from policies.perf import Deployment, NodeWork, PerfModel
from policies.profile import ComputeFit, KindFit, ModelTimes, Profile, Quantiles, TransferFit

LSTM = KindFit(0.08, 9.0, 0.2, 0.15, 0.0005, 0.04)
SHAPE = (1, 64, 6)


def _profile() -> Profile:
    return Profile(
        source="test",
        cores=2,
        invoke_warm_ms={1: Quantiles.constant(1.0)},
        invoke_cold_ms=Quantiles.constant(900.0),
        master_overhead_ms=Quantiles.constant(5.0),
        transfer={"inline": TransferFit(0.5, 4.0), "dir": TransferFit(1.0, 1.0)},
        compute=ComputeFit({}, 0.0, {"lstm": LSTM, "elementwise": KindFit(0.01)}),
        split_slowdown={"spatial": {1: 1.0}},
        compute_cv=0.0,
        models={"m": ModelTimes(SHAPE, {"rnn": 6.0, "head": 0.5})},
    )


def _works(batch: int) -> list[NodeWork]:
    # GEMM MACs grow with the batch (input matrices, steps' samples past one); the weights
    # read once and the steps' re-reads do not (burst.graph_macs.recurrent_work)
    macs = 64 * (batch * 6 * 1024 + (batch - 1) * 256 * 1024)
    rnn = NodeWork("rnn", "aten.lstm.input", macs, 0.0, 90_000 * batch, 2_200_000, 128, 68 << 20)
    return [rnn, NodeWork("head", "aten.linear.default", 768 * batch)]


def _at(batch: int) -> float:
    one = LSTM.ms(*[getattr(_works(1)[0], f) for f in _FIELDS])
    at_b = LSTM.ms(*[getattr(_works(batch)[0], f) for f in _FIELDS])
    return 6.0 * at_b / one


_FIELDS = ("macs", "act_bytes", "weight_bytes", "steps", "reread_bytes")


@pytest.mark.parametrize("batch", [2, 8])
def test_a_measured_recurrent_node_scales_with_the_batch_as_its_fit_does(batch):
    model = PerfModel(
        _profile(), Deployment(), _works(batch), "m", SHAPE, batch, works_at_one=_works(1)
    )
    assert model.node_ms["rnn"] == pytest.approx(_at(batch))
    assert model.node_ms["rnn"] < 1.5 * 6.0  # its batch-independent work is most of it
    assert model.node_ms["head"] == pytest.approx(0.5 * batch, rel=0.05)  # others as before


def test_at_batch_one_the_measured_time_is_the_price():
    model = PerfModel(_profile(), Deployment(), _works(1), "m", SHAPE, 1, works_at_one=_works(1))
    assert model.node_ms["rnn"] == pytest.approx(6.0)
