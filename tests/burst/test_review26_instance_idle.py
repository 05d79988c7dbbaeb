"""``[burst] instance_idle_s``: how long the burst path counts an answered instance as warm. On
Lambda and Function Compute the gate's 60 s is a guess below their idle lifetimes (neither lets
the user set it); an operator who measured theirs sets it, and a spill after a longer pause takes
the instances the platform still keeps instead of starting more."""

from __future__ import annotations

from burst.service import BurstService
from gateway.settings import Settings
from tests.burst.test_instance_gate import Clock
from tests.burst.test_svr23_gate_keep_alive import _second_burst_after_a_pause

LAMBDA = {"kind": "aws_lambda", "region": "us-east-1"}


def _gate(tmp_path, burst: dict, clock: Clock):
    settings = Settings(data_dir=tmp_path, burst={"platform": LAMBDA, **burst})
    gate = BurstService.from_settings(settings)._gate  # not started: its admission only
    gate._clock = clock
    return gate


async def test_a_set_idle_time_keeps_lambdas_instances_counted_across_a_pause(tmp_path):
    clock = Clock()  # the pause is 90 s: past the 60 s default
    gate = _gate(tmp_path, {"instance_idle_s": 240.0}, clock)
    assert await _second_burst_after_a_pause(gate, clock) == (0, 0)  # all 8 warm at once


async def test_unset_lambda_keeps_the_cautious_default(tmp_path):
    clock = Clock()
    gate = _gate(tmp_path, {}, clock)
    cold, _ = await _second_burst_after_a_pause(gate, clock)
    assert cold > 0
