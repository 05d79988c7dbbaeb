"""What the autoscaler tests feed a scaler: the live state of one model whose replica takes 8 rows
in 48 ms, at a given arrival rate and fleet, and the predictive scaler as the preset runs it."""

from __future__ import annotations

from policies.autoscaling import Predictive
from policies.state import BurstState, LiveState, ModelStats, VmState

CURVE = ((1, 20.0), (8, 48.0))  # one replica: 8 / 48 ms = 166.7 rows/s at full batches
CAP = 1000.0 * 8 / 48
BOOT_S = 60.0
VM_USD_PER_S = 0.17 / 3600


def snap(
    clock,
    rate: float,
    ready: int = 1,
    *,
    booting: int = 0,
    desired: int = 0,
    burst: BurstState | None = None,
) -> LiveState:
    vm = VmState(ready, booting, 0, max_batch_size=8, boot_s=BOOT_S, desired_replicas=desired)
    return LiveState(
        clock.now(),
        vm,
        True,
        burst or BurstState(),
        {"m": ModelStats(vm_service_ms_by_batch=CURVE)},
        arrival_rate_short_per_s=rate,
    )


def preset_scaler(**params) -> Predictive:
    """The predictive scaler with the preset's 3-minute cooldown, for functions at 0.11 s a
    request and one instance each."""
    return Predictive(
        min_replicas=1,
        max_replicas=10,
        scale_in_cooldown_s=180.0,
        burst_latency_s=0.11,
        instances_per_burst_request=1,
        **params,
    )
