"""How busy the host was with other work while ``sim_vs_real.py`` replayed its trace."""

from __future__ import annotations

import json
from pathlib import Path


def foreign_cores(timeline: Path) -> float | None:
    """Cores the host spent on other work over the replay: its busy ticks less the run's (the
    gateway's tree and the load generator). Other helpers' work at 1.7-1.95 of 2 cores left the
    live gateway a fraction of the host the simulation gives it (flash seed 47: 68-84 % live,
    92 % simulated; 100 % both on a steady 10 req/s)."""
    if not timeline.exists():
        return None
    doc = json.loads(timeline.read_text())
    rows = next(v for k, v in doc.items() if k != "tick_hz")
    if len(rows) < 2 or rows[-1][0] <= rows[0][0]:
        return None
    first, last = rows[0], rows[-1]
    ticks = [b - a for a, b in zip(first, last, strict=True)]
    return (ticks[6] - sum(ticks[1:6])) / doc["tick_hz"] / ticks[0]
