"""The control loop and readiness of the policy engine, in simulated time over an in-memory fleet."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gateway.control import PolicyChoice, PolicyEngine
from gateway.dispatch import Dispatcher
from gateway.live import LiveCollector
from gateway.metrics import GatewayMetrics
from gateway.policy_settings import KnativeScaling, NoScaling, TargetScaling
from gateway.tenants import TenantRegistry
from policies.costs import PriceTable
from policies.routing import VmOnly
from policies.state import ManualClock
from tests.vmpool.fake_fleet import FakeClient, FakeProvisioner
from vmpool.pool import ReplicaPool

X = {"x": np.ones((1, 4), np.float32)}


def _engine(scaling, clock, *, prepare_task=None, burst=None):
    prov, client = FakeProvisioner(clock), FakeClient()
    prov.client = client
    pool = ReplicaPool(prov, client, clock=clock.now, seed=0)
    metrics = GatewayMetrics()
    dispatcher = Dispatcher(
        models={},
        tenants=TenantRegistry([]),
        pool=pool,
        burst=burst,
        policy=VmOnly(),
        ledger=None,
        metrics=metrics,
        prices=PriceTable(),
    )
    collector = LiveCollector(
        pool=pool, burst=burst, model_slos_ms={"m": 100.0}, clock=clock.now, refresh_s=0.0
    )
    dispatcher.live = collector
    engine = PolicyEngine(
        choice=PolicyChoice("vm-only", {}, scaling),
        configured_replicas=1,
        pool=pool,
        collector=collector,
        dispatcher=dispatcher,
        metrics=metrics,
        burst=burst,
        prepare_task=prepare_task,
    )
    return engine, pool, prov, client


async def _until(predicate):
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_each_tick_drives_the_pool_to_what_the_autoscaler_wants():
    clock = ManualClock()
    engine, pool, prov, client = _engine(
        TargetScaling(
            policy="target",
            target_in_flight_per_replica=2,
            metric_window_s=1,
            min_replicas=1,
            max_replicas=4,
        ),
        clock,
    )
    clock.advance(1)
    assert (await engine.tick()).replicas == 1 and pool.desired == 1
    prov.boot_all()
    client.gate.clear()
    held = [asyncio.ensure_future(pool.infer("m", X)) for _ in range(6)]
    await _until(lambda: sum(client.in_flight.values()) == 6)
    clock.advance(1)
    decision = await engine.tick()
    assert decision.replicas == 3 and pool.desired == 3 and len(pool.booting()) == 2
    metrics = engine.metrics.render().decode()
    assert 'tidegate_vm_replicas{state="desired"} 3.0' in metrics
    assert 'tidegate_vm_replicas{state="booting"} 2.0' in metrics
    client.gate.set()
    await asyncio.gather(*held)


async def test_scale_in_through_the_engine_loses_no_request():
    clock = ManualClock()
    engine, pool, prov, client = _engine(NoScaling(min_replicas=1, max_replicas=3), clock)
    engine.set_policy(
        PolicyChoice("vm-only", {}, TargetScaling(policy="target", min_replicas=3, max_replicas=3))
    )
    await engine.tick()
    prov.boot_all()
    client.gate.clear()
    held = [asyncio.ensure_future(pool.infer("m", X)) for _ in range(12)]
    await _until(lambda: sum(client.in_flight.values()) == 12)
    busy = {u: n for u, n in client.in_flight.items() if n}
    assert len(busy) == 3  # every replica holds requests
    engine.set_policy(
        PolicyChoice(
            "vm-only",
            {},
            KnativeScaling(
                policy="knative", target_in_flight_per_replica=100, min_replicas=1, max_replicas=3
            ),
        )
    )
    clock.advance(1)
    assert (await engine.tick()).replicas == 1
    assert len(pool.draining()) == 2 and prov.drained == []
    client.gate.set()
    answers = await asyncio.gather(*held)
    assert len(answers) == 12  # all answered, none lost
    await _until(lambda: len(prov.drained) == 2)
    assert all(busy_then == 0 for _, busy_then in prov.drained)
    assert len(prov.replicas()) == 1


async def test_ready_only_with_the_minimum_of_replicas_and_prepared_plans():
    clock = ManualClock()
    never = asyncio.get_running_loop().create_future()
    engine, pool, prov, _ = _engine(
        NoScaling(min_replicas=1), clock, prepare_task=never, burst=object()
    )
    await engine.tick()
    assert not engine.ready()  # booting
    prov.boot_all()
    assert not engine.ready()  # plans not prepared yet
    never.set_result(None)
    assert engine.ready()
    # with no VM minimum, the burst path alone makes it ready
    engine2, *_ = _engine(
        TargetScaling(policy="target", min_replicas=0), ManualClock(), burst=object()
    )
    assert engine2.ready()


async def test_a_failing_tick_is_counted_and_the_loop_goes_on():
    clock = ManualClock()
    ticks = asyncio.Event()

    async def sleep(seconds):
        clock.advance(seconds)
        await asyncio.sleep(0)

    engine, pool, prov, _ = _engine(NoScaling(), clock)
    engine._sleep = sleep
    calls = []

    async def flaky_tick():
        calls.append(clock.now())
        if len(calls) == 1:
            raise RuntimeError("provisioner API down")
        ticks.set()

    engine.tick = flaky_tick
    engine.start()
    await ticks.wait()
    await engine.close()
    assert len(calls) >= 2
    assert "tidegate_control_loop_errors_total 1.0" in engine.metrics.render().decode()


def test_the_live_view_keeps_cold_starts_and_queueing_out_of_the_tails():
    """Cold-started burst answers teach the cold-start penalty instead of widening the warm
    tail (routing adds a cold start only when the warm pool is short); the VM service-time
    spread comes from requests that found their replica idle, not from queued ones."""
    clock = ManualClock()
    live = LiveCollector(
        pool=None, burst=None, model_slos_ms={"m": 1000.0}, clock=clock.now, refresh_s=0.0
    )
    for _ in range(10):
        live.burst_started(1)
        live.burst_finished("m", 250.0, 0)
    live.burst_started(1)
    live.burst_finished("m", 5250.0, 1)
    for _ in range(25):
        live.on_vm_answer("m", 1, 220.0, 0)
    live.on_vm_answer("m", 1, 1400.0, 30)  # waited behind a queue of 30
    snap = live.snapshot()
    stats = snap.model("m")
    assert stats.burst_latency.p99_ms == 250.0 and stats.burst_latency.count == 10
    assert snap.burst.cold_start_ms == 5000.0
    assert stats.vm_service_latency.p99_ms == 220.0 and stats.vm_service_latency.count == 25
    assert stats.vm_latency.count == 26


async def test_a_warm_pool_starts_with_the_gateway_counts_once_up_and_is_billed():
    from gateway.policy_settings import PredictiveScaling

    class Burst:
        def __init__(self):
            self.up = asyncio.Event()
            self.asked: list[int] = []

        async def prewarm(self, instances: int) -> bool:
            self.asked.append(instances)
            await self.up.wait()
            return True

        async def infer(self, model, inputs, *, workers):
            raise AssertionError("no models: no first invocations")

    clock, burst = ManualClock(), Burst()
    scaling = PredictiveScaling(policy="predictive", min_warm_functions=3, max_warm_functions=3)
    engine, *_ = _engine(scaling, clock, burst=burst)
    await engine.tick()
    await _until(lambda: burst.asked == [3])
    assert engine.collector.snapshot(fresh=True).burst.warm_instances == 0  # still starting
    burst.up.set()
    await _until(lambda: engine.collector.prewarmed_instances == 3)
    assert engine.collector.snapshot(fresh=True).burst.warm_instances == 3
    clock.advance(10.0)
    await engine.tick()
    text = engine.metrics.render().decode()
    # 3 instances of the default 1024 MB held 10 s at the provisioned-concurrency price
    cost = [ln for ln in text.splitlines() if ln.startswith("tidegate_warm_functions_cost")][0]
    assert float(cost.split()[-1]) == pytest.approx(3 * 1.0 * 10 * 0.0000041667)
    await engine.close()


async def test_the_warm_pool_is_let_go_and_no_longer_billed_once_the_forecast_drops():
    """A forecast shortfall holds 4 instances (billed); once the forecast no longer asks for
    them nothing more is billed, and routing counts them warm only for the keep-alive."""
    from policies.autoscaling import ScaleDecision

    class Burst:
        asked: list[int] = []

        async def prewarm(self, instances: int) -> bool:
            self.asked.append(instances)
            return True

        async def infer(self, model, inputs, *, workers):
            raise AssertionError("no models: no first invocations")

    per_s = 4 * 1.0 * 0.0000041667  # 4 instances of 1024 MB at the provisioned price
    script = [ScaleDecision(1, "burst", 4, per_s)] * 2 + [ScaleDecision(1, "calm", 0, 0.0)] * 2

    class Scripted:
        name, min_replicas, max_replicas = "scripted", 1, 1

        def decide(self, state):
            return script.pop(0)

    clock = ManualClock()
    engine, *_ = _engine(NoScaling(policy="none"), clock, burst=Burst())
    engine.autoscaler = Scripted()
    await engine.tick()
    await _until(lambda: engine.collector.prewarmed_instances == 4)
    for _ in range(3):
        clock.advance(10.0)
        await engine.tick()
    assert engine.collector.prewarmed_instances == 0
    text = engine.metrics.render().decode()
    cost = [ln for ln in text.splitlines() if ln.startswith("tidegate_warm_functions_cost")][0]
    assert float(cost.split()[-1]) == pytest.approx(per_s * 10)  # only the 10 s it was asked for
    assert engine.collector.snapshot(fresh=True).burst.warm_instances == 4  # kept alive a while
    clock.advance(engine.collector.keep_alive_s + 1)
    assert engine.collector.snapshot(fresh=True).burst.warm_instances == 0
    await engine.close()


async def test_the_warm_pool_is_pinged_before_the_platform_reclaims_its_instances():
    """The instances kept warm get one invocation each, together, once ``ping_interval_s``
    (240 s) has passed since their last, so an idle one is not reclaimed between bursts; not
    more often (each ping is billed as an invocation)."""
    from policies.autoscaling import ScaleDecision

    class Burst:
        async def prewarm(self, instances: int) -> bool:
            return True

        async def infer(self, model, inputs, *, workers):
            raise AssertionError("counted by _first_invocations below")

    class Pool:
        name, min_replicas, max_replicas = "pool", 1, 1

        def decide(self, state):
            return ScaleDecision(1, "learnt pool", 3, 0.0)

    clock, invoked = ManualClock(), []
    engine, *_ = _engine(NoScaling(policy="none"), clock, burst=Burst())
    engine.autoscaler = Pool()

    async def first_invocations(n: int) -> None:
        invoked.append((clock.now(), n))

    engine._first_invocations = first_invocations

    async def tick_at(at_s: float) -> None:
        clock.advance(start + at_s - clock.now())
        await engine.tick()
        await _until(lambda: engine._prewarm is not None and engine._prewarm.done())

    start = clock.now()
    for at_s in (0.0, 100.0, 230.0, 250.0, 450.0, 510.0):
        await tick_at(at_s)
    assert [(t - start, n) for t, n in invoked] == [(0.0, 3), (250.0, 3), (510.0, 3)]
    # a ping due while a burst request is in flight waits for the platform to be quiet: an
    # instance serving needs none, and pinging all would start one for the ping
    token = engine.collector.burst_started(1)
    await tick_at(760.0)
    assert len(invoked) == 3
    engine.collector.burst_finished("m", 100.0, 0, token=token)
    await tick_at(770.0)
    assert [(t - start, n) for t, n in invoked][3:] == [(770.0, 3)]
    await engine.close()
