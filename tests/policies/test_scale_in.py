"""Scale-in of the predictive scaler: a VM the sustained load needed goes one boot time after the
load falls; a VM booted for a burst is held the whole cooldown for the next burst."""

from policies.autoscaling import Predictive
from policies.state import ManualClock
from tests.policies.scaler_state import BOOT_S, snap

COOLDOWN_S = 180.0


def run(scaler, clock, rate, seconds, fleet):
    """``seconds`` ticks at ``rate`` with the fleet ready as asked; the fleet asked for each
    second."""
    asked = []
    for _ in range(seconds):
        clock.advance(1.0)
        fleet = scaler.desired(snap(clock, rate, fleet, desired=fleet))
        asked.append(fleet)
    return asked


def held_s(asked, above):
    """Seconds the fleet stayed above ``above`` after the load fell."""
    return next((i for i, n in enumerate(asked) if n <= above), len(asked))


def scaler():
    return Predictive(min_replicas=1, max_replicas=10, scale_in_cooldown_s=COOLDOWN_S)


def test_vms_the_sustained_load_needed_go_one_boot_after_it_falls():
    clock, s = ManualClock(), scaler()
    up = run(s, clock, 250.0, 600, 1)
    assert up[-1] >= 3  # ten minutes at 250 req/s: the base load holds three VMs
    after = run(s, clock, 20.0, 400, up[-1])
    # the forecast drops within seconds; the fleet is let go a boot time later, not after
    # the three-minute cooldown a burst's VMs wait
    assert BOOT_S <= held_s(after, 1) < BOOT_S + 20
    assert after[-1] == 1


def test_vms_booted_for_a_burst_wait_the_whole_cooldown_for_the_next():
    clock, s = ManualClock(), scaler()
    run(s, clock, 20.0, 300, 1)
    burst = run(s, clock, 400.0, 20, 1)
    assert max(burst) > 1  # no history of overloads yet: booted for it
    after = run(s, clock, 20.0, 400, burst[-1])
    assert COOLDOWN_S <= held_s(after, 1) < COOLDOWN_S + 20
