"""How long no request has come: the predictive scaler holds its last VM where functions miss
the SLO, but not through hours of silence (rand4 s23: one VM billed through 2.9 silent hours,
$0.49 of the run's $0.67, for a burst it served a fifth of)."""

from __future__ import annotations

DEFAULT_RELEASE_S = 1800.0  # the regret window's span: as long as the scaler judges a fleet over


class Silence:
    """``silent(now_s)``: no arrival for ``release_s`` or longer (0 turns it off). Time since
    the last tick with a nonzero arrival rate: the rate windows are the collector's, so a lone
    request keeps the fleet for the window's length plus ``release_s``."""

    def __init__(self, release_s: float = DEFAULT_RELEASE_S):
        if not release_s >= 0:
            raise ValueError("idle_release_s must be >= 0")
        self.release_s = release_s
        self._last_busy_s: float | None = None

    def observe(self, now_s: float, rate_per_s: float) -> None:
        if rate_per_s > 0 or self._last_busy_s is None:
            self._last_busy_s = now_s

    def silent(self, now_s: float) -> bool:
        last = self._last_busy_s
        return self.release_s > 0 and last is not None and now_s - last >= self.release_s
