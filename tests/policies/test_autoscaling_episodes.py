"""Duration-aware scale-out: the predictive scaler boots a VM for an overload only once past
overloads say it would come up in time to pay for itself."""

from policies.autoscaling import Predictive
from policies.autoscaling.episodes import BootEconomics, OverloadEpisodes
from policies.costs import PriceTable
from policies.state import BurstState, LiveState, ManualClock, ModelStats, VmState

CURVE = ((1, 20.0), (8, 48.0))  # one replica: 8 / 48 ms = 166.7 rows/s at full batches
BOOT_S = 60.0


def snap(clock, rate, ready=1):
    vm = VmState(ready, 0, 0, max_batch_size=8, boot_s=BOOT_S)
    return LiveState(
        clock.now(),
        vm,
        True,
        BurstState(),
        {"m": ModelStats(vm_service_ms_by_batch=CURVE)},
        arrival_rate_short_per_s=rate,
    )


def bursts(scaler, clock, burst_s, n, rate=400.0, quiet_s=400):
    """``n`` bursts of ``burst_s`` seconds at ``rate`` over a quiet 20 req/s; the replicas
    asked for during each burst."""
    asked = []
    for _ in range(n):
        during = []
        for _ in range(burst_s):
            clock.advance(1.0)
            during.append(scaler.desired(snap(clock, rate)))
        asked.append(max(during))
        for _ in range(quiet_s):
            clock.advance(1.0)
            scaler.desired(snap(clock, 20.0))
    return asked


def scaler(duration_aware=True):
    return Predictive(min_replicas=1, max_replicas=10, duration_aware=duration_aware)


def test_no_vm_is_booted_for_bursts_once_history_shows_they_end_before_a_boot():
    asked = bursts(scaler(), ManualClock(), burst_s=10, n=6)
    assert asked[:3] == [asked[0]] * 3 and asked[0] > 1  # no history yet: booted as before
    assert asked[3:] == [1, 1, 1]  # three 10 s bursts seen: a 60 s boot would come up after
    assert bursts(scaler(False), ManualClock(), burst_s=10, n=6)[3:] == [asked[0]] * 3


def test_vms_are_still_booted_for_bursts_that_outlast_a_boot():
    on, off = bursts(scaler(), ManualClock(), 300, 5), bursts(scaler(False), ManualClock(), 300, 5)
    assert on == off and min(on) > 1


def test_a_burst_longer_than_any_seen_gets_its_vm_once_it_outlasts_them():
    clock, s = ManualClock(), scaler()
    bursts(s, clock, burst_s=10, n=3)
    during = []
    for _ in range(120):
        clock.advance(1.0)
        during.append(s.desired(snap(clock, 400.0)))
    assert during[:9] == [1] * 9  # still looks like the short ones
    assert max(during) > 1  # beyond every burst seen there is no evidence: boot


def test_without_history_the_scaler_decides_as_before():
    on, off, c1, c2 = scaler(), scaler(False), ManualClock(), ManualClock()
    rates = [20.0] * 30 + [400.0] * 100 + [20.0] * 300 + [900.0] * 50
    for rate in rates:
        c1.advance(1.0), c2.advance(1.0)
        assert on.decide(snap(c1, rate)).replicas == off.decide(snap(c2, rate)).replicas


def test_a_vm_pays_only_when_the_spill_it_takes_outweighs_its_bill():
    episodes, clock = OverloadEpisodes(PriceTable()), ManualClock()
    for _ in range(3):  # three overloads of 200 s
        episodes.observe(clock.now(), 300.0, 100.0)
        clock.advance(200.0)
        episodes.observe(clock.now(), 50.0, 100.0)
        clock.advance(100.0)
    econ = BootEconomics(boot_s=BOOT_S, cooldown_s=180.0, absorb_per_s=100.0, request_usd=3e-5)
    assert episodes.pays(clock.now(), econ)  # 140 s of 100 req/s on functions: $0.42 vs $0.02
    trickle = BootEconomics(BOOT_S, 180.0, absorb_per_s=0.1, request_usd=3e-5)
    assert not episodes.pays(clock.now(), trickle)  # $0.0004 of spill for a $0.018 VM
