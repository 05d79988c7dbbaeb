"""What ``policies.perf`` prices and returns: node work, stage candidates, where plans run, and
the additive estimates and plan predictions. Pure data (``policies.perf`` re-exports it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from policies.costs import PriceTable


@dataclass(frozen=True)
class NodeWork:
    name: str
    op: str
    macs: int  # at the plan's batch
    # wall time it waits rather than computes, at the plan's batch (the ``delay`` load-test
    # model's op sleeps: no MACs, yet 50 ms + 5 ms a row); added where no profile measured it
    wait_ms: float = 0.0
    # bytes of the activations it reads and writes, at the plan's batch, and of the weights it
    # reads: the bytes-aware compute fit prices memory-bound nodes by them (0: MACs only)
    act_bytes: int = 0
    weight_bytes: int = 0
    # sequential steps a recurrent node runs (time steps x layers x directions), each a few
    # small kernels; 0 for any other node
    steps: int = 0
    # bytes a recurrent node reads again every step (its hidden-to-hidden matrices, from the
    # core's cache where they fit it: memory-equivalent bytes); 0 for any other node
    reread_bytes: int = 0


@dataclass(frozen=True)
class Candidate:
    """One possible stage: nodes ``[start, end)`` run ``split`` on ``workers`` legs."""

    start: int
    end: int
    split: str  # "serial" | "spatial" | "output"
    workers: int  # 0 for serial
    nodes: tuple[str, ...]
    macs: int
    leg_macs: tuple[int, ...]
    bytes_in: tuple[int, ...]
    bytes_out: tuple[int, ...]
    weight_bytes: int  # the largest remote leg's (serial: the master's for these nodes)
    master_weight_bytes: int = 0  # leg 0's, which the master computes itself
    worker_weight_bytes: int = 0  # leg 1's (the first remote leg: the largest part)
    transport: str | None = None  # inline | store | queue | auto; None: the deployment's
    lead: int = 0  # rows or channels leg 0 (the master's) has beyond an even split
    # convs on packed weights (``burst.packed_conv``): faster, for a second copy of their
    # weights in the function that runs them (the master's, worker 1's: ``policies.packing``)
    packed: bool = True
    master_pack_bytes: int = 0
    worker_pack_bytes: int = 0


@dataclass(frozen=True)
class Deployment:
    """Where plans run: function sizes, how tensors travel, and prices."""

    memory_mb: int = 1024
    master_memory_mb: int = 1024
    transport: str = "auto"  # auto | inline | store | queue | per-stage (the planner picks)
    store_kind: str = "dir"  # the store transfers go through: dir | s3 | oss | memory | sqs
    object_store_kind: str = "s3"  # with sqs: the object store beside the queues ("store")
    max_payload_bytes: int = 6 * 1024 * 1024  # an invocation's payload limit (Lambda's)
    inline_limit_bytes: int = 64 * 1024
    prices: PriceTable = PriceTable()
    input_bytes: int = 0  # the request's tensors, gateway -> master
    output_bytes: int = 0


@dataclass(frozen=True)
class Estimate:
    """Mean and variance of a time, and its cost (all additive over stages)."""

    mean_ms: float
    var_ms2: float
    cost_usd: float

    def __add__(self, other: "Estimate") -> "Estimate":
        return Estimate(
            self.mean_ms + other.mean_ms,
            self.var_ms2 + other.var_ms2,
            self.cost_usd + other.cost_usd,
        )


@dataclass(frozen=True)
class PlanPrediction:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    var_ms2: float
    cost_usd: float
    stages: tuple[Estimate, ...]

    def percentile_ms(self, q: float) -> float:
        return percentile_ms(self.mean_ms, self.var_ms2, q)


def percentile_ms(mean_ms: float, var_ms2: float, q: float) -> float:
    """The q-quantile of the plan latency (normal approximation of a sum of stages)."""
    if q == 0.5:
        return mean_ms
    return mean_ms + NormalDist().inv_cdf(q) * math.sqrt(max(var_ms2, 0.0))
