"""Prometheus metrics of one model server, on its own registry (never the process-global one)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class ModelServerMetrics:
    """The series a model server exports; thread-safe (the inference threads observe batches)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue_depth = Gauge(
            "tidegate_model_queue_depth",
            "Requests waiting to be batched.",
            ["model"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "tidegate_model_in_flight",
            "Requests accepted and not yet answered.",
            ["model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "tidegate_model_batch_size",
            "Rows per executed batch.",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "tidegate_model_inference_seconds",
            "Model execution time per batch.",
            ["model"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "tidegate_model_request_seconds",
            "Infer request time in the server, body read to response built.",
            ["model"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "tidegate_model_requests",
            "Infer requests answered, by HTTP status.",
            ["model", "code"],
            registry=self.registry,
        )

    def track_model(
        self, model: str, queue_depth: Callable[[], float], in_flight: Callable[[], float]
    ) -> Callable[[int, float], None]:
        """Export the model's live gauges; returns the per-batch observer for its Batcher."""
        self.queue_depth.labels(model).set_function(queue_depth)
        self.in_flight.labels(model).set_function(in_flight)
        batch_size = self.batch_size.labels(model)
        inference_seconds = self.inference_seconds.labels(model)

        def on_batch(rows: int, seconds: float) -> None:
            batch_size.observe(rows)
            inference_seconds.observe(seconds)

        return on_batch

    def request_done(self, model: str, code: int, seconds: float | None = None) -> None:
        self.requests.labels(model, str(code)).inc()
        if seconds is not None:
            self.request_seconds.labels(model).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
