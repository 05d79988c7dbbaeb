"""The SQS transfer fit of a profile: send + receive time of a tensor against its bytes, through
a real queue (moto's server in tests, the deployment's SQS in production), as a stage leg moves
one: a queue made by the first send, the bytes in a message attribute up to the message limit,
a claim check in the backing store past it. ``tidegate profile --sqs-endpoint URL`` adds it to
the profile as ``transfer["sqs"]``; the planner prices and times the queue transport with it
(without it, the queue is timed like S3).

Measured unsealed: AES-GCM adds about 1 ms per MB on this kind of core (docs/async.md), small
beside a queue round trip.
"""

from __future__ import annotations

import uuid

from policies.profile import TransferFit

# both sides of SQS's 256 KiB message limit: the fit spans inline messages and claim checks
QUEUE_SIZES = [4 << 10, 64 << 10, 192 << 10, 1 << 20, 4 << 20]


def sqs_store_config(
    endpoint_url: str | None,
    region: str = "us-east-1",
    backing: dict | None = None,
    credentials: dict | None = None,
) -> dict:
    """An unsealed SQS store config for measuring, with a queue prefix of its own (so its
    queues never meet a deployment's); ``backing`` holds claim checks (default: a dir)."""
    return {
        "kind": "sqs",
        "encrypt": False,
        "queue_prefix": f"tgprof{uuid.uuid4().hex[:8]}-",
        "endpoint_url": endpoint_url,
        "region": region,
        "backing": backing or {"kind": "dir"},
        **(credentials or {}),
    }


async def measure_sqs_fit(
    store_cfg: dict, reps: int, sizes: list[int] | None = None
) -> TransferFit:
    """The fit through the SQS store ``store_cfg`` (its queues are deleted afterwards)."""
    from burst.store.factory import make_store
    from ops import profiler

    store = make_store(store_cfg)
    try:
        # untimed: the client's first call opens its connection pool (1.4 s on moto here)
        warm = f"req/profile-{uuid.uuid4().hex[:12]}/warm/0/x"
        await store.put(warm, b"x")
        await store.get(warm)
        await store.delete_prefix(warm.rsplit("/", 3)[0] + "/")
        fixed_ms, ms_per_mb = await profiler.transfer_fit(
            store,
            False,
            sizes or QUEUE_SIZES,
            reps,
            transport="queue",
            prefix=f"req/profile-{uuid.uuid4().hex[:12]}/",
        )
    finally:
        await store.close()
    return TransferFit(fixed_ms, ms_per_mb)
