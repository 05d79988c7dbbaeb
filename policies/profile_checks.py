"""A profile's sanity checks, apart from its parsing (``policies.profile``). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policies.profile import Profile


LIMIT = 1e9  # 11 days in ms: past any time, size or scale a profile holds


class ProfileError(Exception):
    """A profile is malformed."""


def check_numbers(raw, where: str) -> None:
    """Every number in a profile (a time in ms, a size, a count or a scale) is in [0, 1e9): a
    hand-edited NaN planned every split at NaN ms and then said none fits; 1e308 overflowed."""
    kids = raw.items() if isinstance(raw, dict) else enumerate(raw if isinstance(raw, list) else ())
    for k, v in kids:
        if k != "input_shape":  # -1: a symbolic (batch) dimension (check_profile)
            check_numbers(v, f"{where}.{k}")
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and not 0 <= raw < LIMIT:
        raise ProfileError(f"{where}: {raw} is not a number from 0 to 1e9")


def check_profile(p: Profile) -> None:
    """What the performance model looks up or scales by is there and positive."""
    scales: dict[str, list[float]] = {
        "cores": [p.cores],
        "split_slowdown": [v for t in p.split_slowdown.values() for v in t.values()],
    }
    for name, t in p.models.items():
        c = t.calibration
        scales[f"{name} input_shape"] = [1 if d == -1 else d for d in t.input_shape]
        scales[f"{name} calibration"] = [c.compute, *c.split.values(), *t.plan_error.values()]
    for what, values in scales.items():
        if min(values, default=1) <= 0:
            raise ProfileError(f"{what}: {min(values)} where it must be > 0")
    if p.split_pricing not in ("share", "graph"):
        raise ProfileError(f"split_pricing: {p.split_pricing!r} is not 'share' or 'graph'")
    if not p.invoke_warm_ms or "dir" not in p.transfer:
        raise ProfileError("a profile needs invoke_warm_ms and transfer.dir")
