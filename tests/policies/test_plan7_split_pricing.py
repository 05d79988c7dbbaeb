"""Split pricing "graph": every leg of a split pays each node's dispatch whole, and a spatial
leg's conv calls pay their weights and activations whole (``Profile.tile_call``); the rest by
the leg's share of the MACs. Priced by share alone, a model without split runs of its own was
predicted 15-30 % fast on its splits (tiles ran 1.2-1.3x their MAC share, burst25plan)."""

from __future__ import annotations

import dataclasses
from statistics import NormalDist

import pytest

from policies.calibration import Calibration
from policies.perf import Candidate, Deployment, NodeWork, PerfModel
from policies.profile import ComputeFit, KindFit, ModelTimes, Profile, Quantiles, TransferFit

CONV = KindFit(fixed_ms=0.05, ms_per_gmac=10.0, ms_per_mb=0.1, ms_per_weight_mb=0.03)
TILE = KindFit(ms_per_mb=0.11, ms_per_weight_mb=0.21)
# one conv: 2 GMAC, 4 MB of activations, 10 MB of weights: 20.8 ms on one thread
WORKS = [NodeWork("conv", "aten.conv2d.default", 2 * 10**9, 0.0, 4 * 10**6, 10 * 10**6)]
MACS = WORKS[0].macs


def _profile(pricing: str = "graph", **kw) -> Profile:
    return Profile(
        source="test",
        cores=2,
        invoke_warm_ms={1: Quantiles.constant(0.0)},
        invoke_cold_ms=Quantiles.constant(900.0),
        master_overhead_ms=Quantiles.constant(5.0),
        transfer={"inline": TransferFit(0.0, 0.0), "dir": TransferFit(0.0, 0.0)},
        compute=ComputeFit({"conv": 10.0}, 0.0, {"conv": CONV}),
        split_slowdown={"spatial": {1: 1.0}, "output": {1: 1.0}},
        compute_cv=0.0,
        split_pricing=pricing,
        tile_call=TILE,
        **kw,
    )


def _stage_ms(profile: Profile, split: str, share: float) -> float:
    """A 2-leg stage whose every leg has ``share`` of the MACs (halos included)."""
    legs = (int(MACS * share),) * 2
    c = Candidate(0, 1, split, 2, ("conv",), MACS, legs, (1000, 1000), (1000, 1000), 0)
    model = PerfModel(profile, Deployment(inline_limit_bytes=10**6), WORKS)
    return model.stage(c).mean_ms


def test_a_halod_spatial_leg_is_priced_above_its_mac_share():
    whole = CONV.ms(MACS, 4e6, 10e6)
    share = 0.55  # half the rows and a halo
    # a conv call on a tile: 0.11 x 4 MB + 0.21 x 10 MB, whatever the tile
    call = TILE.ms(0, 4e6, 10e6)
    assert _stage_ms(_profile(), "spatial", share) == pytest.approx(
        call + share * (whole - call), rel=1e-6
    )
    assert _stage_ms(_profile(), "spatial", share) > share * whole * 1.05
    # profiles before it (no split_pricing) price the share, as their calibrations expect
    assert _stage_ms(_profile("share"), "spatial", share) == pytest.approx(share * whole)


def test_an_output_leg_pays_only_the_dispatch_whole():
    """An output leg reads its slice of the weights: only the node's fixed part is whole."""
    whole = CONV.ms(MACS, 4e6, 10e6)
    got = _stage_ms(_profile(), "output", 0.5)
    assert got == pytest.approx(CONV.fixed_ms + 0.5 * (whole - CONV.fixed_ms), rel=1e-6)


def test_the_whole_part_is_capped_by_the_nodes_time():
    """A tiny conv with big weights (a 1x1 over 1x1 maps) costs a leg no more than the node."""
    tiny = [NodeWork("conv", "aten.conv2d.default", 10**5, 0.0, 10**4, 50 * 10**6)]
    c = Candidate(0, 1, "spatial", 2, ("conv",), 10**5, (10**5, 10**5), (8, 8), (8, 8), 0)
    model = PerfModel(_profile(), Deployment(inline_limit_bytes=10**6), tiny)
    assert model.stage(c).mean_ms == pytest.approx(model.serial_ms(("conv",)), rel=1e-6)


def test_a_profile_round_trips_its_split_pricing():
    p = _profile()
    back = Profile.from_json(p.to_json())
    assert back.split_pricing == "graph" and back.tile_call == TILE
    raw = p.to_json()
    del raw["split_pricing"], raw["tile_call"]
    assert Profile.from_json(raw).split_pricing == "share"


def test_a_model_without_runs_takes_the_hosts_drift():
    """The drift is the host's: an unprofiled model's p99 spreads by it too (it spread by
    the legs' 5 % alone: its p99 1.12x its p50 where profiled models' read 1.5x)."""
    cal = Calibration(1.0, {}, 0.08, 0.2)
    shape = (1, 3, 8, 8)
    profile = dataclasses.replace(_profile(), compute_cv=0.05).with_model(
        "seen", ModelTimes(shape, {"conv": 20.0}, calibration=cal)
    )
    serial = Candidate(0, 1, "serial", 0, ("conv",), 0, (0,), (), (), 0)
    model = PerfModel(profile, Deployment(), WORKS, "unseen", shape)
    pred = model.predict([serial])
    one_fn = CONV.ms(MACS, 4e6, 10e6)
    z99 = NormalDist().inv_cdf(0.99)
    assert pred.p99_ms - pred.p50_ms == pytest.approx(z99 * (0.05**2 + 0.2**2) ** 0.5 * one_fn)
