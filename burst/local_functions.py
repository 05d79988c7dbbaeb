"""The burst functions on the embedded local runtime: what registers them, and where tensors in
flight go (/dev/shm, memory, when the store is a directory on this machine)."""

from __future__ import annotations

import json
import os
import tempfile

MASTER_HANDLER = "burst.runtime:master"
WORKER_HANDLER = "burst.runtime:worker"
# Functions find their platform and store here (set when they are deployed or registered), so
# invocation payloads carry names and tensors only, never credentials.
PLATFORM_ENV = "TIDEGATE_BURST_PLATFORM"
STORE_ENV = "TIDEGATE_BURST_STORE"
# glibc, as configured by default, gives a warm instance's freed activations back to the kernel
# (heap-top trims once free memory passes a threshold it moves with each large free), so, by
# the heap's layout after a plan's weights loaded, a request could fault every activation page
# in afresh: MobileNetV2, one function, 7.3 k page faults (29 MB) and 87 ms instead of 0 and
# 48 ms, steady per plan and instance. Fixed thresholds keep the memory for the next request
# (what `ops.process_tuning` does for the gateway and model servers). A deployed function sets
# the same variables in its configuration (ops/deploy/docker/Dockerfile.function).
# One arena: a function computes on one thread, and each extra arena (one per thread that ever
# allocated, up to 8 per core) would keep its own freed memory under these thresholds.
ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
    "MALLOC_ARENA_MAX": "1",
}


def function_bodies(
    endpoint: str,
    store_cfg: dict,
    *,
    master: tuple[str, int],
    worker: tuple[str, int],
    workers: int,
    timeout_s: float,
) -> list[dict]:
    """CreateFunction bodies for the master (name, memory_mb) and ``workers`` workers (worker
    ``j`` is "{name}-{j}") on the local runtime at ``endpoint``. Their environment names the
    platform and store (credentials included, as a deployed function's configuration would);
    events never carry them."""
    env = {
        **ALLOCATOR_ENV,
        "TIDEGATE_FUNCTION_THREADS": "1",
        PLATFORM_ENV: json.dumps({"kind": "local", "endpoint": endpoint}),
        STORE_ENV: json.dumps(store_cfg),
    }
    functions = [(master[0], MASTER_HANDLER, master[1])]
    functions += [(f"{worker[0]}-{j}", WORKER_HANDLER, worker[1]) for j in range(workers)]
    return [
        {
            "FunctionName": name,
            "Handler": handler,
            "MemorySize": memory_mb,
            "Timeout": int(timeout_s),
            "Environment": {"Variables": env},
        }
        for name, handler, memory_mb in functions
    ]


def memory_tensor_root(store_cfg: dict) -> str | None:
    """A fresh /dev/shm directory for tensors in flight when the store is a directory without
    its own tensor root: only the functions on this machine read them, so memory beats the
    data directory's disk. None when that does not apply."""
    if (
        store_cfg.get("kind", "dir") != "dir"
        or store_cfg.get("tensor_root")
        or not os.access("/dev/shm", os.W_OK)
    ):
        return None
    return tempfile.mkdtemp(prefix="tidegate-tensors-", dir="/dev/shm")
