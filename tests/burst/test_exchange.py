"""A burst request's data at the service: store failures are clean 503s, and a failed cleanup
is logged without hiding the request's own outcome."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from burst.exchange import BurstUnavailable, cleanup, upload_inputs
from burst.store.base import StoreError
from burst.store.memory import MemoryStore


class BrokenStore(MemoryStore):
    """Puts and deletes fail as an object store that is down does."""

    async def put(self, key: str, data: bytes) -> None:
        raise StoreError(f"s3 put bucket/{key} failed after retries: 503 ServiceUnavailable")

    async def delete_prefix(self, prefix: str) -> int:
        raise StoreError("s3 list failed after retries: connection refused")


CFG = SimpleNamespace(inputs=[SimpleNamespace(name="input")])
PLAN = SimpleNamespace(inline_limit_bytes=8192)  # the 40 KB input goes through the store


async def test_a_store_failure_while_uploading_inputs_is_a_503_with_retry_after():
    x = {"input": np.ones((1, 10_000), dtype=np.float32)}
    with pytest.raises(BurstUnavailable) as err:
        await upload_inputs(CFG, x, BrokenStore(), "r1", PLAN)
    assert "cannot hand the inputs" in str(err.value) and "503" in str(err.value)
    assert err.value.retry_after_s >= 1
    small = {"input": np.ones((1, 4), dtype=np.float32)}  # inline: the store is not needed
    refs = await upload_inputs(CFG, small, BrokenStore(), "r2", PLAN)
    assert "b64" in refs[0]


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_failed_cleanup_is_logged_and_does_not_replace_the_outcome():
    async def request():
        try:
            raise BurstUnavailable("burst master failed (OutOfMemory)")
        finally:
            await cleanup(BrokenStore(), "r3")

    recorder, logger = Recorder(), logging.getLogger("tidegate.burst")
    logger.addHandler(recorder)
    try:
        with pytest.raises(BurstUnavailable, match="OutOfMemory"):
            await request()
    finally:
        logger.removeHandler(recorder)
    text = "\n".join(recorder.lines)
    assert "could not delete req/r3/" in text and "resp/r3/" in text
