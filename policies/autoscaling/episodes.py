"""Boot a VM for an overload only if overloads like it have lasted long enough to pay for one.

A VM asked for when demand rises above the ready fleet serves a boot time later. On a trace of
20-40 s bursts (the Azure LLM code trace x20) it comes up after the burst, idles through the
scale-in cooldown, and the burst spilled to functions anyway. Whether a boot pays depends on
how long the overload goes on, which the rate alone does not say, but past overloads do.

``OverloadEpisodes`` records overload episodes: the seconds the arrival rate stayed above the
full capacity of the VMs ready when it rose past it (that capacity is held for the episode, so a
VM booted for it does not end it). When the forecast asks for more VMs during an episode of age
``t``, ``pays`` weighs, over the past episodes that lasted beyond ``t`` (the empirical survival
given ``t``), the spill one more VM would take over what remains of each after the boot against
what the VM costs: booting, the rest of the episode, the scale-in cooldown, at least the billing
minimum. With fewer than ``min_episodes`` past episodes that lasted beyond ``t`` (no history, or
an episode longer than any seen) there is no evidence, and the VM is booted as before.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..costs import PriceTable


@dataclass(frozen=True)
class BootEconomics:
    boot_s: float
    cooldown_s: float
    absorb_per_s: (
        float  # requests per second the VM would take off functions while the overload lasts
    )
    request_usd: float  # what one spilled request costs on functions


class OverloadEpisodes:
    def __init__(self, prices: PriceTable, min_episodes: int = 3, keep: int = 64):
        self.prices = prices
        self.min_episodes = min_episodes
        self._durations_s: deque[float] = deque(maxlen=keep)  # the most recent episodes
        self._start_s: float | None = None
        self._level_per_s = 0.0  # the ready fleet's full capacity when the episode began

    @property
    def durations_s(self) -> list[float]:
        return list(self._durations_s)

    def age_s(self, now_s: float) -> float | None:
        """How long the current overload has lasted, None outside one."""
        return None if self._start_s is None else now_s - self._start_s

    def observe(self, now_s: float, rate_per_s: float, ready_capacity_per_s: float) -> None:
        if self._start_s is None:
            if rate_per_s > ready_capacity_per_s:
                self._start_s, self._level_per_s = now_s, ready_capacity_per_s
        elif rate_per_s <= self._level_per_s:
            self._durations_s.append(now_s - self._start_s)
            self._start_s = None

    def pays(self, now_s: float, econ: BootEconomics) -> bool:
        """Whether one more VM booted now is expected to cost less than the spill it takes."""
        age = self.age_s(now_s) or 0.0
        at_risk = [d for d in self._durations_s if d > age]
        if len(at_risk) < max(self.min_episodes, 1):
            return True  # no evidence: boot, as without a history
        vm_usd_per_s = self.prices.vm_usd_per_hour / 3600.0
        benefit_usd = cost_usd = 0.0
        for d in at_risk:
            served_s = max(d - age - econ.boot_s, 0.0)  # the part of it the VM is up for
            benefit_usd += econ.absorb_per_s * econ.request_usd * served_s
            up_s = econ.boot_s + served_s + econ.cooldown_s
            cost_usd += vm_usd_per_s * max(up_s, self.prices.vm_min_billed_s)
        return benefit_usd > cost_usd
