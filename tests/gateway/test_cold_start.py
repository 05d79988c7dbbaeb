"""The cold start routing adds to a burst spill: learnt from answers, raised at once by failures
and by requests still in flight, measured at start-up where the platform can start instances."""

from __future__ import annotations

import asyncio

import numpy as np

from gateway.cold_start import ColdStartEstimate, probe_cold_start
from gateway.live import LiveCollector
from policies.routing.slo_aware import predict_burst_ms
from policies.state import ManualClock
from vmpool.artifact import ModelConfig, TensorSpec


def _live(clock: ManualClock) -> LiveCollector:
    return LiveCollector(
        pool=None, burst=None, model_slos_ms={"m": 7200.0}, clock=clock.now, refresh_s=0.0
    )


def test_a_burst_timeout_stops_the_router_spilling_to_cold_functions():
    """The async_step failure: with the 1 s default, spills went to cold instances that needed
    over 30 s; once one times out, routing counts a cold start of at least that long."""
    clock = ManualClock()
    live = _live(clock)
    snap = live.snapshot()
    assert predict_burst_ms(snap.burst, snap.model("m"), 1) < 7200.0  # a spill looks fine
    token = live.burst_started(1)
    clock.advance(30.0)
    live.burst_finished("m", None, 0, token=token, failed_after_ms=30_000.0)
    snap = live.snapshot()
    assert snap.burst.cold_start_ms == 30_000.0
    assert predict_burst_ms(snap.burst, snap.model("m"), 1) > 30_000.0  # no longer
    clock.advance(61.0)  # the evidence expires: the learnt (or default) figure again
    assert live.snapshot().burst.cold_start_ms == 1000.0


def test_a_request_still_in_flight_bounds_the_cold_start_from_below():
    clock = ManualClock()
    est = ColdStartEstimate()
    first = est.started(clock.now())
    clock.advance(8.0)
    second = est.started(clock.now())
    clock.advance(1.0)
    assert est.ms(clock.now(), default_ms=1000.0, warm_p50_ms=500.0) == 8500.0  # oldest, 9 s
    est.finished(clock.now(), first)  # the caller left: no evidence, no longer in flight
    assert est.ms(clock.now(), default_ms=1000.0, warm_p50_ms=500.0) == 1000.0  # the second: 1 s
    est.finished(clock.now(), second, cold_latency_ms=12_500.0, warm_p50_ms=500.0)
    assert est.ms(clock.now(), default_ms=1000.0) == 12_000.0


def test_cold_answers_are_smoothed_and_the_default_stands_until_one():
    est = ColdStartEstimate()
    assert est.ms(0.0, default_ms=2500.0) == 2500.0
    est.finished(0.0, est.started(0.0), cold_latency_ms=10_000.0)
    est.finished(0.0, est.started(0.0), cold_latency_ms=20_000.0)
    assert est.ms(0.0, default_ms=2500.0) == 13_000.0  # 0.7 * 10 s + 0.3 * 20 s


async def test_the_probe_times_a_fresh_instance_once_the_plans_are_prepared():
    cfg = ModelConfig(
        name="m",
        inputs=(TensorSpec("x", "FP32", (-1, 4)),),
        outputs=(TensorSpec("y", "FP32", (-1, 2)),),
    )
    order, measured = [], []
    prepared = asyncio.get_running_loop().create_future()

    async def prewarm(n):
        order.append(("prewarm", n))
        return True

    async def infer(model, inputs, *, workers):
        order.append(("infer", model, inputs["x"].shape, workers))

    probe = asyncio.ensure_future(
        probe_cold_start(prepared, prewarm, infer, {"m": cfg}, 2, measured.append)
    )
    await asyncio.sleep(0)
    assert order == []  # waits for the plans
    prepared.set_result(None)
    await probe
    assert order == [("prewarm", 1), ("infer", "m", (1, 4), 2)]
    assert len(measured) == 1 and measured[0] >= 0.0


async def test_a_probe_past_its_timeout_reports_the_timeout():
    measured = []

    async def prewarm(n):
        await asyncio.Event().wait()  # an instance that never comes up

    await probe_cold_start(None, prewarm, None, {}, 1, measured.append, timeout_s=0.05)
    assert measured == [50.0]


async def test_a_failed_probe_keeps_the_default():
    measured = []

    async def prewarm(n):
        raise RuntimeError("runtime down")

    await probe_cold_start(None, prewarm, None, {}, 1, measured.append)
    assert measured == []


def test_zero_inputs_match_the_config():
    from gateway.cold_start import zero_inputs

    cfg = ModelConfig(
        name="m",
        inputs=(TensorSpec("x", "FP32", (-1, 3, 8)),),
        outputs=(TensorSpec("y", "FP32", (-1,)),),
    )
    x = zero_inputs(cfg)["x"]
    assert x.shape == (1, 3, 8) and x.dtype == np.float32 and not x.any()


def test_an_answer_proves_only_itself_and_the_answers_beside_it_warm():
    """Four spills starting cold beside one warm answer are not four warm instances (counting
    them sent the next spills to instances not up yet: 30 s timeouts in async_step)."""
    clock = ManualClock()
    live = _live(clock)
    cold = [live.burst_started(1) for _ in range(4)]
    warm = live.burst_started(1)
    clock.advance(1.2)
    live.burst_finished("m", 1200.0, 0, token=warm)
    assert live.snapshot().burst.warm_instances == 1
    a, b = live.burst_started(1), live.burst_started(1)
    clock.advance(1.0)
    live.burst_finished("m", 1000.0, 0, token=a)
    live.burst_finished("m", 1000.0, 0, token=b)
    assert live.snapshot().burst.warm_instances == 2  # two answered side by side
    for token in cold:
        live.burst_finished("m", None, 0, token=token, failed_after_ms=30_000.0)
    assert live.snapshot().burst.warm_instances == 2


def test_on_the_embedded_runtime_cold_starts_under_way_lengthen_the_next():
    """Instances of the embedded runtime start on the gateway's cores: with one cold start under
    way the next is predicted twice as long (4-8 spills at once took 16-23 s where the probe
    measured 3.5 s); a remote platform's cold starts do not contend."""
    clock = ManualClock()
    embedded = LiveCollector(
        pool=None,
        burst=None,
        model_slos_ms={"m": 7200.0},
        clock=clock.now,
        refresh_s=0.0,
        burst_concurrency=24,
    )
    remote = _live(clock)
    for live in (embedded, remote):
        live.cold_start_ms = 3500.0
        live.burst_started(1)  # no instance known warm: a cold start under way
    assert embedded.snapshot().burst.cold_start_ms == 7000.0
    assert remote.snapshot().burst.cold_start_ms == 3500.0
