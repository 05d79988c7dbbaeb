"""How fast one thread can grow a process's resident memory (MB/s), the bound the function
runtime's memory watchdog spaces its reads by (``burst.faas.watchdog.MAX_GROWTH_MB_PER_S``).

    python ops/bench/burst25hop_growth.py [--mb 512] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _best_mb_per_s(fn, mb: int, runs: int) -> float:
    best = 0.0
    for _ in range(runs):
        t0 = time.perf_counter()
        block = fn(mb << 20)
        best = max(best, mb / (time.perf_counter() - t0))
        del block
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/burst25hop_growth.json")
    args = ap.parse_args()
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.NamedTemporaryFile(dir=shm, delete=False) as f:
        f.write(os.urandom(1 << 20) * args.mb)
    try:
        ways = {
            "fault in fresh pages (np.ones)": lambda n: np.ones(n, np.uint8),
            "read a file from the page cache": lambda n: Path(f.name).read_bytes(),
            "copy bytes": lambda n: bytes(bytearray(n)),
        }
        out = {k: _best_mb_per_s(fn, args.mb, args.runs) for k, fn in ways.items()}
    finally:
        os.unlink(f.name)
    print(f"load {os.getloadavg()[0]:.1f}; the best of {args.runs} runs of {args.mb} MB")
    for k, v in out.items():
        print(f"  {k:<34} {v:8.0f} MB/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
