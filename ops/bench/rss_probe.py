"""Run ``python -m ops ...`` (the gateway) with a probe thread beside it, for the soak's memory
hunt, outside every production path: every ``--every`` seconds it appends one JSON line to
``--out``: RSS split anon / file (``/proc/self/smaps_rollup``), glibc's heap (``mallinfo2``:
arena bytes, in use, free, mmapped), live Python objects by type (``gc.get_objects``), the
thread count, and with ``--tracemalloc`` the traced Python heap and its top growth by line
since ``--baseline-s`` (after warm-up). ``--trim-every S`` calls ``malloc_trim(0)`` every S
seconds (an experiment: does giving freed heap back to the OS flatten RSS?) and records what
it freed.

    python ops/bench/rss_probe.py --out probe.jsonl [--every 60] [--tracemalloc] \
        [--trim-every 0] [--baseline-s 300] -- serve --config soak.toml
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import runpy
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def mallinfo(libc) -> dict:
    """glibc's heap in MB: arena (sbrk'd + arena heaps), in use, free inside, mmapped chunks.
    Only the main arena plus the others glibc sums into mallinfo2 (all of them)."""
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    mb = 2**20
    return {
        "heap_arena_mb": round(info.arena / mb, 2),
        "heap_used_mb": round(info.uordblks / mb, 2),
        "heap_free_mb": round(info.fordblks / mb, 2),
        "heap_mmap_mb": round(info.hblkhd / mb, 2),
    }


def sqlite_mb() -> dict:
    """What SQLite holds (page caches, statements: ``sqlite3_memory_used``) in MB, through
    the library ``sqlite3`` loaded; empty if the process has not loaded it."""
    if "_sqlite3" not in sys.modules:
        return {}
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")
    except OSError:
        return {}
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return {"sqlite_mb": round(lib.sqlite3_memory_used() / 2**20, 2)}


def smaps() -> dict:
    """RSS, anonymous and file-backed, in MB, from ``/proc/self/smaps_rollup``."""
    out = {}
    try:
        text = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Anonymous", "Pss_File", "Pss_Anon"):
            out[key.lower() + "_mb"] = round(int(rest.split()[0]) / 1024, 2)
    return out


def object_counts(top: int) -> tuple[int, dict, list]:
    """Live gc-tracked objects: how many, the ``top`` types by count, and the largest
    containers (type, length, id, a hint: a few keys or items) to follow one that grows."""
    counts: Counter = Counter()
    big: list[tuple[int, int, object]] = []
    for o in gc.get_objects():
        counts[type(o).__qualname__] += 1
        if isinstance(o, (dict, list, set, deque)):
            n = len(o)
            if n >= 200:
                big.append((n, id(o), o))
    big.sort(key=lambda b: -b[0])
    largest = [[type(o).__qualname__, n, i, _hint(o)] for n, i, o in big[:15]]
    return sum(counts.values()), dict(counts.most_common(top)), largest


def _hint(o) -> str:
    try:
        items = list(o)[:3] if not isinstance(o, dict) else list(o.items())[:3]
        return repr(items)[:120]
    except Exception:  # noqa: BLE001 - a container changed under us
        return "?"


def probe_line(t0: float, libc, snap0, top: int) -> dict:
    total, by_type, largest = object_counts(top)
    line = {"t_s": round(time.monotonic() - t0, 1), **smaps(), **mallinfo(libc), **sqlite_mb()}
    line.update(threads=threading.active_count(), objects=total, by_type=by_type)
    line["largest"] = largest
    import tracemalloc

    if tracemalloc.is_tracing():
        line["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
        if snap0 is not None:
            diff = tracemalloc.take_snapshot().compare_to(snap0, "lineno")[:8]
            line["traced_growth"] = [f"{d.size_diff / 1024:.0f} KB {d.traceback}" for d in diff]
    return line


def _append(out: Path, doc: dict) -> None:
    with out.open("a") as f:
        f.write(json.dumps(doc) + "\n")


def run_probe(args: argparse.Namespace) -> None:
    """The probe thread: a line every ``args.every`` s; the tracemalloc baseline at the first
    line past ``args.baseline_s`` (after start-up and warm-up); ``malloc_trim`` if asked."""
    import tracemalloc

    libc = _libc()
    t0 = time.monotonic()
    snap0 = None
    next_trim = t0 + args.trim_every if args.trim_every > 0 else None
    next_line = t0
    while True:
        now = time.monotonic()
        if next_trim is not None and now >= next_trim:
            before = smaps().get("rss_mb", 0)
            libc.malloc_trim(0)
            freed = round(before - smaps().get("rss_mb", 0), 2)
            _append(args.out, {"t_s": round(now - t0, 1), "trim_freed_mb": freed})
            next_trim = now + args.trim_every
        if now >= next_line:
            _append(args.out, probe_line(t0, libc, snap0, args.top))
            if snap0 is None and tracemalloc.is_tracing() and now - t0 >= args.baseline_s:
                snap0 = tracemalloc.take_snapshot()
            next_line = now + args.every
        time.sleep(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--every", type=float, default=60.0)
    ap.add_argument("--top", type=int, default=40, help="object types to list per line")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--trim-every", type=float, default=0.0)
    ap.add_argument(
        "--baseline-s", type=float, default=300.0, help="tracemalloc growth counts from here"
    )
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="-- then the tidegate arguments")
    args = ap.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(4)
    sys.path.insert(0, str(ROOT))
    threading.Thread(target=run_probe, args=(args,), name="rss-probe", daemon=True).start()
    sys.argv = ["ops", *rest]
    os.chdir(ROOT)
    runpy.run_module("ops", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
