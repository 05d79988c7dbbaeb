"""What a model server says about the batch each answer rode in, on the answer's headers.

The gateway learns its VM batch-time curve (service time by rows per batch) from these. Learnt
from end-to-end latencies instead, the curve counts the wait for a batch already running on
arrival as service time: on the ``delay`` model that made b(2) 2.08 s against a true 1.2 s.
The inference thread knows each batch's rows and how long it held the replica, exactly.

Two headers (not the JSON parameters) so that the replica client reads them without decoding
the body, on binary and JSON answers alike; a server that does not send them (an older replica,
another OIP server) reports nothing and the gateway falls back to its own estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

BATCH_ROWS_HEADER = "x-tidegate-batch-rows"
BATCH_SERVICE_MS_HEADER = "x-tidegate-batch-service-ms"
_ROWS_KEY = BATCH_ROWS_HEADER.encode()
_SERVICE_KEY = BATCH_SERVICE_MS_HEADER.encode()
# a report beyond these is not a batch (a garbled header must not poison the curve)
_MAX_ROWS = 1 << 20
_MAX_SERVICE_MS = 24 * 3600 * 1000.0


@dataclass(frozen=True, slots=True)
class BatchReport:
    """The batch one request was served in: all its rows (every request's) and the time it
    held the replica's inference thread (stacking inputs, the forward, splitting outputs)."""

    rows: int
    service_ms: float

    def headers(self) -> list[tuple[bytes, bytes]]:
        """As ASGI response headers (lower-case names)."""
        return [
            (_ROWS_KEY, str(self.rows).encode()),
            (_SERVICE_KEY, f"{self.service_ms:.3f}".encode()),
        ]


def parse_batch_report(headers: dict[bytes, bytes]) -> BatchReport | None:
    """The report in ``headers`` (lower-case byte names, as ``vmpool.http1`` gives them), or
    None when there is none or it does not parse as a batch."""
    rows_raw = headers.get(_ROWS_KEY)
    service_raw = headers.get(_SERVICE_KEY)
    if rows_raw is None or service_raw is None:
        return None
    try:
        rows, service_ms = int(rows_raw), float(service_raw)
    except ValueError:
        return None
    if not (0 < rows <= _MAX_ROWS and 0.0 <= service_ms <= _MAX_SERVICE_MS):
        return None  # NaN fails the comparison too
    return BatchReport(rows, service_ms)
