"""An SQS or S3 endpoint that never answers fails in seconds, with one line, not in minutes.

Two kinds of silence on loopback (no fixed port): a listener whose backlog is full, so a connect
never completes (a firewalled or dead address), and one that takes connections and never says a
word (a hung server). botocore's defaults wait 60 s for each, per attempt: ``tidegate profile
--sqs-endpoint`` against such an address took ~2 min before it said anything.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from burst.store import StoreError
from burst.store.config import SqsStore as SqsSettings
from burst.store.factory import make_store
from burst.store.s3 import S3Store
from burst.store.sqs import SqsStore

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture
def unconnectable():
    """An endpoint whose connects never complete: a listener that accepts nothing, its one-slot
    backlog already taken, so the kernel drops further SYNs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.3)
    with pytest.raises(OSError):  # (the premise: this address takes no connection)
        probe.connect(("127.0.0.1", port))
    probe.close()
    yield f"http://127.0.0.1:{port}"
    for s in [*fillers, server]:
        s.close()


@pytest.fixture
def mute():
    """An endpoint that takes connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def take() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for s in [*held, server]:
        s.close()


async def _fails_fast(store, call, limit_s: float) -> tuple[str, float]:
    """(the error's text, seconds it took); the test fails at ``limit_s`` rather than hang."""
    start = time.monotonic()
    try:
        with pytest.raises(StoreError) as err:
            await asyncio.wait_for(call(store), timeout=limit_s)
    finally:
        await store.close()
    return str(err.value), time.monotonic() - start


async def test_sqs_from_its_settings_fails_in_its_connect_timeout(unconnectable):
    cfg = SqsSettings(
        kind="sqs",
        endpoint_url=unconnectable,
        connect_timeout_s=0.3,
        max_attempts=2,
        backing={"kind": "dir", "root": "/nonexistent-unused"},
        encrypt=False,
        **CREDENTIALS,
    ).as_config()
    cfg["backing"] = {"kind": "memory"}
    store = make_store(cfg)
    text, took = await _fails_fast(store, lambda s: s.put("req/r1/s0/w0/x", b"x"), 10)
    assert took < 4.0  # 2 attempts x 0.3 s and a backoff; botocore alone: 2 x 60 s
    assert "\n" not in text and "timeout" in text.lower() and unconnectable in text


async def test_sqs_that_never_answers_fails_in_its_read_timeout(mute):
    store = SqsStore(
        make_store({"kind": "memory"}),
        endpoint_url=mute,
        max_attempts=2,
        read_timeout_s=0.3,
        **CREDENTIALS,
    )
    text, took = await _fails_fast(store, lambda s: s.put("req/r1/s0/w0/x", b"x"), 10)
    assert took < 4.0
    assert "\n" not in text and "timeout" in text.lower()


async def test_s3_fails_in_its_connect_timeout(unconnectable):
    store = S3Store(
        "bucket", endpoint_url=unconnectable, connect_timeout_s=0.3, max_attempts=2, **CREDENTIALS
    )
    text, took = await _fails_fast(store, lambda s: s.get("plans/p/READY"), 10)
    assert took < 4.0
    assert "\n" not in text and "timeout" in text.lower() and "bucket" in text


def test_profile_sqs_check_against_a_dead_address_is_one_line_in_seconds(
    unconnectable, monkeypatch
):
    """What an operator sees: ``tidegate profile --sqs-endpoint`` refuses before measuring."""
    for name, value in CREDENTIALS.items():  # (without any, botocore refuses before connecting)
        monkeypatch.setenv(name.upper(), value)
    from ops.cli import CliError
    from ops.commands.profile_measure import check_sqs

    start = time.monotonic()
    with pytest.raises(CliError) as err:
        check_sqs(unconnectable, "us-east-1", lambda _: None)
    took = time.monotonic() - start
    assert took < 12.0, took  # its 2 attempts x 3 s; was ~2 min
    text = str(err.value)
    assert "\n" not in text and unconnectable in text and "nothing measured" in text
