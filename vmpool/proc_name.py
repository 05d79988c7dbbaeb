"""Process names: each process Tidegate starts names itself ``tidegate-...``, so ``pgrep -l
tidegate`` and ``ps`` list the whole family (the model servers, the function runtime and its
instances ran as ``python``). Kept import-light: function instances call it on cold start."""

from __future__ import annotations

import ctypes
import sys

_PR_SET_NAME = 15
COMM_BYTES = 15  # the kernel keeps this many bytes of a process name


def name_process(name: str) -> bool:
    """Set this process's name (``/proc/self/comm``, cut to 15 bytes) before it starts threads
    (they inherit it); False where the platform has no prctl."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:COMM_BYTES]), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
