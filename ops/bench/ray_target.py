"""Ray Serve as a third serving stack in ``gateway_overhead.py``: the same exported program
behind Ray Serve (``ray_serve_app.py``, in its own venv ``.venv-ray``, made by ``make bench``)."""

from __future__ import annotations

import time
from pathlib import Path

from ops.bench.procs import ROOT, start
from vmpool.procs import free_port


def start_ray_serve(ray_py: Path, args, work: Path, repo: Path, row_shape) -> tuple:
    """Start Ray Serve on a free port with the model ``args.model`` of ``repo``; wait until it
    says ready. Returns (process, port); RuntimeError if it does not start in 4 minutes."""
    port = free_port()
    ray = start(
        [
            str(ray_py),
            str(ROOT / "ops/bench/ray_serve_app.py"),
            str(repo / args.model / "model.pt2"),
            str(port),
            str(args.threads),
            str(args.max_batch),
            ",".join(map(str, row_shape)),
        ],
        work / "ray.log",
        {"OMP_NUM_THREADS": str(args.threads), "RAY_USAGE_STATS_ENABLED": "0"},
    )
    deadline = time.monotonic() + 240
    while b"ready" not in (work / "ray.log").read_bytes():
        if ray.poll() is not None or time.monotonic() > deadline:
            ray.kill()
            raise RuntimeError("ray serve did not start; see " + str(work / "ray.log"))
        time.sleep(0.5)
    return ray, port


__all__ = ["start_ray_serve"]
