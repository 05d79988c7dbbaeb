"""No configured secret in any invocation event, on every path an event takes (issue 7's audit,
s13): the cold first request, warm ones, a worker invocation retried after throttling, and a
straggling worker hedged; with S3 access keys, and with an OSS AccessKey, in the store config.
Every request the function runtime receives is captured (a recording proxy in front of it)."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
import torch

from burst.service import BurstService
from tests.support.fault_proxy import FaultProxy
from tests.support.oss_server import OSSServer
from tests.support.s3_server import S3_TEST_REGION
from tests.support.s3_server import s3_bucket, s3_endpoint  # noqa: F401 (fixtures)
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo
from vmpool.zoo import example_input

pytestmark = pytest.mark.slow

KEY_ID, SECRET = "AKIDA7BNEVERINANEVENT", "a7b/s3cr3t+never-in-an-event"
WORKER = "tidegate-worker-512mb-"


class WorkerFaults(FaultProxy):
    """Records every request; injected faults apply to worker invocations only, and
    ``throttle_next`` answers the next one as Lambda throttles (429 TooManyRequestsException)."""

    throttle_next = 0

    def _next_fault(self, method: str, path: str, body: bytes):
        if WORKER in path and path.endswith("/invocations"):
            return super()._next_fault(method, path, body)
        with self._lock:
            self.requests += 1
            self.seen.append((method, path, body))
        return None

    def _take_throttle(self, path: str) -> bool:
        with self._lock:
            if self.throttle_next and WORKER in path and path.endswith("/invocations"):
                self.throttle_next -= 1
                return True
        return False

    def _handler(self):
        proxy, base = self, super()._handler()

        class Handler(base):
            def _forward(self):
                if not proxy._take_throttle(self.path):
                    return super()._forward()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append((self.command, self.path, body))
                error = b'{"Type": "User", "message": "Rate Exceeded."}'
                self.send_response(429)
                self.send_header("x-amzn-ErrorType", "TooManyRequestsException")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)

        return Handler


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    repo = tmp_path_factory.mktemp("a7b-secrets")
    export_zoo("mlp", repo)
    x = example_input("mlp").numpy()
    with torch.inference_mode():
        ref = load_artifact(repo, "mlp").load_module()(torch.from_numpy(x)).numpy()
    return repo, x, ref


@pytest.fixture
def oss():
    server = OSSServer({KEY_ID: SECRET}).start()
    yield server
    server.stop()


def _store(kind: str, request) -> dict:
    if kind == "s3":
        return {
            "kind": "s3",
            "bucket": request.getfixturevalue("s3_bucket"),
            "endpoint_url": request.getfixturevalue("s3_endpoint"),
            "region": S3_TEST_REGION,
            "aws_access_key_id": KEY_ID,
            "aws_secret_access_key": SECRET,
        }
    server = request.getfixturevalue("oss")
    return {
        "kind": "oss",
        "bucket": "tidegate",
        "endpoint": server.endpoint,
        "access_key_id": KEY_ID,
        "access_key_secret": SECRET,
    }


def _close(a, b) -> bool:
    return float(np.abs(a - b).max()) <= 1e-5 * max(1.0, float(np.abs(b).max()))


@pytest.mark.parametrize("kind", ["s3", "oss"])
def test_no_secret_in_any_event_cold_warm_retried_or_hedged(mlp, tmp_path, request, kind):
    from burst.faas.local_runtime import LocalFunctionRuntime

    repo, x, ref = mlp
    runtime = LocalFunctionRuntime(concurrency=8)
    runtime.start_in_thread()
    proxy = WorkerFaults(runtime.endpoint).start()
    svc = BurstService(
        repo,
        platform={"kind": "local", "endpoint": proxy.endpoint},
        store=_store(kind, request),
        memory_mb=512,
        split="output",
        transport="store",  # the legs' tensors through the store whose keys are configured
        max_workers=2,
        function_timeout_s=120,
        log_dir=tmp_path / "logs",
    )

    async def run():
        await svc.start()
        answers = [await svc.infer("mlp", {"input": x}, workers=2) for _ in range(4)]
        proxy.throttle_next = 1  # throttled: the master invokes the worker again
        answers.append(await svc.infer("mlp", {"input": x}, workers=2))
        proxy.delay_next(1, 5.0)  # a straggler past 4x the legs' median: hedged
        answers.append(await svc.infer("mlp", {"input": x}, workers=2))
        return answers

    try:
        answers = asyncio.run(run())
    finally:
        asyncio.run(svc.close())
        proxy.stop()
        runtime.stop_thread()
    assert all(_close(a.outputs["output"], ref) for a in answers)
    assert answers[0].cold_starts >= 2 and answers[0].report.hedged == 0
    events = [body for _, path, body in proxy.seen if path.endswith("/invocations")]
    worker_events = [
        orjson.loads(body)
        for _, path, body in proxy.seen
        if WORKER in path and path.endswith("/invocations")
    ]
    assert len(worker_events) >= 6 + 2  # one a request, the retried one and the hedge
    assert answers[-1].report.hedged == 1
    assert any(e.get("attempt") == 2 for e in worker_events)  # the hedge's own event
    for body in events:
        assert KEY_ID.encode() not in body and SECRET.encode() not in body
        for word in (b"aws_", b"access_key", b"endpoint", b"secret"):
            assert word not in body, (word, body[:300])
