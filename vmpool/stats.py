"""Per-model inference statistics in Triton's shape (``GET /v2/models/{m}/stats``).

``tritonclient``'s ``get_inference_statistics`` reads this document. The model server fills in
batch executions from its inference thread; the gateway counts requests end to end.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_dict(self) -> dict:
        return {"count": self.count, "ns": self.ns}


@dataclass
class ModelStats:
    name: str
    version: str
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0  # rows inferred
    execution_count: int = 0  # model executions (a batch counts once)
    last_inference_ms: int = 0  # wall-clock time of the last answer, ms since the epoch
    batches: dict[int, Duration] = field(default_factory=dict)  # batch rows -> compute time
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def request_done(self, ok: bool, duration_ns: int, rows: int = 0) -> None:
        with self.lock:
            (self.success if ok else self.fail).add(duration_ns)
            if ok:
                self.inference_count += rows
                self.last_inference_ms = int(time.time() * 1000)

    def batch_done(self, rows: int, compute_ns: int, queue_ns: int = 0, requests: int = 1) -> None:
        """One model execution of ``rows`` rows for ``requests`` requests."""
        with self.lock:
            self.execution_count += 1
            self.compute_infer.add(compute_ns, requests)
            if queue_ns:
                self.queue.add(queue_ns, requests)
            self.batches.setdefault(rows, Duration()).add(compute_ns)

    def to_dict(self) -> dict:
        with self.lock:
            return {
                "name": self.name,
                "version": self.version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.to_dict(),
                    "fail": self.fail.to_dict(),
                    "queue": self.queue.to_dict(),
                    "compute_input": self.compute_input.to_dict(),
                    "compute_infer": self.compute_infer.to_dict(),
                    "compute_output": self.compute_output.to_dict(),
                    "cache_hit": Duration().to_dict(),
                    "cache_miss": Duration().to_dict(),
                },
                "batch_stats": [
                    {
                        "batch_size": rows,
                        "compute_input": Duration().to_dict(),
                        "compute_infer": d.to_dict(),
                        "compute_output": Duration().to_dict(),
                    }
                    for rows, d in sorted(self.batches.items())
                ],
            }


class StatsRegistry:
    """The statistics of every model one server answers for."""

    def __init__(self) -> None:
        self._models: dict[str, ModelStats] = {}

    def model(self, name: str, version: str = "1") -> ModelStats:
        stats = self._models.get(name)
        if stats is None:
            stats = self._models[name] = ModelStats(name, version)
        return stats

    def forget(self, name: str) -> None:
        self._models.pop(name, None)

    def document(self, models: list[tuple[str, str]]) -> dict:
        """``{"model_stats": [...]}`` for (name, version) pairs; unused models report zeros."""
        return {
            "model_stats": [
                (self._models.get(name) or ModelStats(name, version)).to_dict()
                for name, version in models
            ]
        }
