"""Functions seen late for less than a VM's boot do not price the spill x100; slow for good, they do.

Session 25's loaded run: both models' warm functions answered over the SLO for 12 ticks (host
load, not the plan) and the x100 price booted a 2nd and a 3rd VM that came up after the spell.
The decision the price flips here is the spill VM's: 4 requests a second spilled (one instance
of 1 GB a request, 250 ms, or 500 ms while late) is under a VM's price at the bill, over it
x100."""

from __future__ import annotations

from policies.autoscaling.predictive import Predictive
from policies.state import BurstState, LatencyQuantiles, LiveState, ModelStats, VmState

BOOT_S = 30.0
SLO_MS = 300.0


def _state(now_s: float, seen_ms: float | None, predicted_ms: float) -> LiveState:
    seen = None if seen_ms is None else LatencyQuantiles(seen_ms, seen_ms, seen_ms, 100)
    in_flight = round(4 * (seen_ms or predicted_ms) / 1e3)  # Little's law: 4 a second
    model = ModelStats(slo_ms=SLO_MS, burst_latency=seen, burst_predicted_ms=predicted_ms)
    return LiveState(
        now_s=now_s,
        vm=VmState(1, 0, 0, desired_replicas=1, boot_s=BOOT_S),
        burst_enabled=True,
        burst=BurstState(in_flight=in_flight, memory_mb=1024, default_workers=1),
        models={"a": model, "b": model},
        arrival_rate_short_per_s=100.0,
        arrival_rate_long_per_s=100.0,
    )


def _fleet(seen_ms_at, predicted_ms: float = 100.0, seconds: int = 720) -> list[int]:
    """The scaler's fleet each second; functions' observed median ``seen_ms_at(t)``."""
    scaler = Predictive(
        min_replicas=1,
        max_replicas=8,
        instances_per_burst_request=1,
        duration_aware=False,
        scale_in_cooldown_s=0.0,
    )
    return [
        scaler.decide(_state(float(t), seen_ms_at(t), predicted_ms)).replicas
        for t in range(seconds)
    ]


def test_spells_of_late_functions_shorter_than_a_boot_buy_no_vm():
    # 12 s of 500 ms every minute (host load), 250 ms otherwise: the x100 price flipped the
    # spill VM on at the first spell after its window (600 s)
    fleet = _fleet(lambda t: 500.0 if t % 60 < 12 else 250.0)
    assert set(fleet) == {1}


def test_functions_late_for_good_still_buy_one_once_the_spell_outlasts_a_boot():
    fleet = _fleet(lambda t: 500.0)
    assert fleet[599] == 1 and set(fleet[600:]) == {2}  # the spill VM's window, then x100


def test_functions_the_plan_says_are_late_are_priced_x100_at_once():
    # no observation yet: the plan's 500 ms is the evidence, as before
    fleet = _fleet(lambda t: None, predicted_ms=500.0)
    assert set(fleet[600:]) == {2}
    # nor does a late spell the plan foresees wait for a boot
    late_spell = _fleet(lambda t: 500.0 if t % 60 < 12 else 250.0, predicted_ms=500.0)
    assert 2 in late_spell[600:612]
