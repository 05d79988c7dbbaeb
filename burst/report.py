"""What the master reports about one request: per stage timings, billing and store requests.

Travels as JSON in the master's result (``MasterReport.to_json``/``from_json``); the service and
the benchmarks read the dataclasses, never the dict by string keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class LegBill:
    """One worker invocation's bill (the platform's REPORT line)."""

    billed_ms: int
    memory_mb: int
    cold_start: bool = False
    max_memory_used_mb: int = 0
    duration_ms: float = 0.0
    init_ms: float = 0.0


@dataclass
class StageReport:
    index: int
    split: str
    wall_ms: float
    compute_ms: float  # the slowest leg's compute plus stitching (serial: all of it)
    comm_ms: float = 0.0  # the rest of the stage's wall time
    workers: int = 0
    invoke_ms: float = 0.0
    master_transfer_ms: float = 0.0
    worker_compute_ms: list[float] = field(default_factory=list)
    worker_transfer_ms: list[float] = field(default_factory=list)
    worker_load_ms: list[float] = field(default_factory=list)
    billing: list[LegBill] = field(default_factory=list)  # remote legs only
    store_puts: int = 0
    store_gets: int = 0
    queue_requests: int = 0  # billed SQS requests (the sqs transport)
    hedged: int = 0  # legs answered by a hedge (a second invocation of a straggler)
    # where a round's time goes, per remote leg: master's send -> the worker's handler starts,
    # and the worker's handler ends -> the master holds its answer (one machine's clock)
    hop_in_ms: list[float] = field(default_factory=list)
    hop_out_ms: list[float] = field(default_factory=list)
    own_start_ms: float = 0.0  # the master's own leg, from the stage's start
    send_ms: float = 0.0  # the master writing the remote legs' inputs (part of own_start_ms)
    # the master waiting on its remote legs once its own leg is done: ~0 when its own leg is
    # the stage's slowest (then a remote answer's hop_out_ms holds its wait for the master)
    own_wait_ms: float = 0.0

    @property
    def cold_starts(self) -> int:
        return sum(1 for b in self.billing if b.cold_start)


@dataclass
class MasterReport:
    plan_id: str
    request_id: str
    wall_ms: float
    compute_ms: float
    comm_ms: float
    stages: list[StageReport] = field(default_factory=list)
    store_puts: int = 0  # the workers' and the master's store requests
    store_gets: int = 0
    queue_requests: int = 0
    # weight blobs the master read from the store for this request (its own and its legs'):
    # 0 once warm, unless its weight cache evicted them (it logs which plan evicted which)
    weights_loaded: int = 0

    @property
    def communication_share(self) -> float:
        return self.comm_ms / self.wall_ms if self.wall_ms else 0.0

    @property
    def billing(self) -> list[LegBill]:
        return [b for s in self.stages for b in s.billing]

    @property
    def invocations(self) -> int:
        return len(self.billing)

    @property
    def cold_starts(self) -> int:
        return sum(1 for b in self.billing if b.cold_start)

    @property
    def hedged(self) -> int:
        return sum(s.hedged for s in self.stages)

    @property
    def worker_gb_seconds(self) -> float:
        return sum(b.billed_ms / 1000.0 * b.memory_mb / 1024.0 for b in self.billing)

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "communication_share": self.communication_share,
            "invocations": self.invocations,
            "cold_starts": self.cold_starts,
        }

    @classmethod
    def from_json(cls, raw: dict) -> "MasterReport":
        """Raises KeyError/TypeError on a malformed report (the caller says what failed)."""
        stages = [
            StageReport(
                **{
                    **_known(StageReport, s),
                    "billing": [LegBill(**_known(LegBill, b)) for b in s.get("billing", [])],
                }
            )
            for s in raw.get("stages", [])
        ]
        return cls(**{**_known(cls, raw), "stages": stages})


def _known(cls, raw: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}
