"""The instance gate learns cold starts from what the platform says of each invocation
(``observed_cold``: Lambda's ``Init Duration``, the local runtime's bill), not from its own
guess. Before, a request the gate sent as cold (no idle instance known to it, e.g. on a busy
host after its keep-alive) that met a warm instance and answered in over twice a run was
learnt as a cold start of the difference: a few cold starts of ~150 ms where the real one is
~900, after which spills queued behind the instances the gate knew of instead of starting
their own (svr23: live spills at p50 47 / p90 107 ms against 31 / 34 simulated)."""

from __future__ import annotations

import asyncio

from burst.instance_gate import InstanceGate, observed_cold

from .test_instance_gate import Clock, warmed_gate


async def _one(gate: InstanceGate, clock: Clock, took_s: float, cold: bool | None) -> None:
    async with gate.hold(1, 300.0):
        clock.t += took_s
        if cold is not None:
            observed_cold(cold)


def test_a_warm_answer_the_gate_sent_as_cold_is_not_learnt_as_a_cold_start():
    async def main():
        clock = Clock()
        gate = await warmed_gate(clock)  # runs of 100 ms, cold start 900 ms, no instance left
        for _ in range(10):
            clock.t += 2 * gate.keep_alive_s  # none idle known: each is sent as cold
            await _one(gate, clock, 0.25, cold=False)  # a warm instance on a busy host
        assert gate.cold_start_ms == 900.0
        assert gate.cold_started >= 10  # (the gate did take each for a cold start)

        clock2 = Clock()
        guessed = await warmed_gate(clock2)
        for _ in range(10):  # the same answers with no word from the platform: the old guess
            clock2.t += 2 * guessed.keep_alive_s
            await _one(guessed, clock2, 0.25, cold=None)
        assert guessed.cold_start_ms < 200.0

    asyncio.run(main())


def test_a_cold_start_the_platform_reports_is_learnt_and_kept_out_of_the_run_times():
    async def main():
        clock = Clock()
        gate = await warmed_gate(clock)
        gate.cold_start_ms = 300.0
        for _ in range(10):  # an idle instance the gate knew of had been reclaimed: cold
            await _one(gate, clock, 0.1, cold=False)  # leaves one idle instance
            await _one(gate, clock, 1.1, cold=True)
        assert abs(gate.run_ms(0.5) - 100.0) < 1e-6
        assert 900.0 < gate.cold_start_ms <= 1000.0

    asyncio.run(main())
