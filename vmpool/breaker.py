"""A circuit breaker per replica: after ``failure_threshold`` failures in a row the replica gets
no traffic for ``open_s``; then one trial request decides (half-open)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Circuit:
    failures: int = 0
    open_until_s: float = 0.0
    trial_in_flight: bool = False


class Breakers:
    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        open_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def allows(self, replica_id: str) -> bool:
        c = self._circuits.get(replica_id)
        if c is None or c.failures < self.failure_threshold:
            return True
        # open until the cool-off passes, then half-open: one trial at a time
        return self._clock() >= c.open_until_s and not c.trial_in_flight

    def on_attempt(self, replica_id: str) -> None:
        c = self._circuits.get(replica_id)
        if c is not None and c.failures >= self.failure_threshold:
            c.trial_in_flight = True

    def on_success(self, replica_id: str) -> None:
        self._circuits.pop(replica_id, None)

    def on_failure(self, replica_id: str) -> None:
        c = self._circuits.setdefault(replica_id, _Circuit())
        c.failures += 1
        c.trial_in_flight = False
        if c.failures >= self.failure_threshold:
            c.open_until_s = self._clock() + self.open_s

    def on_other(self, replica_id: str) -> None:
        """An attempt that ended neither in an answer nor a replica failure (it timed out, or
        its caller went away): a half-open circuit lets the next request be its trial. Kept
        taken, the circuit let no request through again (the replica out for good)."""
        c = self._circuits.get(replica_id)
        if c is not None:
            c.trial_in_flight = False

    def is_open(self, replica_id: str) -> bool:
        c = self._circuits.get(replica_id)
        return c is not None and c.failures >= self.failure_threshold

    def forget(self, replica_id: str) -> None:
        self._circuits.pop(replica_id, None)
