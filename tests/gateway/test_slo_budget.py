"""The live error budget measures what the routing policy in force spends: its window and its
quantile, as configured or swapped through the admin API (not slo-aware's defaults)."""

from __future__ import annotations

import pytest

from gateway.control import PolicyEngine
from gateway.dispatch import Dispatcher
from gateway.live import LiveCollector
from gateway.metrics import GatewayMetrics
from gateway.policy_settings import NoScaling, PolicyChoice
from gateway.tenants import TenantRegistry
from gateway.vm_error import PredictionError
from policies.costs import PriceTable
from policies.routing import SloAware, VmOnly
from policies.state import ManualClock

SLO_MS = 100.0


def _engine(params: dict, clock: ManualClock) -> tuple[PolicyEngine, LiveCollector]:
    metrics = GatewayMetrics()
    dispatcher = Dispatcher(
        models={},
        tenants=TenantRegistry([]),
        pool=None,
        burst=None,
        policy=VmOnly(),
        ledger=None,
        metrics=metrics,
        prices=PriceTable(),
    )
    collector = LiveCollector(
        pool=None, burst=None, model_slos_ms={"m": SLO_MS}, clock=clock.now, refresh_s=0.0
    )
    engine = PolicyEngine(
        choice=PolicyChoice("slo-aware", params, NoScaling(min_replicas=0)),
        configured_replicas=0,
        pool=None,
        collector=collector,
        dispatcher=dispatcher,
        metrics=metrics,
    )
    return engine, collector


def _answers(collector: LiveCollector, clock: ManualClock, reference: PredictionError, n: int):
    """``n`` VM answers, predicted 20 ms, observed 18..60 ms (one over the SLO in ten)."""
    for i in range(n):
        clock.advance(0.1)
        observed = SLO_MS + 10 if i % 10 == 0 else 18.0 + (i % 7) * 6
        collector.on_vm_answer("m", 1, observed, 0, predicted_ms=20.0, path_ms=observed)
        reference.on_answer(clock.now(), 20.0, observed)


def _stats(collector: LiveCollector):
    return collector.snapshot(fresh=True).model("m")


def test_the_budget_window_is_the_routing_policys():
    clock = ManualClock()
    _, collector = _engine({"budget_window_s": 60.0}, clock)
    _answers(collector, clock, PredictionError(), 100)
    before = _stats(collector)
    assert (before.slo_answered, before.slo_missed) == (100, 10)
    clock.advance(120.0)  # past the configured minute, well inside slo-aware's default hour
    after = _stats(collector)
    assert (after.slo_answered, after.slo_missed) == (0, 0)


def test_the_budget_quantile_is_the_routing_policys_and_follows_a_swap():
    clock = ManualClock()
    engine, collector = _engine({"budget_quantile": 0.9}, clock)
    reference = PredictionError()
    _answers(collector, clock, reference, 200)
    at_p90 = reference.table(clock.now(), SLO_MS, 0.9)
    at_default = reference.table(clock.now(), SLO_MS, SloAware().budget_quantile)
    assert at_p90 is not None and at_p90 != at_default  # the two quantiles differ here
    assert _stats(collector).vm_budget_factors == at_p90

    engine.set_policy(
        PolicyChoice("slo-aware", {"budget_quantile": 0.99}, engine.choice.autoscaling)
    )
    assert _stats(collector).vm_budget_factors is None  # no relaxation: nothing calibrated
    engine.set_policy(PolicyChoice("vm-only", {}, engine.choice.autoscaling))
    assert _stats(collector).vm_budget_factors is None
    assert _stats(collector).slo_answered == 200  # the answers stay counted across a swap


@pytest.mark.parametrize(
    "params",
    [
        {"budget_quantile": 1.5},
        {"budget_quantile": 0},
        {"budget_window_s": -5},
        {"budget_spend": "half"},
        {"slo_margin": 0},
        {"budget_quantil": 0.9},
    ],
)
def test_a_bad_budget_parameter_is_refused_and_changes_nothing(params):
    clock = ManualClock()
    engine, collector = _engine({"budget_quantile": 0.9}, clock)
    policy = engine.dispatcher.policy
    with pytest.raises(ValueError, match="budget_|slo_margin|bad parameters"):
        engine.set_policy(PolicyChoice("slo-aware", params, engine.choice.autoscaling))
    assert engine.dispatcher.policy is policy and engine.choice.routing_params == {
        "budget_quantile": 0.9
    }
