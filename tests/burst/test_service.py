"""The burst service over real processes: the local function runtime (supervised), function
instances, the directory or S3 store. Admission instead of throttling, restart after a crash,
no secrets in any invocation."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import orjson
import pytest
import torch

from burst.service import BurstService, BurstUnavailable
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo
from vmpool.zoo import example_input

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlp_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("burst-repo")
    export_zoo("mlp", repo)
    x = example_input("mlp").numpy()
    with torch.inference_mode():
        ref = load_artifact(repo, "mlp").load_module()(torch.from_numpy(x)).numpy()
    return repo, x, ref


def _service(repo, tmp_path, **kw) -> BurstService:
    kw = {
        "platform": {"kind": "local"},
        "store": {"kind": "dir", "root": str(tmp_path / "objects")},
        "memory_mb": 512,
        "function_timeout_s": 120,
        "log_dir": tmp_path / "logs",
        "split": "output",
        "max_workers": 4,
        **kw,
    }
    return BurstService(repo, **kw)


async def _until(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _close(a, b) -> bool:
    return float(np.abs(a - b).max()) <= 1e-5 * max(1.0, float(np.abs(b).max()))


async def test_eight_clients_on_two_worker_plans_queue_for_capacity_instead_of_throttling(
    mlp_repo, tmp_path
):
    repo, x, ref = mlp_repo
    # 6 instances: two requests (master + 2 workers each) at a time; 8 arrive at once
    svc = _service(repo, tmp_path, concurrency=6)
    await svc.start()
    try:
        answers = await asyncio.gather(
            *(svc.infer("mlp", {"input": x}, workers=2) for _ in range(8)), return_exceptions=True
        )
        failures = [a for a in answers if isinstance(a, BaseException)]
        assert not failures, failures[:1]
        assert all(_close(a.outputs["output"], ref) for a in answers)
        assert len({len(a.invocations) for a in answers}) == 1 and len(answers[0].invocations) >= 3
        assert svc.free_concurrency() == 6
    finally:
        await svc.close()


async def test_past_the_queue_bound_a_request_is_refused_at_once_with_retry_after(
    mlp_repo, tmp_path
):
    repo, x, _ = mlp_repo
    svc = _service(repo, tmp_path, concurrency=3, max_waiting=0)
    await svc.start()
    try:
        await svc.infer("mlp", {"input": x}, workers=2)  # plan prepared, instances warm
        results = await asyncio.gather(
            *(svc.infer("mlp", {"input": x}, workers=2) for _ in range(3)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, BurstUnavailable)]
        assert len(refused) == 2 and all(r.retry_after_s >= 1 for r in refused)
        assert "capacity" in str(refused[0])
    finally:
        await svc.close()


async def test_a_killed_runtime_is_restarted_and_readiness_says_so_meanwhile(mlp_repo, tmp_path):
    repo, x, ref = mlp_repo
    svc = _service(repo, tmp_path, concurrency=6)
    await svc.start()
    try:
        first = await svc.infer("mlp", {"input": x}, workers=2)
        assert svc.ready() and _close(first.outputs["output"], ref)
        old_pid = svc.supervisor.proc.pid
        os.kill(old_pid, signal.SIGKILL)
        await _until(lambda: not svc.ready(), "readiness to drop")
        assert svc.free_concurrency() == 0
        with pytest.raises(BurstUnavailable) as err:  # not routed to a dead port meanwhile
            await svc.infer("mlp", {"input": x}, workers=2)
        # refused at once, not after waiting (for the restart, or on a dead port): the runtime
        # is still down (a restart, seconds of process start, could not finish in between)
        assert err.value.retry_after_s and not svc.ready()
        await _until(svc.ready, "the runtime to be restarted")
        assert svc.supervisor.restarts == 1 and svc.supervisor.proc.pid != old_pid
        again = await svc.infer("mlp", {"input": x}, workers=2)
        # new instances for the master and worker 1 (the master computes leg 0 itself)
        assert _close(again.outputs["output"], ref) and again.cold_starts == 2
    finally:
        await svc.close()


async def test_no_configured_secret_travels_in_any_invocation(
    mlp_repo, tmp_path, s3_endpoint, s3_bucket
):  # noqa: F811 (pytest fixtures)
    from burst.faas.local_runtime import LocalFunctionRuntime
    from tests.support.fault_proxy import FaultProxy

    repo, x, ref = mlp_repo
    key_id, secret = "AKIDTIDEGATETESTKEY7", "s3cr3t/never-in-an-event+Q9"
    runtime = LocalFunctionRuntime(concurrency=8)
    runtime.start_in_thread()
    proxy = FaultProxy(runtime.endpoint).start()  # records every request to the runtime
    store = {
        "kind": "s3",
        "bucket": s3_bucket,
        "endpoint_url": s3_endpoint,
        "region": "us-east-1",
        "aws_access_key_id": key_id,
        "aws_secret_access_key": secret,
    }
    svc = _service(
        repo, tmp_path, platform={"kind": "local", "endpoint": proxy.endpoint}, store=store
    )
    try:
        await svc.start()
        answer = await svc.infer("mlp", {"input": x}, workers=2)
        assert _close(answer.outputs["output"], ref)
    finally:
        await svc.close()
        proxy.stop()
        runtime.stop_thread()
    events = [body for method, path, body in proxy.seen if path.endswith("/invocations")]
    assert len(events) == len(answer.invocations) >= 3  # the master's, and each worker's
    for body in events:
        assert key_id.encode() not in body and secret.encode() not in body
        assert b"aws_" not in body and b"endpoint" not in body
        orjson.loads(body)  # and they are events, not something else


from tests.support.s3_server import s3_bucket, s3_endpoint  # noqa: E402,F401
