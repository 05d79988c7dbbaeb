"""The profile's SQS transfer fit, measured against moto's SQS on loopback, and the planner
timing the queue transport with it."""

from __future__ import annotations

import boto3
import pytest

from ops.queue_fit import measure_sqs_fit, sqs_store_config
from policies.perf import Deployment, PerfModel
from policies.profile import TransferFit
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, s3_endpoint  # noqa: F401

from ..policies.test_planner import _profile


async def test_sqs_fit_is_measured_on_a_real_queue_and_leaves_none(s3_endpoint, tmp_path):  # noqa: F811
    backing = {"kind": "dir", "root": str(tmp_path / "claims")}
    cfg = sqs_store_config(s3_endpoint, S3_TEST_REGION, backing, S3_TEST_CREDENTIALS)
    # one size under the message limit, one claim-checked past it
    fit = await measure_sqs_fit(cfg, reps=2, sizes=[16 << 10, 512 << 10])
    assert fit.fixed_ms > 0.0 and fit.ms_per_mb >= 0.0
    assert fit.ms(512 << 10) > 0.5  # a queue made, a message sent and received: not free
    sqs = boto3.client(
        "sqs", endpoint_url=s3_endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    left = sqs.list_queues(QueueNamePrefix=cfg["queue_prefix"]).get("QueueUrls", [])
    assert left == []
    assert not list((tmp_path / "claims").rglob("*.*"))


@pytest.mark.parametrize("with_fit", [True, False])
def test_the_queue_transport_is_timed_with_the_measured_fit(with_fit):
    profile = _profile()
    if with_fit:
        profile = profile.__class__(
            **{**profile.__dict__, "transfer": {**profile.transfer, "sqs": TransferFit(4.0, 7.0)}}
        )
    model = PerfModel(profile, Deployment(store_kind="sqs", transport="per-stage"), [], "")
    nbytes = 2_000_000
    want = TransferFit(4.0, 7.0) if with_fit else profile.transfer["s3"]  # else: like S3
    assert model.transfer_ms(nbytes, "queue") == pytest.approx(want.ms(nbytes))
    # "store" on an sqs deployment is its object store beside the queues (S3 by default)
    assert model.transfer_ms(nbytes, "store") == pytest.approx(profile.transfer["s3"].ms(nbytes))
