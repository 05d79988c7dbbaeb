"""SQS on loopback for tests: moto's threaded server (``s3_endpoint``) speaks SQS as well."""

from __future__ import annotations

import uuid

from gateway.asyncq.config import SqsQueueSettings
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION


def sqs_queue_settings(endpoint: str, name: str | None = None) -> SqsQueueSettings:
    """A fresh queue (created on first use) on the moto server at ``endpoint``."""
    return SqsQueueSettings(
        queue_name=name or f"tidegate-{uuid.uuid4().hex[:12]}",
        create=True,
        region=S3_TEST_REGION,
        endpoint_url=endpoint,
        **S3_TEST_CREDENTIALS,
    )
