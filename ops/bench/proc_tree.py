"""The gateway's process tree from /proc, whatever the sessions its processes run in (each
child of the gateway and each function instance starts a session of its own), by role: what
``host_cpu.py`` attributes the host's CPU to."""

from __future__ import annotations

import os

TICK = os.sysconf("SC_CLK_TCK")
ROLES = ("gateway", "model_servers", "runtime", "instances")
# a role a process of the gateway's tree has by its command line (any other has its parent's)
MARKS = (
    ("burst.faas.instance", "instances"),
    ("function-runtime", "runtime"),
    ("model-server", "model_servers"),
)


def read_stat(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def snapshot() -> dict[str, list[str]]:
    return {pid: f for pid in os.listdir("/proc") if pid.isdigit() and (f := read_stat(pid))}


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tree_roles(root: int, stats: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Every process descending from ``root`` (itself included), found by walking the ppid
    links in /proc whatever their sessions, with its role: ``root`` is the gateway; a process
    whose command line names a role (``MARKS``) has it, any other its parent's."""
    stats = snapshot() if stats is None else stats
    children: dict[str, list[str]] = {}
    for pid, f in stats.items():
        children.setdefault(f[1], []).append(pid)
    roles = {str(root): "gateway"} if str(root) in stats else {}
    todo = list(roles)
    while todo:
        parent = todo.pop()
        for pid in children.get(parent, ()):
            cmd = _cmdline(pid)
            roles[pid] = next((role for mark, role in MARKS if mark in cmd), roles[parent])
            todo.append(pid)
    return roles


def tree_ticks(root: int) -> dict[str, tuple[str, int]]:
    """The NEW attribution (``tree``): each process of ``root``'s tree -> (role, CPU ticks)."""
    stats = snapshot()
    return {
        pid: (role, int(stats[pid][11]) + int(stats[pid][12]))
        for pid, role in tree_roles(root, stats).items()
    }


def ticks_since(before: dict, now: dict) -> float:
    """CPU seconds the processes alive ``now`` spent since ``before`` (pid -> ticks or (role,
    ticks)); one that exited, e.g. a VM replica scaled in, takes its past CPU away from a plain
    sum, one started since counts whole."""

    def t(v) -> int:
        return v[1] if isinstance(v, tuple) else v

    return sum(t(v) - (t(before[pid]) if pid in before else 0) for pid, v in now.items()) / TICK
