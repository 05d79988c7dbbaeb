"""A plan whose stages travel differently (inline, the object store, the queue) runs and equals
the VM path within 1e-5, over moto's SQS and S3 on loopback, sealed; every stage's tensors went
the way its plan said, and nothing of the request is left in either service."""

from __future__ import annotations

import uuid

import boto3
import numpy as np
import pytest
import torch

from burst.graph import build_graph
from burst.plan import content_hash, make_plan
from burst.plan_schema import stage_transport
from burst.runtime import reset_cache
from burst.store import make_store
from burst.store.sqs_names import OBJECT_SUFFIX
from burst.weights import prepare_plan
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, s3_bucket, s3_endpoint  # noqa: F401
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo
from vmpool.zoo import example_input

from .test_sqs_models import _sqs_queues, run_sealed_master

pytestmark = pytest.mark.slow
torch.set_num_threads(1)
CYCLE = ("inline", "store", "queue")


def _mixed_plan(graph):
    """resnet18 tiled on 2 workers, its split stages taking inline, store, queue in turn."""
    plan = make_plan(graph, workers=2, split="spatial", batch=2, transport="per-stage")
    split = [s for s in plan.stages if s.workers]
    assert len(split) >= 3, "needs a stage per transport"
    for i, stage in enumerate(split):
        stage.transport = CYCLE[i % len(CYCLE)]
    plan.plan_id = content_hash(plan.content())
    return plan


def _travelled(ref: dict) -> str:
    if "b64" in ref:
        return "inline"
    return "store" if ref["key"].endswith(OBJECT_SUFFIX) else "queue"


async def test_mixed_transports_equal_the_vm_path(tmp_path, s3_endpoint, s3_bucket):  # noqa: F811
    artifact = export_zoo("resnet18", tmp_path / "repo", size=(64, 64), max_batch_size=2)
    x = example_input("resnet18", batch=2, size=(64, 64), seed=7)
    with torch.inference_mode():
        vm = load_artifact(tmp_path / "repo", "resnet18").load_module()(x).numpy()
    prefix = f"p{uuid.uuid4().hex[:8]}-"
    aws = {"endpoint_url": s3_endpoint, "region": S3_TEST_REGION, **S3_TEST_CREDENTIALS}
    store = make_store(
        {
            "kind": "sqs",  # sealed by default
            "queue_prefix": prefix,
            "backing": {"kind": "s3", "bucket": s3_bucket, **aws},
            **aws,
        }
    )
    graph = build_graph(artifact.load_program(), "resnet18")
    plan = _mixed_plan(graph)
    await prepare_plan(artifact, plan, store, graph=graph)
    reset_cache()
    run = await run_sealed_master(store, plan.plan_id, x)
    result, burst, invoker = run.result, run.output, run.invoker
    assert np.abs(burst - vm).max() <= 1e-5 * max(1.0, float(np.abs(vm).max()))
    # each worker's input went the way its stage's transport says
    want = {s.index: stage_transport(plan, s) for s in plan.stages}
    seen = {(e["stage"], _travelled(e["input"])) for e in invoker.events}
    assert seen == {(i, t) for i, t in want.items() if t != "auto" and plan.stages[i].workers}
    assert {t for _, t in seen} == set(CYCLE)
    assert result["report"]["queue_requests"] > 0 and result["report"]["store_puts"] > 0
    assert _sqs_queues(s3_endpoint, prefix) == []  # the queues of the request are gone
    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert not [k for k in left if k.startswith(("req/", "resp/"))]
