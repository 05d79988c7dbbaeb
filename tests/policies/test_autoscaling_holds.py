"""Holding VMs between bursts: the predictive scaler keeps a VM through the gap after a burst
when the gaps seen so far say the next burst's first boot time of spill costs more than the
wait (``policies/autoscaling/recurrence.py``)."""

from policies.autoscaling.recurrence import LayerRecurrence
from policies.state import ManualClock
from tests.policies.scaler_state import BOOT_S, CAP, VM_USD_PER_S, preset_scaler, snap


def bursts(clock, n, burst_s, gap_s, observe, rate=400.0, quiet=20.0):
    """``n`` bursts of ``burst_s`` at ``rate`` over a quiet load, ``gap_s`` apart; ``observe``
    is called every second with the rate."""
    out = []
    for _ in range(n):
        for rate_now, seconds in ((rate, burst_s), (quiet, gap_s)):
            for _ in range(seconds):
                clock.advance(1.0)
                out.append(observe(rate_now))
    return out


def test_a_vm_is_held_through_gaps_that_cost_less_than_the_next_bursts_first_boot():
    clock, rec = ManualClock(), LayerRecurrence()
    bursts(clock, 6, 60, 200, lambda r: rec.observe(clock.now(), r, CAP, BOOT_S))
    # the second VM would take 167 rows/s for the first boot time of each burst: 10,000
    # rows at $4e-6 ($0.04) against $0.0094 of VM time over a 200 s gap
    assert rec.hold_s(1, 4e-6, VM_USD_PER_S) == 200.0
    assert rec.holds(clock.now(), 1, 4e-6, VM_USD_PER_S)  # 200 s after the fall: not yet
    assert not rec.holds(clock.now() + 1.0, 1, 4e-6, VM_USD_PER_S)
    # at $2e-7 a row the spill saved ($0.002) is worth less than the wait: let it go
    assert rec.hold_s(1, 2e-7, VM_USD_PER_S) == 0.0


def test_short_bursts_far_apart_are_not_held_for():
    clock, rec = ManualClock(), LayerRecurrence()
    bursts(clock, 6, 10, 400, lambda r: rec.observe(clock.now(), r, CAP, BOOT_S))
    # 1,667 rows a burst ($0.0067) against $0.019 of VM time over a 400 s gap
    assert rec.hold_s(1, 4e-6, VM_USD_PER_S) == 0.0


def test_fewer_than_five_gaps_leave_the_cooldown_to_decide():
    clock, rec = ManualClock(), LayerRecurrence()
    bursts(clock, 4, 60, 200, lambda r: rec.observe(clock.now(), r, CAP, BOOT_S))
    assert rec.hold_s(1, 4e-6, VM_USD_PER_S) == 0.0  # four gaps: one lucky gap is no rule


def fleet_between_bursts(learn_holds: bool) -> list[int]:
    """The fleet asked for in the quiet of each of eight 60 s bursts 200 s apart (the preset's
    3-minute cooldown, functions at 0.11 s x 2 GB)."""
    clock = ManualClock()
    s = preset_scaler(
        learn_holds=learn_holds,
        regret_window_s=0.0,  # the holds alone (VMs here are up at once: no boot to regret)
    )
    fleet = [1]

    def tick(rate):
        fleet[0] = s.desired(snap(clock, rate, fleet[0], desired=fleet[0]))
        return fleet[0]

    asked = bursts(clock, 8, 60, 200, tick)
    return [min(asked[k * 260 + 60 : (k + 1) * 260]) for k in range(8)]


def test_the_scaler_keeps_its_burst_vms_through_the_gaps_once_they_recur():
    held, let_go = fleet_between_bursts(True), fleet_between_bursts(False)
    assert let_go[-3:] == [1, 1, 1]  # let go after the cooldown, booted again at each burst
    assert min(held[-3:]) > 1  # five gaps seen: kept up for the next burst
