"""Named policy presets: a routing policy plus an autoscaler, built from the ``policies`` package.

- ``vm-peak``: VMs for the trace's peak (its busiest second, at what a replica serves within the
  SLO x ``headroom``), fixed.
- ``vm-reactive``: VMs only, target tracking on requests per second per replica at half a
  replica's peak rate (SageMaker's InvocationsPerInstance with its safety factor 0.5).
- ``burst-only``: every request to functions, no VMs.
- ``threshold``: spill past a queue threshold, target tracking for the VMs.
- ``knative``: threshold routing, Knative's stable/panic autoscaler.
- ``slo-aware``: SLO-aware routing with the predictive scaler (MArk-style).
- ``optimum``: not a policy: the offline lower bound (``ops.sim.optimum``).

Parameters override a preset's defaults: ``routing.<field>`` for the routing policy,
``autoscaling.<field>`` for the scaler (``min_replicas``, ``max_replicas`` included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from policies.autoscaling import make_autoscaler
from policies.costs import PriceTable
from policies.routing import make_policy

PAYS_WINDOW_BOOTS = 4  # (starting_replicas)
SAGEMAKER_SAFETY = 0.5  # "SAFETY_FACTOR" of SageMaker's load-testing guidance
SLO_AWARE_UTILIZATION = 0.9  # the slo-aware preset's target_utilization

PRESETS = ("vm-peak", "vm-reactive", "burst-only", "threshold", "knative", "slo-aware", "optimum")


@dataclass(frozen=True)
class PolicySpec:
    """What ``tidegate serve --config`` would be given: the routing policy, the scaler and their
    parameters (the ``routing_policy`` key and the ``[autoscaling]`` table)."""

    routing: str
    autoscaling: str
    routing_params: dict = field(default_factory=dict)
    autoscaling_params: dict = field(default_factory=dict)
    initial_replicas: int = 1


def peak_replicas(trace, profile, headroom: float = 1.0, busiest: int | None = None) -> int:
    """vm-peak's fleet: the trace's peak 1 s rate over what a replica serves (within the SLO
    where full batches miss it: ``start_capacity_per_s``). The peak is the busiest second
    starting at any arrival, not the busiest fixed 1 s bin, which depends on where the bins
    fall: 545 requests in the second from 20.5 s were 299 in a bin (3 VMs, 94.7 % where 4
    meet the SLO), and flash seed 3's crowd, 467 in a second, was 436 in its busiest bin.
    ``busiest``: ``peak_per_s`` of the trace when the caller has it (0.8 s on 10 M arrivals)."""
    if busiest is None:
        busiest = peak_per_s(trace.arrivals_s)
    return max(1, math.ceil(busiest * headroom / start_capacity_per_s(profile)))


def peak_per_s(arrivals_s) -> int:
    """Most arrivals in any window [t, t + 1 s) (sorted arrival times)."""
    if not len(arrivals_s):
        return 0
    ends = np.searchsorted(arrivals_s, arrivals_s + 1.0, side="left")
    return int((ends - np.arange(len(arrivals_s))).max())


def starting_replicas(trace, profile, spills: bool = False) -> int:
    """VMs that carry the mean rate of the trace's first boot time at full batches. With
    ``spills`` (a scaler free to keep no VM, beside functions), none where that rate spilled
    costs less than a VM and the functions meet the SLO: what such a system runs on that load
    (its scaler lets the VM go once it has seen so; the Azure conversation trace at its own
    5.5 req/s began with one VM billed for 300 s, 16 % of slo-aware's bill)."""
    if not len(trace):
        return 0
    window_s = max(profile.vm_boot_s, 1.0)
    if spills:
        from .optimum import function_cost_per_request

        prices = PriceTable()
        spill_usd = function_cost_per_request(profile, prices)[0]  # inf: functions miss
        # judged over what the scaler needs to let its last VM go (four boots: its regret's
        # first look), not one boot: a run that opens in a quiet spell between bursts that
        # pay for a VM starts with it (MMPP 0.2/90 req/s, 1-2 minute spells: +16 % without)
        look_s = PAYS_WINDOW_BOOTS * window_s
        seen = int(np.searchsorted(trace.arrivals_s, trace.arrivals_s[0] + look_s))
        if seen / look_s * spill_usd < prices.vm_usd_per_hour / 3600.0:
            return 0
    first = int(np.searchsorted(trace.arrivals_s, trace.arrivals_s[0] + window_s))
    return math.ceil(first / window_s / start_capacity_per_s(profile))


def start_capacity_per_s(profile) -> float:
    """A replica's rate for the starting fleet: its full-batch capacity, or the rate it serves
    within the SLO where the slo-aware scaler sizes it at that (a 62 ms SLO on ResNet-50:
    19 req/s, not 56; ``policies/autoscaling/slo_capacity.py``), so a run does not open with
    a fleet that misses the SLO for a boot time."""
    from policies.autoscaling.slo_capacity import slo_rate_per_s
    from policies.state import ModelStats

    full = profile.vm_capacity_per_s()
    stats = ModelStats(vm_service_ms_by_batch=profile.vm_service_ms_by_batch, slo_ms=profile.slo_ms)
    within = slo_rate_per_s(stats, profile.vm_max_batch_size)
    return within if 0 < within < SLO_AWARE_UTILIZATION * full else full


def preset_spec(name: str, trace, profile, params: dict | None = None) -> PolicySpec:
    """The preset's policy pair with ``params`` laid over its defaults."""
    routing_params, scaler_params = _split_params(params or {})
    busiest = peak_per_s(trace.arrivals_s)
    peak = peak_replicas(trace, profile, busiest=busiest)
    # scalers' cap: twice the peak at full batches (as before vm-peak was sized within the SLO;
    # twice that fleet let slo-aware boot 36 % more on mobilenet_v2 at 26 ms for no attainment)
    at_full = math.ceil(busiest / profile.vm_capacity_per_s())
    spec = _preset_defaults(name, peak, max(at_full * 2, 8), profile)
    scaling = {**spec.autoscaling_params, **scaler_params}
    # the run starts as a running system would be: at the fixed count, else with what carries
    # the load of the first boot time (the trace is a window of live traffic; the optimum may
    # start with VMs up too), within the scaler's bounds
    if "replicas" in scaling:
        initial = int(scaling["replicas"])
    else:
        initial = min(
            max(
                starting_replicas(trace, profile, spills=spec.routing != "vm-only"),
                int(scaling.get("min_replicas", 0)),
            ),
            int(scaling.get("max_replicas", 1 << 30)),
        )
    return PolicySpec(
        spec.routing,
        spec.autoscaling,
        {**spec.routing_params, **routing_params},
        scaling,
        max(initial, 0),
    )


def _split_params(params: dict) -> tuple[dict, dict]:
    """``routing.<field>`` and ``autoscaling.<field>`` overrides, prefixes removed."""
    routing_params = {
        k[len("routing.") :]: v for k, v in params.items() if k.startswith("routing.")
    }
    scaler_params = {
        k[len("autoscaling.") :]: v for k, v in params.items() if k.startswith("autoscaling.")
    }
    stray = [k for k in params if not k.startswith(("routing.", "autoscaling."))]
    if stray:
        raise ValueError(f"parameters must be routing.<field> or autoscaling.<field>: {stray}")
    return routing_params, scaler_params


def _preset_defaults(name: str, peak: int, big: int, profile) -> PolicySpec:
    """A preset's own parameters; ``peak`` replicas carry the trace's peak, ``big`` caps scalers."""
    if name == "vm-peak":
        return PolicySpec(
            "vm-only",
            "none",
            {},
            {"replicas": peak, "min_replicas": peak, "max_replicas": peak},
            peak,
        )
    if name == "vm-reactive":
        return PolicySpec(
            "vm-only",
            "target",
            {},
            # SageMaker's guidance: InvocationsPerInstance at half a replica's peak rate
            {"target_rps_per_replica": SAGEMAKER_SAFETY * profile.vm_capacity_per_s()}
            | {"min_replicas": 1, "max_replicas": big},
        )
    if name == "burst-only":
        return PolicySpec(
            "burst-only", "none", {}, {"replicas": 0, "min_replicas": 0, "max_replicas": 1}, 0
        )
    if name == "threshold":
        return PolicySpec(
            "threshold",
            "target",
            {"spill_outstanding_per_replica": 16},
            {"target_in_flight_per_replica": 4.0, "min_replicas": 1, "max_replicas": big},
        )
    if name == "knative":
        return PolicySpec(
            "threshold",
            "knative",
            {"spill_outstanding_per_replica": 16},
            {"min_replicas": 1, "max_replicas": big},
        )
    if name == "slo-aware":
        # Smoothed forecast: the scaler's own defaults (alpha 0.5, beta 0.2 on a 10 s rate)
        # chase second-level spikes and boot VMs that a minute later are cancelled, billed a
        # minute each (Azure LLM code trace x20: $1.48 vs $0.59 with these, same attainment).
        return PolicySpec(
            "slo-aware",
            "predictive",
            {},
            {
                "min_replicas": 0,
                "max_replicas": big,
                "level_alpha": 0.05,
                "trend_beta": 0.005,
                "base_quantile": 0.3,
                "target_utilization": SLO_AWARE_UTILIZATION,
                "scale_in_cooldown_s": 180.0,
                "burst_latency_s": profile.burst_p50_ms / 1000.0,
                "instances_per_burst_request": profile.burst_instances,
                # past bursts' spill kept warm by pings for the next onset (warm_pool.py)
                "warm_pool_horizon_s": 3600.0,
            },
        )
    raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")


def build_policies(spec: PolicySpec, prices: PriceTable):
    """Fresh routing policy and autoscaler objects (autoscalers keep history: one per run)."""
    routing_params = dict(spec.routing_params)
    if spec.routing == "slo-aware":
        routing_params.setdefault("prices", prices)
    scaler_params = dict(spec.autoscaling_params)
    if spec.autoscaling == "predictive":
        scaler_params.setdefault("prices", prices)
    return (
        make_policy(spec.routing, **routing_params),
        make_autoscaler(spec.autoscaling, **scaler_params),
    )
