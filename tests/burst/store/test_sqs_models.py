"""ResNet-18 and VGG-11 with every tensor between master and workers through SQS (moto on
loopback), sealed, equal the VM path (the exported artifact the model servers run) within 1e-5.

The master and workers are the real ``run_master`` / ``run_worker`` handlers; the invoker calls
workers in-process (the wire between functions is the queue, which is what this checks; the
gateway test runs them as real function processes)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import boto3
import numpy as np
import orjson
import pytest
import torch

from burst.faas.base import Billing, InvokeResult
from burst.graph import build_graph
from burst.plan import make_plan
from burst.runtime import reset_cache, run_master, run_worker
from burst.store import make_store
from burst.store.encrypted import EVENT_FIELD, encode_key, new_request_key
from burst.tensors import receive
from burst.weights import prepare_plan
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, s3_endpoint  # noqa: F401
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo
from vmpool.zoo import example_input

pytestmark = pytest.mark.slow
torch.set_num_threads(1)


class QueueCountingInvoker:
    """Runs each worker event with ``run_worker`` in-process; keeps the events it saw."""

    def __init__(self, store):
        self.store = store
        self.events: list[dict] = []

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        event = orjson.loads(payload)
        self.events.append(event)
        body = await run_worker(event, self.store)
        billed = max(1, int(body["total_ms"] + 0.999))
        return InvokeResult(
            orjson.dumps(body),
            Billing(duration_ms=body["total_ms"], billed_ms=billed, memory_mb=1024),
        )

    async def close(self) -> None:
        return None


@dataclass
class SealedRun:
    """One master run on a sealed input, the request's objects deleted after it."""

    result: dict
    output: np.ndarray
    invoker: QueueCountingInvoker
    key: bytes


async def run_sealed_master(store, plan_id: str, x: torch.Tensor) -> SealedRun:
    """Put ``x`` sealed under a new request key, run the real master with workers in-process,
    read its output, then delete the request's objects and close the store."""
    invoker = QueueCountingInvoker(store)
    key = new_request_key()
    sealed = store.for_request(key)
    request_id = uuid.uuid4().hex
    await sealed.put(f"req/{request_id}/input0", x.numpy().tobytes())
    event = {
        "plan_id": plan_id,
        "request_id": request_id,
        "inputs": [{"dtype": "float32", "shape": list(x.shape), "key": f"req/{request_id}/input0"}],
        EVENT_FIELD: encode_key(key),
    }
    try:
        result = await run_master(event, invoker, store)
        output = (await receive(result["outputs"][0], sealed)).numpy()
    finally:
        await sealed.delete_prefix(f"resp/{request_id}/")
        await sealed.delete_prefix(f"req/{request_id}/")
        await store.close()
    return SealedRun(result, output, invoker, key)


def _sqs_queues(endpoint: str, prefix: str) -> list[str]:
    client = boto3.client(
        "sqs", endpoint_url=endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    return client.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])


@pytest.mark.parametrize(("model", "split"), [("resnet18", "spatial"), ("vgg11", "output")])
async def test_model_through_sqs_equals_the_vm_path(
    model,
    split,
    tmp_path,
    s3_endpoint,  # noqa: F811
    caplog,
):
    artifact = export_zoo(model, tmp_path / "repo", size=(64, 64), max_batch_size=2)
    x = example_input(model, batch=2, size=(64, 64), seed=5)
    with torch.inference_mode():
        vm = load_artifact(tmp_path / "repo", model).load_module()(x).numpy()
    prefix = f"m{uuid.uuid4().hex[:8]}-"
    store = make_store(
        {
            "kind": "sqs",  # encrypt: on by default
            "endpoint_url": s3_endpoint,
            "region": S3_TEST_REGION,
            "queue_prefix": prefix,
            "backing": {"kind": "dir", "root": str(tmp_path / "objects")},
            **S3_TEST_CREDENTIALS,
        }
    )
    graph = build_graph(artifact.load_program(), model)
    plan = make_plan(graph, workers=2, split=split, batch=2, transport="queue")
    await prepare_plan(artifact, plan, store, graph=graph)
    reset_cache()
    caplog.set_level(logging.DEBUG)
    run = await run_sealed_master(store, plan.plan_id, x)
    out, burst, invoker, key = run.result["outputs"][0], run.output, run.invoker, run.key
    assert "key" in out or "b64" in out
    assert invoker.events and all(e["input"].get("key") for e in invoker.events)  # via SQS
    assert np.abs(burst - vm).max() <= 1e-5 * max(1.0, float(np.abs(vm).max()))
    assert _sqs_queues(s3_endpoint, prefix) == []  # every queue of the request is gone
    assert not list((tmp_path / "objects").glob("req/*")) and not list(
        (tmp_path / "objects").glob("resp/*")
    )
    assert encode_key(key) not in caplog.text
