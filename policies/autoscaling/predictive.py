"""Predictive scaling (MArk, ATC'19): forecast the arrival rate over the VM boot horizon, keep VMs
for the predictable base (a quantile of the forecast) and leave the forecast error to functions,
keeping some function instances warm when the forecast's upper band exceeds the VMs."""

from __future__ import annotations

import math
from functools import partial
from statistics import NormalDist, median

from ..costs import PriceTable
from ..state import LiveState
from ..vm_perf import replica_capacity_per_s
from .base import ScaleDecision, ScalerBase, Window, current_replicas, functions_meet_slo
from .episodes import OverloadEpisodes, replicas_that_pay
from .fleet_regret import FleetRegret
from .recurrence import LayerRecurrence
from .silence import DEFAULT_RELEASE_S, Silence
from .slo_capacity import fleet_sizing_rate_per_s
from .spill_price import SpillPrice, break_even_rate, burst_latency_s, first_vm_pays
from .spill_vm import SpillEconomics
from .warm_pool import BurstPool, warm_cost_usd_per_s

# the base load: the median rate over this many boot times. An overload that held the rate
# above the fleet for more than a boot time of the last two is load a VM is for (the Azure
# conversation trace x20 rising past one VM); a burst shorter than a boot is not
BASE_WINDOW_BOOTS = 2.0
FIXED_FLEET = "a fixed fleet cost less than this scaler"


class Predictive(ScalerBase):
    """Holt's linear trend on the short-window arrival rate, one sample per tick.

    The defaults follow the level (alpha 0.5), learn the trend slowly (beta 0.05) and damp it
    hard (0.7 per second ahead: a ramp is extrapolated about 2 s). The short window turns a step
    into a ramp as long as the window; a livelier trend (beta 0.2, damping 0.95) extrapolated
    that ramp and asked for ~2x the VMs a step to 4x needs; a sustained ramp is still seen. The
    error of the forecast is what functions are for.

    ``base_quantile`` of the forecast sizes the VMs at ``target_utilization`` of their capacity.
    The warm function pool covers the expected spill over the boot horizon: ``warm_quantile``
    of the forecast minus what the *ready* VMs carry (a replica asked for now serves only at
    the horizon's end), times a burst request's latency and the instances it holds (Little's
    law), capped at ``max_warm_functions``. It is zero while the ready fleet carries the
    forecast, so no warm instance is paid for outside a burst; ``min_warm_functions`` is a
    standing pool for steps no forecast sees (billed all the time). ``burst_latency_s`` and
    ``instances_per_burst_request`` default to what the live state shows (the burst path's
    observed median, the plan's prediction, its default workers); set, they override it.
    ``spill_window_s`` > 0: one VM more than the forecast while the spill it would take, averaged
    over that window, costs more than the VM (``spill_vm.py``); 0 turns it off.
    ``duration_aware``: during an overload, boot a VM only if past overloads that lasted as long
    as this one went on long enough for it to pay, past the longest seen (or before three are
    seen) by their exponential fit with a prior of one overload as long as a boot, and in any
    case once the spill it would have taken paid for it 5 times over (``episodes.py``). VMs for
    the base load (the median rate of the last ``BASE_WINDOW_BOOTS`` boot times) are not held
    back by it outside an overload (during one they are judged with the hold they get), and
    when the load falls they go after ``min(scale_in_cooldown_s, boot)``; VMs booted for
    overloads wait the whole cooldown.
    ``regret_window_s`` > 0: once this scaler has paid over 1.5x what the cheapest fixed fleet
    would have on the load seen over that window (``fleet_regret.py``; over 1.25x with late
    functions, a scale-in stops at that fleet), its VMs are that fleet from then on, except
    for an overload longer than every one seen; 0 turns it off.
    ``idle_release_s``: after this long without a request, the last VM goes (``silence.py``).
    """

    name = "predictive"

    def __init__(
        self,
        base_quantile: float = 0.5,
        warm_quantile: float = 0.99,
        target_utilization: float = 0.7,
        level_alpha: float = 0.5,
        trend_beta: float = 0.05,
        trend_damping: float = 0.7,
        scale_in_cooldown_s: float = 60.0,
        max_warm_functions: int = 0,
        min_warm_functions: int = 0,
        burst_latency_s: float | None = None,
        instances_per_burst_request: int | None = None,
        min_replicas: int = 0,
        max_replicas: int = 8,
        prices: PriceTable | None = None,
        spill_window_s: float = 600.0,
        duration_aware: bool = True,
        learn_holds: bool = True,
        regret_window_s: float = 1800.0,
        warm_pool_horizon_s: float = 0.0,
        idle_release_s: float = DEFAULT_RELEASE_S,
    ):
        super().__init__(min_replicas, max_replicas)
        for label, q in (("base_quantile", base_quantile), ("warm_quantile", warm_quantile)):
            if not 0 < q < 1:
                raise ValueError(f"{label} must be between 0 and 1")
        if not 0 < target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")
        self.base_z = NormalDist().inv_cdf(base_quantile)
        self.warm_z = NormalDist().inv_cdf(warm_quantile)
        self.target_utilization = target_utilization
        self.alpha, self.beta = level_alpha, trend_beta
        if not 0 < trend_damping <= 1:
            raise ValueError("trend_damping must be in (0, 1]")
        self.damping = trend_damping
        self.scale_in_cooldown_s = scale_in_cooldown_s
        self.max_warm_functions = max(max_warm_functions, min_warm_functions)
        self.min_warm_functions = min_warm_functions
        self._pool = BurstPool(warm_pool_horizon_s) if warm_pool_horizon_s > 0 else None
        self.burst_latency_s = burst_latency_s
        self.instances_per_burst_request = instances_per_burst_request
        self.prices = prices or PriceTable()
        self._price = SpillPrice(self.prices, burst_latency_s, instances_per_burst_request)
        self._spill = SpillEconomics(spill_window_s, self.prices)
        self._spill_base: int | None = None  # the forecast's fleet when the spill VM was asked
        self._episodes = OverloadEpisodes(self.prices) if duration_aware else None
        self._holds = LayerRecurrence() if learn_holds else None
        self._regret = (
            FleetRegret(regret_window_s, utilization=target_utilization)
            if regret_window_s > 0
            else None
        )
        self._silence = Silence(idle_release_s)
        self._recent_rates: Window | None = None  # (its span is set by the boot time)
        self._level: float | None = None
        self._trend_per_s = self._err_var = self._last_s = 0.0
        self._want_down_since_s: float | None = None
        self._base_high = 0  # the most VMs the base load needed since the fleet last shrank
        self._current: int | None = None

    def forecast(self, horizon_s: float) -> tuple[float, float]:
        """(mean, std) of the arrival rate ``horizon_s`` ahead."""
        if self._level is None:
            return 0.0, 0.0
        # damped trend (Gardner): a ramp seen for a few seconds is not extrapolated over the
        # whole boot horizon; the trend's reach is at most phi / (1 - phi) seconds
        phi = self.damping
        reach_s = horizon_s if phi >= 1 else phi * (1 - phi**horizon_s) / (1 - phi)
        mean = max(self._level + self._trend_per_s * reach_s, 0.0)
        return mean, math.sqrt(self._err_var)

    def _observe(self, now_s: float, rate: float) -> None:
        if self._level is None:
            self._level, self._last_s = rate, now_s
            return
        dt = max(now_s - self._last_s, 1e-3)
        predicted = self._level + self._trend_per_s * dt
        err = rate - predicted
        self._err_var = 0.9 * self._err_var + 0.1 * err * err
        level = self.alpha * rate + (1 - self.alpha) * predicted
        self._trend_per_s = (
            self.beta * (level - self._level) / dt + (1 - self.beta) * self._trend_per_s
        )
        self._level, self._last_s = level, now_s

    def _capacity_per_s(self, state: LiveState) -> float:
        """The rate a replica is sized at: ``target_utilization`` of its full-batch capacity,
        or the rate it serves within the SLO if less (``slo_capacity.py``: ResNet-50 at a 62 ms
        SLO was sized at 50 req/s a replica and missed 8 % of an MMPP hour; it meets it at 19)."""
        batch, util = state.vm.max_batch_size, self.target_utilization
        if not state.models:
            return replica_capacity_per_s(state.model(""), batch) * util
        return fleet_sizing_rate_per_s(list(state.models.values()), batch, util)

    def decide(self, state: LiveState) -> ScaleDecision:
        now = state.now_s
        self._observe(now, state.arrival_rate_short_per_s)
        self._silence.observe(now, state.arrival_rate_long_per_s)
        self._price.observe(state)
        mean, std, capacity = *self.forecast(state.vm.boot_s), self._capacity_per_s(state)
        full_per_replica = capacity / self.target_utilization
        if self._holds is not None:
            self._holds.observe(
                now, state.arrival_rate_short_per_s, full_per_replica, state.vm.boot_s
            )
        # the VMs booting now serve from now + boot_s on; those up now must carry the present
        base_rate = max(mean + self.base_z * std, self._level or 0.0)
        want = self.clamp(base_rate / capacity)
        current = self._current if self._current is not None else current_replicas(state)
        reason = "forecast base"
        if want == 1 and not self._first_vm_pays(state, base_rate):
            want, reason = 0, "the base load costs less spilled than a VM"
        if self._episodes is not None:
            rate = state.arrival_rate_short_per_s
            if self._recent_rates is None:
                self._recent_rates = Window(BASE_WINDOW_BOOTS * max(state.vm.boot_s, 1.0))
            self._recent_rates.add(now, rate)
            # over no VM, an overload is load a first VM would pay for (not a trickle)
            ready_per_s = state.vm.ready_replicas * full_per_replica or min(
                full_per_replica, break_even_rate(self.prices, self._price.usd(state))
            )
            self._episodes.observe(now, rate, ready_per_s, full_per_replica)
            # the base load (the median rate of two boot times) is no overload: its VMs are not
            # gated and go after one boot, not the cooldown (read only where it can matter)
            if want > current or self._base_high < current:
                base_rate_now = median(self._recent_rates.values())
                base_fleet = self.clamp(base_rate_now / capacity)
                self._base_high = max(self._base_high, base_fleet)
                if current == 0 and not self._first_vm_pays(state, base_rate_now):
                    base_fleet = 0  # (the first VM is judged as an overload's)
            if want > current:
                demand = max(rate, mean)  # the forecast asks ahead of an overload, or after it
                paid = self._gated(state, current, want, capacity, demand, base_fleet)
                if paid < want:
                    want, reason = paid, "overloads end before a VM would pay"
        want, reason = self._fixed_fleet(state, want, reason, current, mean, capacity)
        if want < current and self._held(state, current):
            want, reason = current, "bursts recur: held for the next"
        if self._cooling(now, want, current, state.vm.boot_s):
            want, reason = current, "scale-in cooldown"
        self._current = want  # the forecast's part: the extra VM below is not held by cooldown
        floor = self._spill_floor(state, want, capacity, reason == FIXED_FLEET)
        if floor > want and self.clamp(floor) > want:
            want, reason = self.clamp(floor), "spill costs more than a VM"
        # the upper band of the rate now or over the horizon, whichever is higher: a step
        # shows in the level before the damped trend carries it to the horizon
        upper = max(mean, self._level or 0.0) + self.warm_z * std
        # what spills is what the ready VMs cannot take at full batches (utilization sizes)
        warm, cost = self._warm_functions(state, upper, state.vm.ready_replicas * full_per_replica)
        return ScaleDecision(want, reason, warm, cost)

    def _fixed_fleet(
        self, state: LiveState, want: int, reason: str, current: int, mean: float, capacity: float
    ) -> tuple[int, str]:
        """The fixed fleet once this scaler paid far more than it over the regret window
        (``fleet_regret.py``) instead of the forecast's (the spill VM may still add one), but
        for an overload longer than every one seen whose rate above the fleet costs more
        spilled than a VM (a trickle over no VMs is an overload that never ends); before, near
        the margin and with functions late, the floor of a scale-in (``hold_floor``). With
        ``min_replicas`` 0 the last VM goes only once the window shows none pays."""
        if self._regret is None:
            return want, reason
        vm, full_per_replica = state.vm, capacity / self.target_utilization
        rate, ready, up = state.arrival_rate_short_per_s, vm.ready_replicas, vm.booting_replicas
        self._regret.observe(state.now_s, rate, full_per_replica, ready + up, ready)
        request_usd, vm_usd_per_s = self._price.usd(state), self.prices.vm_usd_per_hour / 3600
        fleet = self.clamp(self._regret.floor(request_usd, vm_usd_per_s))
        if self._regret.engaged and fleet != want:
            excess_usd = (max(rate, mean) - fleet * full_per_replica) * request_usd
            if fleet > want or not self._outlasts_bursts(state.now_s) or excess_usd < vm_usd_per_s:
                want, reason = fleet, FIXED_FLEET
        elif want < current and not functions_meet_slo(state):  # (a VM let go costs misses)
            hold = min(current, self.clamp(self._regret.hold_floor(request_usd, vm_usd_per_s)))
            want, reason = (hold, "near the regret margin: held") if hold > want else (want, reason)
        last = want < 1 <= current and not self._silence.silent(state.now_s)  # (hours of it: go)
        if last and not (
            self._regret.none_pays(request_usd, vm_usd_per_s) and functions_meet_slo(state)
        ):
            want, reason = 1, "one VM until functions meet the SLO and none pays"
        return want, reason

    def _outlasts_bursts(self, now_s: float) -> bool:
        """Whether the overload going on outlasted every one seen (not the fixed fleet's)."""
        episodes = self._episodes
        age_s = None if episodes is None else episodes.age_s(now_s)
        if episodes is None or age_s is None:
            return False
        return age_s > max(episodes.durations_s, default=0.0)

    def _held(self, state: LiveState, current: int) -> bool:
        """Whether the top VM is within the hold past bursts' gaps say pays (``recurrence.py``)."""
        if self._holds is None:
            return False
        vm_usd_per_s = self.prices.vm_usd_per_hour / 3600.0
        return self._holds.holds(state.now_s, current - 1, self._price.usd(state), vm_usd_per_s)

    def _cooling(self, now_s: float, want: int, current: int, boot_s: float) -> bool:
        """Hold the fleet through the scale-in cooldown. A VM the base load once needed (the
        median rate of two boot times held ``current`` VMs) waits one boot time only: the
        load it was for has fallen for a sustained spell, and a boot's bill is what letting
        it go risks (ski rental: rent as long as buying again costs). A VM booted for
        overloads waits the full cooldown: bursts recur, and one held may take the next
        (MMPP: 15 s bursts a few minutes apart, each shorter than a boot)."""
        if want >= current:
            self._want_down_since_s = None
            return False
        if self._want_down_since_s is None:
            self._want_down_since_s = now_s
        cooldown_s = self.scale_in_cooldown_s
        if self._base_high >= current:
            cooldown_s = min(cooldown_s, boot_s)
        if now_s - self._want_down_since_s < cooldown_s:
            return True
        self._base_high = min(self._base_high, want)  # the smaller fleet starts afresh
        return False

    def _gated(
        self, state: LiveState, current: int, want: int, capacity: float, demand: float, base: int
    ) -> int:
        """The replicas up to ``want`` the boot gate lets through (``replicas_that_pay``). The
        base load's (up to ``base``) pass unjudged but during an overload, where they are judged
        with a base VM's hold (one boot: ``_cooling``): a burst that lasted a boot fills the
        base median alone, and its VMs came up after bursts like those seen (MMPP 60 s bursts);
        a load past a VM's sizing within its full capacity (Azure conv x20) is no overload."""
        episodes = self._episodes
        if episodes is None or (current == 0 and not functions_meet_slo(state)):
            return want  # (no gate; no VM, functions late: every request misses until one is up)
        full, usd = capacity / self.target_utilization, self._price.usd(state)
        pays = partial(replicas_that_pay, episodes, state.now_s, demand=demand, capacity=capacity)
        pays = partial(pays, full_per_replica=full, boot_s=state.vm.boot_s, request_usd=usd)
        paid = pays(current, want, cooldown_s=self.scale_in_cooldown_s)
        base_want = min(base, want)
        if base_want > paid and episodes.age_s(state.now_s) is not None:
            hold_s = min(self.scale_in_cooldown_s, state.vm.boot_s)
            base_want = pays(paid, base_want, cooldown_s=hold_s)
        return max(paid, base_want)

    def _burst_latency_s(self, state: LiveState) -> float:
        return burst_latency_s(state, self.burst_latency_s)

    def _first_vm_pays(self, state: LiveState, rate: float) -> bool:
        return self.min_replicas > 0 or first_vm_pays(
            state, rate, self._price.usd(state), self.prices
        )

    def _spill_floor(
        self, state: LiveState, forecast_want: int, capacity: float, fixed: bool
    ) -> int:
        """The fleet the spill VM asks for: one more than the fleet its spill was measured at
        (0 while it does not pay). Not one more than the forecast now: when the forecast grows
        after the spill was measured, its own VMs take that spill, and one more on top counted
        it twice (Azure code x20: a third VM booted into a burst, $0.4606 -> $0.4516)."""
        extra = self._spill.extra(
            state.now_s,
            spill_per_s=state.burst.in_flight / max(self._burst_latency_s(state), 1e-3),
            vm_capacity_per_s=capacity / self.target_utilization,
            request_usd=self._price.usd(state),
            arrival_rate_per_s=state.arrival_rate_long_per_s,
            fleet_at_forecast=state.vm.booting_replicas == 0
            and state.vm.ready_replicas == forecast_want,
            fleet=forecast_want,
            grown=fixed,  # (the fixed fleet priced the spill in: measured afresh at it)
        )
        if not extra:
            self._spill_base = None
            return 0
        if self._spill_base is None:  # measured only at the forecast's fleet: that one
            self._spill_base = forecast_want
        return self._spill_base + 1

    def _warm_functions(self, state: LiveState, upper: float, vm_rate: float) -> tuple[int, float]:
        """The instances the forecast's spill keeps busy (Little's law) and the learnt pool's
        (``warm_pool.py``), within min/max, and what keeping them warm costs a second."""
        per_request = self.instances_per_burst_request or max(state.burst.default_workers, 1)
        latency_s, pool, cap = self._burst_latency_s(state), self._pool, self.max_warm_functions
        warm = math.ceil(max(upper - vm_rate, 0.0) * latency_s * per_request - 1e-9) if cap else 0
        if pool is not None:
            warm = max(warm, pool.sample(state, vm_rate, latency_s, per_request))
        warm, mb = min(max(warm, self.min_warm_functions), cap or warm), state.burst.memory_mb
        return warm, warm_cost_usd_per_s(self.prices, warm, latency_s, mb, pool is not None)
