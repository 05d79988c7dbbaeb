"""One VM more than the forecast asks for, while the spill it would take costs more than it.

The predictive scaler sizes the VMs for the mean rate. A rate that is steady over minutes but
clumped within seconds (the Mooncake conversation trace x20: 60-80 req/s on average, 300-400 in
a second) leaves one VM at half its capacity on average and still spills a quarter of the
requests to functions, which cost ~12x a full VM's share per request (reference prices). A
second VM would take nearly all of it, and nothing in the mean rate says so.

The gateway sees the spill as burst requests in flight; by Little's law, in flight over a burst
request's latency is the spill rate. ``SpillEconomics`` averages, over a long window, the part
of the spill one more VM could take (at most a replica's full-batch capacity per second) while
the fleet is at the forecast's size and not booting, and asks for one more VM once that part's
function bill exceeds the VM's price. The extra VM takes the spill away, so the average is held
while it runs, scaled by the arrival rate since, averaged over the same window (a spill measured
at a higher load no longer holds once the load falls; the 2-minute rate swung enough on
Mooncake to let the VM go and boot it again three times in 15 minutes); the VM goes when the
scaled figure no longer pays for it, and is asked for again only after a fresh window of spill
measured without it.

The window is long (10 boot times by default) because a VM kept for bursts pays only if the
bursts recur within it: an MMPP burst of 15 s every 4 minutes averages below the VM's price and
adds nothing, where a VM booted for each burst arrives after it (``docs/ops.md``).
"""

from __future__ import annotations

import math
from collections import deque

from ..costs import PriceTable

INDEPENDENT_S = 60.0  # spill this far apart counts as a separate sample of the spill's rate


class SpillEconomics:
    def __init__(self, window_s: float, prices: PriceTable):
        self.window_s = window_s
        self.prices = prices
        self._took = _Average(window_s)  # spill one more VM would take (rows/s), at forecast
        self._fleet = 0  # the forecast's fleet the spill was last measured at
        self._rate = _Average(window_s)  # the arrival rate, always
        self._last_s: float | None = None
        self._extra = False
        self._rate_at = 0.0  # the average arrival rate when the extra VM was asked for
        self._pieces: deque[float] = deque()  # when each independent piece of spill began
        self._spilling = False  # spill seen at the previous tick (at the forecast's fleet)

    @property
    def absorbable_per_s(self) -> float:
        return self._took.value

    def extra(
        self,
        now_s: float,
        *,
        spill_per_s: float,
        vm_capacity_per_s: float,
        request_usd: float,
        arrival_rate_per_s: float,
        fleet_at_forecast: bool,
        fleet: int | None = None,
        grown: bool = False,
    ) -> int:
        """1 while one more VM than the forecast pays for itself, else 0. ``fleet``: the
        forecast's fleet now; ``grown``: a fleet larger than the spill was measured at is
        meant to take that spill (the fixed fleet, ``fleet_regret.py``, priced it in), so
        the spill is measured afresh at it, the time already seen still counted: a tight
        SLO's learning bursts, spilled at 2 VMs, asked for a 5th VM over the 4 the fixed
        fleet had by then (MMPP, ResNet-18 at 80 ms: $0.80, VMs for the peak $0.68)."""
        dt = 0.0 if self._last_s is None else max(now_s - self._last_s, 0.0)
        self._last_s = now_s
        if self.window_s <= 0:
            return 0
        vm_usd_per_s = self.prices.vm_usd_per_hour / 3600.0
        self._rate.add(arrival_rate_per_s, dt)
        if self._extra:
            # the spill measured, at the load now (both averaged over the window)
            scaled = self._took.value * self._rate.value / max(self._rate_at, 1e-9)
            if min(scaled, vm_capacity_per_s) * request_usd < vm_usd_per_s:
                # asked again only on a window of spill measured without it, the evidence the
                # first ask needed: the extrapolated figure it went on sits just under the
                # price, and the first spill after took it back over (Azure code x20: let go at
                # 2500 s, asked at 2532, cancelled at 2548 and billed its minimum, asked at 2584)
                self._extra = False
                self._took = _Average(self.window_s)
            return int(self._extra)
        if fleet_at_forecast:
            if fleet is not None:
                if grown and fleet > self._fleet:
                    seen_s, self._took = self._took.observed_s, _Average(self.window_s)
                    self._took.observed_s = seen_s
                self._fleet = fleet
            self._took.add(min(max(spill_per_s, 0.0), vm_capacity_per_s), dt)
            self._count_piece(now_s, spill_per_s > 0)
        while self._pieces and self._pieces[0] <= now_s - self.window_s:
            self._pieces.popleft()
        if (
            self._took.observed_s >= self.window_s
            and self._took.value * self.confidence() * request_usd > vm_usd_per_s
        ):
            self._extra, self._rate_at = True, max(self._rate.value, 1e-9)
        return int(self._extra)

    def confidence(self) -> float:
        """How much of the measured spill to trust: 1 - 1/sqrt(n) for n independent pieces of
        spill in the window (a lower bound, one standard error, on a rate counted from n
        events). Two or three bursts in a window do not tell how often bursts come: on MMPP the
        spill of 600 s with 2-3 bursts paid for a VM that the next 1000 s did not use (seeds 2
        and 4: dearer than one VM flat); a spill spread over the window (Mooncake's 1 s clumps,
        a steady overload: one piece every ``INDEPENDENT_S``) is trusted nearly whole."""
        n = len(self._pieces)
        return 0.0 if n == 0 else 1.0 - 1.0 / math.sqrt(n)

    def _count_piece(self, now_s: float, spilling: bool) -> None:
        if spilling and (
            not self._spilling or not self._pieces or now_s - self._pieces[-1] >= INDEPENDENT_S
        ):
            self._pieces.append(now_s)
        self._spilling = spilling


class _Average:
    """Exponentially weighted over ``window_s`` of time; until a window has been seen, the plain
    mean of what was (an average started at zero would take a window to mean anything)."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.value = 0.0
        self.observed_s = 0.0

    def add(self, x: float, dt_s: float) -> None:
        if dt_s <= 0:
            return
        self.observed_s += dt_s
        if self.observed_s <= self.window_s:
            weight = dt_s / self.observed_s
        else:
            weight = 1.0 - math.exp(-dt_s / self.window_s)
        self.value += weight * (x - self.value)
