"""Prometheus metrics of the gateway (a registry per app, so tests and apps do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self._children: dict[tuple, object] = {}
        self._pending: dict[tuple, float] = {}  # (counter, labels) -> not yet added (see add)
        self._pending_sets: dict[tuple, float] = {}  # (gauge, labels) -> latest value
        self.in_flight_now = 0  # requests being served; the in-flight gauge reads it
        self.registry = CollectorRegistry()
        # declared in groups, in the order they appear on /metrics
        self._answer_metrics(self.registry)
        self._function_metrics(self.registry)
        self._routing_metrics(self.registry)
        self._warm_pool_metrics(self.registry)
        self._slo_metrics(self.registry)

    def _answer_metrics(self, r: CollectorRegistry) -> None:
        """What each answered request adds: count, latency, attributed cost."""
        self.requests = Counter(
            "tidegate_requests",
            'Requests answered, by code; refusals included (path="none": refused before routing).',
            ["tenant", "model", "path", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "tidegate_request_duration_seconds",
            "End-to-end inference latency at the gateway.",
            ["model", "path"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.cost = Counter(
            "tidegate_cost_usd",
            "Attributed cost of answered requests.",
            ["tenant", "path"],
            registry=r,
        )

    def _function_metrics(self, r: CollectorRegistry) -> None:
        """The burst path's functions: cold starts and billed time."""
        self.cold_starts = Counter(
            "tidegate_function_cold_starts",
            "Function cold starts on the burst path.",
            ["model"],
            registry=r,
        )
        self.function_billed = Counter(
            "tidegate_function_billed_seconds",
            "Billed function time on the burst path.",
            ["model"],
            registry=r,
        )

    def _routing_metrics(self, r: CollectorRegistry) -> None:
        """Load, the VM fleet and the routing decisions with the latencies behind them."""
        self.in_flight = Gauge("tidegate_requests_in_flight", "Requests being served.", registry=r)
        self.in_flight.set_function(lambda: self.in_flight_now)  # an int, not a locked gauge
        self.replicas = Gauge(
            "tidegate_vm_replicas",
            "VM replicas by state: desired (what "
            "the autoscaler asked for), ready, booting, draining.",
            ["state"],
            registry=r,
        )
        self.routed = Counter(
            "tidegate_routed_requests",
            "Routing decisions by path and reason.",
            ["model", "path", "reason"],
            registry=r,
        )
        self.predicted_latency = Gauge(
            "tidegate_predicted_latency_seconds",
            "Latest predicted latency of a path at the SLO's percentile (what routing decided on).",
            ["model", "path"],
            registry=r,
        )
        self.observed_latency = Gauge(
            "tidegate_observed_latency_seconds",
            "Observed latency of a path over the sliding window, at a percentile (50, 99).",
            # not "quantile": Prometheus reserves that label for summaries (promtool flags it)
            ["model", "path", "percentile"],
            registry=r,
        )

    def _warm_pool_metrics(self, r: CollectorRegistry) -> None:
        """Function instances the autoscaler keeps warm, and their cost."""
        self.warm_functions = Gauge(
            "tidegate_warm_functions", "Function instances the autoscaler keeps warm.", registry=r
        )
        self.warm_cost = Counter(
            "tidegate_warm_functions_cost_usd",
            "What keeping function instances warm cost.",
            registry=r,
        )

    def _slo_metrics(self, r: CollectorRegistry) -> None:
        """Per-tenant SLO attainment and budgets, and control-loop failures."""
        self.slo_requests = Counter(
            "tidegate_slo_requests",
            "Infer answers counted for SLO attainment (4xx excluded), per tenant.",
            ["tenant", "model"],
            registry=r,
        )
        self.slo_met = Counter(
            "tidegate_slo_met",
            "Infer answers within the tenant's SLO.",
            ["tenant", "model"],
            registry=r,
        )
        self.tenant_budget = Gauge(
            "tidegate_tenant_daily_budget_usd",
            "Each tenant's daily budget (alerts compare spend with it).",
            ["tenant"],
            registry=r,
        )
        self.autoscaler_errors = Counter(
            "tidegate_control_loop_errors",
            "Control-loop ticks that failed (logged; the loop carries on).",
            registry=r,
        )

    def child(self, metric, *labels: str):
        """``metric.labels(*labels)``, looked up once: prometheus_client's ``labels()`` validates
        and locks on every call (a few percent of the gateway's CPU per request)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def add(self, counter: Counter, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """``counter{labels} += amount``, folded into the counter when metrics are rendered.
        The request path adds to a dict (one entry per label set, so it does not grow with
        traffic) instead of paying prometheus_client's checks and lock six times a request."""
        key = (counter, labels)
        pending = self._pending
        pending[key] = pending.get(key, 0.0) + amount

    def set_later(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        """``gauge{labels} = value`` as of the next render (the latest value wins)."""
        self._pending_sets[(gauge, labels)] = value

    def flush(self) -> None:
        """Fold what ``add`` and ``set_later`` kept into the Prometheus metrics."""
        pending, self._pending = self._pending, {}
        for (counter, labels), amount in pending.items():
            self.child(counter, *labels).inc(amount)
        sets, self._pending_sets = self._pending_sets, {}
        for (gauge, labels), value in sets.items():
            self.child(gauge, *labels).set(value)

    def render(self) -> bytes:
        self.flush()
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated:
    """A registry's metrics without prometheus_client's ``X_created`` samples: in the text
    format each counter and histogram got a second series, a gauge of its creation time (a
    Unix time without ``_timestamp_seconds`` in its name, which no panel or alert reads)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        for family in self.registry.collect():  # (fresh objects each call: ours to trim)
            created = family.name + "_created"
            family.samples = [s for s in family.samples if s.name != created]
            yield family
