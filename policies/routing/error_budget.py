"""The SLO's error budget, spent by routing (as in SRE practice).

An SLO at p99 lets 1 % of requests miss. Routing that keeps every request's predicted p99
within the SLO attains 99.98-99.99 % where 99 % is asked, and pays functions for the requests
it spills although most of them would have met it on the VM. While the misses measured over a
recent window are well under the budget, the VM may be judged at a lower quantile of its own
prediction (a queue that meets the SLO at p90 misses it for about one request in ten, not all);
as the misses approach the budget it goes back to the SLO's percentile. The measured misses
are the feedback: a trace whose misses already spend the budget (bursts on cold functions)
gets no relaxation, so the attainment corrects itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

DEFAULT_WINDOW_S = 3600.0  # an hour: a burst's misses are still counted an hour on


@dataclass(frozen=True)
class ErrorBudget:
    """``spend``: the share of the miss budget (``1 - target``) below which the VM is judged at
    ``quantile``; from there to the whole budget the quantile rises linearly to the target.
    ``min_answers``: answers the window must hold, in units of ``1 / (1 - target)`` (ten: ten
    misses' worth of budget), before its miss rate is trusted."""

    quantile: float = 0.5
    spend: float = 0.5
    min_answers: float = 10.0

    def vm_quantile(self, target: float, answered: int, missed: int) -> float:
        """The quantile the VM's prediction must meet the SLO at, given the window's counts."""
        allowed = 1.0 - target
        if self.quantile >= target or allowed <= 0.0 or answered * allowed < self.min_answers:
            return target
        used = missed / (answered * allowed)  # share of the budget the window spent
        if used <= self.spend:
            return self.quantile
        if used >= 1.0:
            return target
        # between: back towards protection in proportion to what is left (a coarse step,
        # so that decisions memoised on it stay valid across small moves)
        share = (used - self.spend) / (1.0 - self.spend)
        return round(self.quantile + (target - self.quantile) * share, 2)


class MissWindow:
    """Answers and SLO misses over the last ``window_s`` seconds, in one-second buckets. The
    caller gives the time (its Clock's, or simulated); nothing here reads a clock."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S):
        self.window_s = window_s
        self._buckets: deque[list] = deque()  # [second, answered, missed]
        self.answered = self.missed = 0

    def add(self, now_s: float, answered: int, missed: int) -> None:
        sec = int(now_s)
        if self._buckets and self._buckets[-1][0] == sec:
            bucket = self._buckets[-1]
            bucket[1] += answered
            bucket[2] += missed
        else:
            self._buckets.append([sec, answered, missed])
        self.answered += answered
        self.missed += missed
        self._expire(now_s)

    def counts(self, now_s: float) -> tuple[int, int]:
        """``(answered, missed)`` within the window ending at ``now_s``."""
        self._expire(now_s)
        return self.answered, self.missed

    def _expire(self, now_s: float) -> None:
        horizon = now_s - self.window_s
        while self._buckets and self._buckets[0][0] < horizon:
            _, answered, missed = self._buckets.popleft()
            self.answered -= answered
            self.missed -= missed
