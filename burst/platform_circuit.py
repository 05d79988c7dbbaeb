"""The function platform's circuit breaker: burst requests pause while the platform is failing.

One circuit for the whole platform. Transport and service errors count against it; a function
that fails counts for it (the platform answered). Platform faults and throttling ask the client
to retry soon; a failing function does not.
"""

from __future__ import annotations

from burst.exchange import BurstUnavailable
from burst.faas.base import InvokeError, InvokeErrorKind
from vmpool.breaker import Breakers

_PLATFORM = "platform"  # the breaker's one circuit
# the platform itself failing (not the function): these count against the circuit
_PLATFORM_FAULTS = {InvokeErrorKind.TRANSPORT, InvokeErrorKind.SERVICE_ERROR}


class PlatformCircuit:
    def __init__(self, *, failure_threshold: int = 3, open_s: float = 5.0):
        self._breakers = Breakers(failure_threshold=failure_threshold, open_s=open_s)

    @property
    def open_s(self) -> float:
        return self._breakers.open_s

    def allows(self) -> bool:
        """A request may go to the platform now (closed, or open with its trial due)."""
        return self._breakers.allows(_PLATFORM)

    def usable(self) -> bool:
        """Closed, or open but due a trial request (what readiness reports)."""
        return not self._breakers.is_open(_PLATFORM) or self._breakers.allows(_PLATFORM)

    def forget(self) -> None:
        """A new platform (the local runtime restarted): its predecessor's failures are moot."""
        self._breakers.forget(_PLATFORM)

    async def invoke(self, invoker, function: str, payload: bytes):
        """Invoke the master ``function``; a failure is a BurstUnavailable, counted as above."""
        self._breakers.on_attempt(_PLATFORM)
        try:
            result = await invoker.invoke(function, payload)
        except InvokeError as exc:
            if exc.kind in _PLATFORM_FAULTS:
                self._breakers.on_failure(_PLATFORM)
            else:
                self._breakers.on_success(_PLATFORM)  # the platform answered; the function failed
            retry = 1.0 if exc.kind in (_PLATFORM_FAULTS | {InvokeErrorKind.THROTTLED}) else None
            raise BurstUnavailable(
                f"burst master failed ({exc.kind}): {exc}", retry_after_s=retry
            ) from exc
        self._breakers.on_success(_PLATFORM)
        return result
