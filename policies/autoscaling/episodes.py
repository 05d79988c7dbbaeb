"""Boot a VM for an overload only if overloads like it have lasted long enough to pay for one.

A VM asked for when demand rises above the ready fleet serves a boot time later. On a trace of
20-40 s bursts (the Azure LLM code trace x20) it comes up after the burst, idles through the
scale-in cooldown, and the burst spilled to functions anyway. Whether a boot pays depends on
how long the overload goes on, which the rate alone does not say, but past overloads do.

``OverloadEpisodes`` records overload episodes: the seconds the arrival rate stayed above the
full capacity of the VMs ready when it rose past it (that capacity is held for the episode, so a
VM booted for it does not end it). When the forecast asks for more VMs during an episode of age
``t``, ``pays`` weighs the spill one more VM would take over what remains of the episode after
the boot against what the VM costs: booting, the rest of the episode, the scale-in cooldown, at
least the billing minimum. It is a rent-or-buy decision (ski rental with a learnt length
distribution, and a robust fallback):

- **Evidence**: ``min_episodes`` or more past overloads lasted beyond ``t``. Their remaining
  lengths are the distribution (the empirical survival given ``t``).
- **Otherwise** (little or no history, or older than nearly all seen): the remaining length is
  taken as exponential, with the mean of every overload seen plus ``prior_episodes`` overloads
  as long as a boot (a Gamma prior), this one counted as lasting at least ``t`` (the censored
  estimate). A boot time is the one time scale known before any overload: shorter ones end
  before the VM is up, longer ones are what VMs are for. At the reference prices a first
  overload that one VM's full batches would take off functions still boots at once (a flash
  crowd: 2.46x -> 2.47x below vm-peak); the next ones, after a short first, are booted for
  only once their age makes the mean long enough. Before, no history meant "boot", and each
  of the first three 15 s MMPP bursts booted 2-3 VMs that came up after it (seed 4: 1.91x
  below vm-peak, 2.01x now; a VM-less scaler's one VM flat 2.04x). For memoryless bursts the
  remaining length does not grow with age; a long overload raises the mean, so a change of
  regime (a load that stays up) is still learnt.
- **Robust fallback** (the learning-augmented ski rental): whatever the history says, the VM is
  booted once the spill it would already have taken in this overload costs ``1 / robustness``
  times the VM's commitment (boot + cooldown, at least the billing minimum). If the history is
  wrong about this overload, the scaler pays at most that much more than it would have.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ..costs import PriceTable

# overloads "like" the current one: their peak excess over the fleet at least this share of its
# peak so far (blips at a fleet's capacity edge say nothing about how long a crowd lasts)
LIKE_PEAK_SHARE = 0.1
MAX_TRACKED_REPLICAS = 64  # replicas over the ready fleet whose would-be spill is counted


@dataclass(frozen=True)
class BootEconomics:
    boot_s: float
    cooldown_s: float
    absorb_per_s: (
        float  # requests per second the VM would take off functions while the overload lasts
    )
    request_usd: float  # what one spilled request costs on functions
    extra_replica: int = 0  # which VM over the fleet ready at the overload's start (0: the first)


class OverloadEpisodes:
    def __init__(
        self,
        prices: PriceTable,
        min_episodes: int = 3,
        keep: int = 64,
        robustness: float = 0.2,
        prior_episodes: float = 1.0,
    ):
        if not 0 < robustness <= 1:
            raise ValueError("robustness must be in (0, 1]")
        if prior_episodes <= 0:
            raise ValueError("prior_episodes must be > 0")
        self.prices = prices
        self.min_episodes = min_episodes
        self.robustness = robustness
        self.prior_episodes = prior_episodes
        self._durations_s: deque[float] = deque(maxlen=keep)  # the most recent episodes
        self._peaks_per_s: deque[float] = deque(maxlen=keep)  # each one's peak excess rate
        self._peak_per_s = 0.0  # the current one's
        self._start_s: float | None = None
        self._level_per_s = 0.0  # the ready fleet's full capacity when the episode began
        self._last_s: float | None = None
        self._taken_rows: list[float] = []  # per extra VM: rows it would have taken so far

    @property
    def durations_s(self) -> list[float]:
        return list(self._durations_s)

    def age_s(self, now_s: float) -> float | None:
        """How long the current overload has lasted, None outside one."""
        return None if self._start_s is None else now_s - self._start_s

    def ready_at_start(self, replica_capacity_per_s: float) -> int:
        """Replicas ready when the current overload began (its capacity held for it)."""
        return round(self._level_per_s / max(replica_capacity_per_s, 1e-9))

    def observe(
        self,
        now_s: float,
        rate_per_s: float,
        ready_capacity_per_s: float,
        replica_capacity_per_s: float = 0.0,
    ) -> None:
        """One sample of the arrival rate; ``replica_capacity_per_s`` (a replica's full
        capacity) counts what each extra VM would have taken off functions in the overload."""
        dt = 0.0 if self._last_s is None else max(now_s - self._last_s, 0.0)
        self._last_s = now_s
        if self._start_s is None:
            if rate_per_s > ready_capacity_per_s:
                self._start_s, self._level_per_s = now_s, ready_capacity_per_s
                self._taken_rows, self._peak_per_s = [], rate_per_s - ready_capacity_per_s
            return
        if rate_per_s <= self._level_per_s:
            self._durations_s.append(now_s - self._start_s)
            self._peaks_per_s.append(self._peak_per_s)
            self._start_s = None
            return
        self._peak_per_s = max(self._peak_per_s, rate_per_s - self._level_per_s)
        self._count_taken(rate_per_s - self._level_per_s, replica_capacity_per_s, dt)

    def _count_taken(self, excess_per_s: float, cap_per_s: float, dt_s: float) -> None:
        if cap_per_s <= 0 or dt_s <= 0:
            return
        n = min(math.ceil(excess_per_s / cap_per_s), MAX_TRACKED_REPLICAS)
        if len(self._taken_rows) < n:
            self._taken_rows.extend([0.0] * (n - len(self._taken_rows)))
        for k in range(n):
            self._taken_rows[k] += min(excess_per_s - k * cap_per_s, cap_per_s) * dt_s

    def pays(self, now_s: float, econ: BootEconomics) -> bool:
        """Whether one more VM booted now is expected to cost less than the spill it takes."""
        if self._spilled_past_robust_limit(econ):
            return True
        age = self.age_s(now_s) or 0.0
        like = self._like_this_one()
        at_risk = [d - age for d in like if d > age]
        if len(like) >= self.min_episodes and len(at_risk) >= self.min_episodes:
            return self._expected_gain_usd(econ, at_risk) > 0
        return self._exponential_gain_usd(econ, age, like) > 0

    def _like_this_one(self) -> list[float]:
        """The durations of the overloads seen whose peak excess over their fleet reached
        ``LIKE_PEAK_SHARE`` of this one's so far (all of them outside an overload). One
        wide_resnet50_2 VM at 20 req/s crossed its capacity four times for 1-5 s; those said
        a 400 req/s flash crowd would end in seconds and held its first boot back 54 s."""
        if self._start_s is None:
            return list(self._durations_s)
        floor = LIKE_PEAK_SHARE * self._peak_per_s
        return [d for d, p in zip(self._durations_s, self._peaks_per_s) if p >= floor]

    def _vm_usd(self, econ: BootEconomics, served_s: float) -> float:
        up_s = econ.boot_s + served_s + econ.cooldown_s
        return self.prices.vm_usd_per_hour / 3600.0 * max(up_s, self.prices.vm_min_billed_s)

    def _expected_gain_usd(self, econ: BootEconomics, remaining_s: list[float]) -> float:
        """Spill taken minus the VM's bill, averaged over the remaining lengths given."""
        gain_usd = 0.0
        for rest_s in remaining_s:
            served_s = max(rest_s - econ.boot_s, 0.0)  # the part of it the VM is up for
            gain_usd += econ.absorb_per_s * econ.request_usd * served_s
            gain_usd -= self._vm_usd(econ, served_s)
        return gain_usd / len(remaining_s)

    def _exponential_gain_usd(self, econ: BootEconomics, age_s: float, seen: list[float]) -> float:
        """The same with an exponential remaining length: E[max(R - boot, 0)] = m e^(-boot/m)
        for mean m (the overloads seen and the prior's, this one's age counted in); the bill's
        minimum is met by boot + cooldown in any real setting."""
        mean_s = self.mean_remaining_s(econ.boot_s, age_s, seen)
        served_s = mean_s * math.exp(-econ.boot_s / max(mean_s, 1e-9))
        return econ.absorb_per_s * econ.request_usd * served_s - self._vm_usd(econ, served_s)

    def mean_remaining_s(
        self, boot_s: float, age_s: float, seen: list[float] | None = None
    ) -> float:
        """The exponential fit's mean: the seen overloads' total (``seen``, else all),
        ``prior_episodes`` of a boot time each and this one's age, over the count of finished
        ones (seen and prior)."""
        w, seen = self.prior_episodes, list(self._durations_s) if seen is None else seen
        return (w * boot_s + sum(seen) + age_s) / (w + len(seen))

    def _spilled_past_robust_limit(self, econ: BootEconomics) -> bool:
        k = econ.extra_replica
        if self._start_s is None or k >= len(self._taken_rows):
            return False
        spilled_usd = self._taken_rows[k] * econ.request_usd
        return spilled_usd * self.robustness >= self._vm_usd(econ, 0.0)


def replicas_that_pay(
    episodes: OverloadEpisodes,
    now_s: float,
    current: int,
    want: int,
    *,
    demand: float,
    capacity: float,
    full_per_replica: float,
    boot_s: float,
    cooldown_s: float,
    request_usd: float,
) -> int:
    """The replicas from ``current`` up to ``want`` whose boot the past overloads say pays, one
    at a time: each takes ``capacity`` (what a replica is sized for) of ``demand`` and is let
    go ``cooldown_s`` after the overload."""
    ready_at_start = episodes.ready_at_start(full_per_replica)
    for replicas in range(current, want):
        econ = BootEconomics(
            boot_s=boot_s,
            cooldown_s=cooldown_s,
            absorb_per_s=min(max(demand - replicas * capacity, 0.0), capacity),
            request_usd=request_usd,
            extra_replica=max(replicas - ready_at_start, 0),
        )
        if not episodes.pays(now_s, econ):
            return replicas
    return want
