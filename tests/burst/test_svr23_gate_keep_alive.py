"""The burst service's instance gate knows the embedded runtime's warm instances for the runtime's
own keep-alive (``burst.keep_alive_s``), not the gate's 60 s default.

With the default, a pause of 66 s between two bursts (MMPP seed 43, sim_vs_real) made the
gateway forget the 8 instances the runtime still kept warm: spills of the second burst were
taken for cold starts (whose fast answers then taught the gate a cold start of a few ms, so
later spills queued behind the few instances it knew of), the spills' p50 went from 31 ms to
47 ms (p90 107 ms), the in-flight count the target-tracking scaler reads rose, and the gateway
held a third VM the simulation (whose pool knows warm instances for the keep-alive) did not.
Invocations are stood in by the test (``test_instance_gate.Invocations``), on a clock it moves.
"""

from __future__ import annotations

from burst.service import BurstService
from tests.burst.test_instance_gate import Clock, Invocations

PAUSE_S = 90.0  # past the gate's 60 s default, within the runtime's 300 s keep-alive


def _gate(tmp_path, platform: dict, clock: Clock):
    service = BurstService(
        tmp_path / "repo",
        platform=platform,
        store={"kind": "dir", "root": str(tmp_path / "objects")},
        concurrency=8,
        keep_alive_s=300.0,
        memory_budget_mb=8 * 1024,
    )
    gate = service._gate  # not started: its admission only
    gate._clock = clock
    return gate


async def _second_burst_after_a_pause(gate, clock: Clock) -> tuple[int, int]:
    """8 spills at once (cold starts of 1.2 s), 8 more once they are warm (30 ms runs), a
    pause of ``PAUSE_S``, then a spill every 10 ms for 1 s, each running 30 ms once invoked:
    (of those, how many were sent as cold starts, how many waited for an instance)."""
    for run_s in (1.2, 0.03):
        first = Invocations(gate)
        for _ in range(8):
            first.send()
        await first.settle()
        clock.t += run_s
        for _ in range(8):
            await first.finish_oldest()
    clock.t += PAUSE_S
    cold, waited = gate.cold_started, gate.waited
    second = Invocations(gate)
    started: list[float] = []  # when each running invocation was invoked, in order
    for _ in range(100):
        second.send()
        await second.settle()
        started += [clock.t] * (len(second.running) - len(started))
        clock.t += 0.01
        while started and clock.t - started[0] >= 0.03 - 1e-9:
            started.pop(0)
            await second.finish_oldest()
            started += [clock.t] * (len(second.running) - len(started))
    while second.running:
        await second.finish_oldest()
    return gate.cold_started - cold, gate.waited - waited


async def test_spills_after_a_pause_take_the_runtimes_warm_instances(tmp_path):
    clock = Clock()
    gate = _gate(tmp_path, {"kind": "local"}, clock)
    assert await _second_burst_after_a_pause(gate, clock) == (0, 0)  # all 8 at once, warm


async def test_elsewhere_the_gate_keeps_its_cautious_default(tmp_path):
    """On a platform whose keep-alive the gateway does not set (Lambda), instances idle past
    the gate's default are not counted on."""
    clock = Clock()
    gate = _gate(tmp_path, {"kind": "lambda", "region": "us-east-1"}, clock)
    cold, _ = await _second_burst_after_a_pause(gate, clock)
    assert cold > 0
