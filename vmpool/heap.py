"""glibc's ``malloc_trim``: the heap a process freed, back to the system (``gateway/memory.py``
says why; the model server trims once its models are loaded)."""

from __future__ import annotations

import ctypes
import ctypes.util


def trim_heap() -> bool | None:
    """``malloc_trim(0)``: True if memory went back to the system, None without glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to do
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))
