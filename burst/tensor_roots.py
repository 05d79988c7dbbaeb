"""The /dev/shm directories of tensors in flight (``burst.local_functions.memory_tensor_root``)
that no process owns any more.

A gateway removes its own at a clean stop; one SIGKILLed, crashed or never closed left its
directory, and any tensors a request had put there, in memory until the machine rebooted (a
shared test host held 131 of them). Each directory now names its owner (``OWNER_FILE``: the
process id and its start time) and a starting service removes those whose owner is gone.
Directories without the file (from before it) are left alone: nothing says they are free."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OWNER_FILE = ".owner"
PREFIX = "tidegate-tensors-"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None: no such process): with the
    id, it tells a live owner from a later process given the same id."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def claim(root: str | Path) -> None:
    """Mark ``root`` as this process's."""
    pid = os.getpid()
    Path(root, OWNER_FILE).write_text(f"{pid} {_start_time(pid) or ''}\n")


def _owner_alive(root: Path) -> bool:
    try:
        pid_text, _, started = Path(root, OWNER_FILE).read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return True  # unmarked or unreadable: not known to be free
    now = _start_time(pid)
    return now is not None and (not started or now == started)


def sweep(parent: str | Path, keep: str | Path | None = None) -> list[Path]:
    """Remove the tensor directories under ``parent`` whose owner is gone; what was removed."""
    removed = []
    for root in Path(parent).glob(PREFIX + "*"):
        if keep is not None and root == Path(keep):
            continue
        if root.is_dir() and not _owner_alive(root):
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
    return removed
