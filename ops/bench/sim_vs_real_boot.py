"""The VM boot the live replay saw, for the simulation of the same run (``sim_vs_real``).

A local replica's boot is the configured ``boot_delay_s`` plus a model server's start, which the
bench guessed at 3 s. The pool measures each replica's start (``expected_boot_s`` on
``/admin/paths``: the median of the boots it saw), so the simulation takes that and says so; the
guess stays for a run without it. (Session 22, MMPP seed 43, 10 s delay: 13.2 s measured, so the
guess was right there; that run's 16 % cost gap was the threshold policy asking for 3 VMs live
where the simulation asked for 2 in its second burst.)
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

ADMIN_KEY = "sim-vs-real-bench"  # (a loopback gateway the bench starts and stops)
CONFIG_LINE = f'admin_api_key = "{ADMIN_KEY}"\n'
GUESSED_START_S = 3.0


def record_boot_s(url: str, work: Path) -> None:
    """The pool's median replica boot, in ``work/boot_s`` (nothing if it cannot be read)."""
    request = urllib.request.Request(
        url + "/admin/paths", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            boot_s = float(json.load(resp)["vm"]["expected_boot_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if boot_s > 0:
        (work / "boot_s").write_text(f"{boot_s:.3f}")


def vm_boot_s(work: Path, boot_delay_s: float) -> tuple[float, str]:
    """(boot seconds, where from): the measured boot, or the delay plus a guessed start."""
    try:
        return float((work / "boot_s").read_text()), "measured by the pool over the replay"
    except (OSError, ValueError):
        return boot_delay_s + GUESSED_START_S, f"boot_delay_s + {GUESSED_START_S:g} s (guessed)"
