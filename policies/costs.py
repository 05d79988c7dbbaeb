"""Price tables and the cost of one request on each path. Pure arithmetic, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PriceTable:
    """List prices (defaults: AWS us-east-1, x86, on demand, late 2026)."""

    vm_usd_per_hour: float = 0.17  # c6i.xlarge-class VM holding the full model
    vm_min_billed_s: float = 60.0  # per-second billing with a one-minute minimum
    fn_usd_per_gb_s: float = 0.0000166667  # Lambda x86
    fn_usd_per_request: float = 0.0000002
    fn_provisioned_usd_per_gb_s: float = 0.0000041667  # Lambda provisioned concurrency, held
    fn_billing_granularity_ms: int = 1
    store_put_usd: float = 0.000005  # S3 PUT/LIST per request
    store_get_usd: float = 0.0000004  # S3 GET per request
    queue_request_usd: float = 0.0000004  # SQS standard, per request
    queue_billing_chunk_bytes: int = 64 * 1024  # SQS bills each 64 KiB of a payload as a request


def vm_request_cost_usd(prices: PriceTable, service_ms: float, batch_size: int = 1) -> float:
    """A VM request's share of its replica's time: the batch's service time split over its rows."""
    return prices.vm_usd_per_hour / 3600.0 * max(service_ms, 0.0) / 1000.0 / max(batch_size, 1)


def vm_fleet_cost_usd(prices: PriceTable, seconds_up: float) -> float:
    """What one VM costs for ``seconds_up`` of uptime (per-second billing with a minimum)."""
    return prices.vm_usd_per_hour / 3600.0 * max(seconds_up, prices.vm_min_billed_s)


def billed_ms(prices: PriceTable, duration_ms: float) -> int:
    step = prices.fn_billing_granularity_ms
    return int(math.ceil(max(duration_ms, 0.0) / step) * step)


def function_cost_usd(prices: PriceTable, invocations: list[tuple[int, int]]) -> float:
    """Cost of function invocations given as (billed_ms, memory_mb) pairs."""
    gb_s = sum(ms / 1000.0 * mb / 1024.0 for ms, mb in invocations)
    return gb_s * prices.fn_usd_per_gb_s + len(invocations) * prices.fn_usd_per_request


def store_cost_usd(prices: PriceTable, puts: int, gets: int, queue_requests: int = 0) -> float:
    """Counted transport requests: object-store PUT/LIST and GET classes, and billed queue
    requests (SQS: each started 64 KiB of a payload is one, ``queue_requests``)."""
    return (
        puts * prices.store_put_usd
        + gets * prices.store_get_usd
        + queue_requests * prices.queue_request_usd
    )


def queue_requests(prices: PriceTable, payload_bytes: int) -> int:
    """Billed requests of one SQS call carrying ``payload_bytes`` (one per started 64 KiB)."""
    return max(1, math.ceil(max(payload_bytes, 0) / prices.queue_billing_chunk_bytes))


def queue_transfer_cost_usd(
    prices: PriceTable, nbytes: int, max_message_bytes: int = 256 * 1024
) -> float:
    """One tensor master <-> worker through SQS: its send and its receive, a share of its
    queue's create and delete (a leg's queue carries its input and output), and, past the
    message limit, a claim check (an object PUT and GET, the messages only pointers)."""
    lifecycle = 1  # CreateQueue + DeleteQueue of a leg's queue, over its two tensors
    if nbytes > max_message_bytes:
        return (
            (2 + lifecycle) * prices.queue_request_usd
            + prices.store_put_usd
            + (prices.store_get_usd)
        )
    return (2 * queue_requests(prices, nbytes) + lifecycle) * prices.queue_request_usd


def burst_request_cost_usd(
    prices: PriceTable, duration_ms: float, workers: int, memory_mb: int
) -> float:
    """Predicted cost of one fork-join request: the master for the whole duration, each worker
    for about the same (a conservative bound: workers finish before the master)."""
    invocation = (billed_ms(prices, duration_ms), memory_mb)
    return function_cost_usd(prices, [invocation] * (workers + 1))


def warm_instances_cost_usd(
    prices: PriceTable, instances: int, memory_mb: int, seconds: float
) -> float:
    """Keeping ``instances`` function instances warm for ``seconds`` (billed as provisioned
    concurrency is: GB-s held, whether or not they serve; their invocations are billed on top)."""
    return instances * memory_mb / 1024.0 * seconds * prices.fn_provisioned_usd_per_gb_s
