"""The ``routing_policy`` and ``[autoscaling]`` settings (issue 8): a discriminated union on
``policy``, each scaler's parameters beside it, unknown keys refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from policies.autoscaling import Autoscaler, make_autoscaler
from policies.config_table import ConfigTable
from policies.costs import PriceTable
from policies.routing import RoutingPolicy, SloAware, check_params, make_policy

RoutingPolicyName = Literal["vm-only", "burst-only", "threshold", "slo-aware"]


class _Scaling(ConfigTable):
    min_replicas: int = Field(
        1, ge=0, le=10_000, description="Fewest VM replicas the autoscaler keeps."
    )
    max_replicas: int = Field(
        8, ge=1, le=10_000, description="Most VM replicas the autoscaler keeps."
    )
    tick_s: float = Field(
        1.0,
        ge=0.05,  # (a tick runs on the gateway's event loop: back to back, it starves requests)
        le=3600,
        description="Control-loop period: snapshot, ask the autoscaler, drive the provisioner.",
    )

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        return self

    def params(self) -> dict:
        return self.model_dump(exclude={"policy", "tick_s"})

    def build(self, configured_replicas: int) -> Autoscaler:
        return make_autoscaler(self.policy, **self.params())


class NoScaling(_Scaling):
    policy: Literal["none"] = Field("none", description="Keep `vm.replicas` replicas.")

    def build(self, configured_replicas: int) -> Autoscaler:
        return make_autoscaler(
            "none",
            replicas=configured_replicas,
            min_replicas=min(self.min_replicas, configured_replicas),
            max_replicas=max(self.max_replicas, configured_replicas, 1),
        )


class TargetScaling(_Scaling):
    policy: Literal["target"] = Field(
        description="Target tracking on in-flight requests or the request rate per replica."
    )
    target_in_flight_per_replica: float = Field(
        4.0, gt=0, description="In-flight requests per replica to hold."
    )
    target_rps_per_replica: float | None = Field(
        None,
        gt=0,
        description="Requests per second per replica to hold (SageMaker's "
        "InvocationsPerInstance, e.g. half a replica's measured peak); set: the arrival rate "
        "is tracked instead of in-flight requests.",
    )
    metric_window_s: float = Field(10.0, gt=0, description="Window the metric's mean is over.")
    scale_in_cooldown_s: float = Field(
        60.0, ge=0, description="No scale-in this long after a change."
    )


class KnativeScaling(_Scaling):
    policy: Literal["knative"] = Field(description="Knative KPA: stable and panic windows.")
    target_in_flight_per_replica: float = Field(
        4.0, gt=0, description="Concurrency target per replica."
    )
    stable_window_s: float = Field(60.0, gt=0, description="Stable window.")
    panic_window_s: float = Field(6.0, gt=0, description="Panic window.")
    panic_threshold: float = Field(
        2.0,
        gt=1,
        description="Panic when the panic window asks "
        "for this multiple of the ready replicas (2.0 = 200 %).",
    )
    max_scale_up_rate: float = Field(1000.0, gt=1, description="Most growth per decision.")

    @model_validator(mode="after")
    def _windows(self):
        if self.panic_window_s > self.stable_window_s:
            raise ValueError(
                f"panic_window_s ({self.panic_window_s:g}) is longer than "
                f"stable_window_s ({self.stable_window_s:g})"
            )
        return self


class PredictiveScaling(_Scaling):
    policy: Literal["predictive"] = Field(description="Forecast over the boot horizon (MArk).")
    base_quantile: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Quantile of the forecast rate that VMs carry; functions take the rest.",
    )
    warm_quantile: float = Field(
        0.99, gt=0, lt=1, description="Quantile of the forecast that warm function instances cover."
    )
    target_utilization: float = Field(
        0.7, gt=0, le=1, description="Share of a replica's capacity to plan for."
    )
    level_alpha: float = Field(0.5, gt=0, le=1, description="Holt smoothing of the level.")
    trend_beta: float = Field(0.05, gt=0, le=1, description="Holt smoothing of the trend.")
    trend_damping: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Damping of the trend per "
        "second ahead (1 = none): how far a ramp is extrapolated.",
    )
    scale_in_cooldown_s: float = Field(
        60.0, ge=0, description="Scale in only after the forecast stayed lower this long."
    )
    max_warm_functions: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Most function instances kept warm while the forecast exceeds what the "
        "ready VMs carry (zero outside bursts); 0 = none.",
    )
    min_warm_functions: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Function instances always kept warm "
        "(their GB-s are counted), to take a step no forecast saw.",
    )
    warm_pool_horizon_s: float = Field(
        0.0,
        ge=0,
        le=86_400,
        description="Also keep warm, by pinging idle ones before the platform reclaims them, "
        "the most function instances past bursts' spill kept busy over this many seconds, so "
        "a burst's onset finds them warm; capped by max_warm_functions when set; 0 = off.",
    )
    burst_latency_s: float | None = Field(
        None,
        gt=0,
        description="A burst request's latency, for sizing the warm pool (Little's law); "
        "unset: the burst path's observed median, else its plan's prediction.",
    )
    instances_per_burst_request: int | None = Field(
        None,
        ge=1,
        le=1_000,
        description="Function instances one burst request holds (its workers; the master runs "
        "one leg); unset: the burst path's default workers.",
    )
    spill_window_s: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="One VM more than the forecast while the spill it would take, averaged over "
        "this window, costs more than the VM (clumped load the mean rate hides); 0 = off.",
    )
    duration_aware: bool = Field(
        True,
        description="Boot a VM for an overload only if past overloads that lasted as long went "
        "on long enough for it to pay (the spill it takes against its boot, billing minimum and "
        "cooldown); with fewer than 3 such overloads seen, by an exponential fit of those seen "
        "and one as long as a boot.",
    )
    learn_holds: bool = Field(
        True,
        description="Hold a VM after a burst for as long as the gaps between past bursts say "
        "the next burst's first boot time of spill costs more than the wait (5 gaps seen "
        "first); the cooldown still applies after.",
    )
    regret_window_s: float = Field(
        1800.0,
        ge=0,
        le=86_400,
        description="Once the scaler paid over 1.5x what the cheapest fixed fleet would have "
        "on the load of this window (its VMs, and the rate above them spilled), it runs that "
        "fleet from then on, except for an overload longer than every one seen; 0 = off.",
    )
    idle_release_s: float = Field(
        1800.0,
        ge=0,
        le=7 * 86_400,
        description="After this long without a request, the last VM goes, also where "
        "functions miss the SLO (which otherwise keeps one VM up); the next request boots one.",
    )


class QueueScaling(_Scaling):
    policy: Literal["queue"] = Field(
        description="KEDA-style: replicas for the async queue's length (and in-flight requests)."
    )
    target_per_replica: float = Field(
        20.0, gt=0, description="Queued async jobs (pending and running) per replica."
    )
    activation_depth: int = Field(
        0, ge=0, description="A queue this short or shorter asks for no replicas (KEDA activation)."
    )
    target_in_flight_per_replica: float = Field(
        0.0,
        ge=0,
        description="A second trigger on in-flight requests per replica (the larger wins); 0 = off.",
    )
    cooldown_s: float = Field(300.0, ge=0, description="No scale-in this long after a change.")
    warm_functions: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Function instances kept warm while the queue is active (past "
        "activation_depth): interactive requests that spill while async work fills the VMs "
        "meet a warm instance; 0 = none.",
    )


AutoscalingSettings = Annotated[
    Union[NoScaling, TargetScaling, KnativeScaling, PredictiveScaling, QueueScaling],
    Field(discriminator="policy"),
]


@dataclass
class PolicyChoice:
    """What the policy engine runs: set from config at start, swapped by ``/admin/policy``."""

    routing_policy: RoutingPolicyName
    routing_params: dict
    autoscaling: AutoscalingSettings


def configured_routing_params(name: RoutingPolicyName, spill_outstanding_per_replica: int) -> dict:
    """The parameters routing policy ``name`` runs with unless told otherwise: the configured
    ones (threshold: ``spill_outstanding_per_replica``), alike whether the gateway started on it
    or ``PUT /admin/policy`` switched to it (which once ran threshold at its built-in 16, shown
    as ``{}``, whatever the config said)."""
    if name == "threshold":
        return {"spill_outstanding_per_replica": spill_outstanding_per_replica}
    return {}


def build_routing(name: RoutingPolicyName, params: dict, prices: PriceTable) -> RoutingPolicy:
    """The routing policy ``name`` with ``params``; a ``ValueError`` (the caller's mistake, a 400
    from the admin API) for a parameter it does not take or one out of range."""
    if name != "slo-aware":
        return make_policy(name, **params)
    check_params(name, params, internal=("prices",))
    try:
        policy = SloAware(prices=prices, **params)
    except TypeError as exc:  # an unknown parameter
        raise ValueError(f"bad parameters for routing policy {name!r}: {exc}") from None
    ranges = {  # (low, high, inclusive): each a share, a quantile or a time
        "slo_margin": (0.0, 1.0, True),
        "budget_quantile": (0.0, 1.0, False),
        "budget_spend": (0.0, 1.0, True),
        "budget_window_s": (0.0, 30 * 86400.0, True),
    }
    for key, (low, high, inclusive) in ranges.items():
        value = getattr(policy, key)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not (low < value < high or (inclusive and value == high)):
            bound = f"<= {high:g}" if inclusive else f"< {high:g}"
            raise ValueError(f"routing parameter {key} must be a number > {low:g} and {bound}")
    return policy
