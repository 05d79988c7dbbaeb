"""One VM more than the forecast while the spill it would take costs more than the VM
(``policies/autoscaling/spill_vm.py``; reference prices: a VM $0.17/h, a 110 ms 2 GB function
request ~$3.9e-6, so a VM pays once it takes ~12 spilled requests a second)."""

import math

from policies.autoscaling.spill_vm import SpillEconomics
from policies.costs import PriceTable, billed_ms, function_cost_usd

PRICES = PriceTable()
REQUEST_USD = function_cost_usd(PRICES, [(billed_ms(PRICES, 110.0), 2048)])
BREAK_EVEN_PER_S = PRICES.vm_usd_per_hour / 3600.0 / REQUEST_USD


def run(econ: SpillEconomics, seconds: int, spill_at, rate=70.0, at_forecast=True, t0=0):
    """One tick a second; ``spill_at(t)`` is the spill rate the gateway sees at t."""
    extra = []
    for t in range(t0, t0 + seconds):
        extra.append(
            econ.extra(
                float(t),
                spill_per_s=spill_at(t),
                vm_capacity_per_s=145.0,
                request_usd=REQUEST_USD,
                arrival_rate_per_s=rate(t) if callable(rate) else rate,
                fleet_at_forecast=at_forecast,
            )
        )
    return extra


def test_a_steady_spill_that_costs_more_than_a_vm_gets_one_after_a_window():
    assert 10 < BREAK_EVEN_PER_S < 14
    econ = SpillEconomics(600.0, PRICES)
    extra = run(econ, 900, lambda t: 20.0)  # Mooncake x20 on one VM: ~20 req/s spilled
    assert not any(extra[:590])  # one window of evidence first
    assert all(extra[610:])
    # it holds while the load holds, though the spill is gone (the extra VM takes it)
    assert all(run(econ, 1200, lambda t: 0.0, at_forecast=False, t0=900))


def test_the_extra_vm_goes_when_the_load_falls():
    econ = SpillEconomics(600.0, PRICES)
    run(econ, 900, lambda t: 20.0)
    extra = run(econ, 1800, lambda t: 0.0, rate=35.0, at_forecast=False, t0=900)
    assert extra[0] == 1 and extra[-1] == 0  # half the load: the spill measured no longer pays


def test_short_bursts_minutes_apart_never_add_a_vm():
    """MMPP-like: 15 s of 260 req/s spilled every 4 minutes averages ~16 req/s of spill, but one
    VM more could take at most 145 of it a second: ~9 req/s, under the break-even."""
    econ = SpillEconomics(600.0, PRICES)
    extra = run(econ, 3600, lambda t: 260.0 if t % 240 < 15 else 0.0)
    assert not any(extra)
    assert math.isclose(econ.absorbable_per_s, 145 * 15 / 240, rel_tol=0.5)


def test_a_spill_under_the_break_even_never_adds_one():
    econ = SpillEconomics(600.0, PRICES)
    assert not any(run(econ, 3600, lambda t: 0.8 * BREAK_EVEN_PER_S))


def test_a_zero_window_turns_it_off():
    econ = SpillEconomics(0.0, PRICES)
    assert not any(run(econ, 1200, lambda t: 100.0))
