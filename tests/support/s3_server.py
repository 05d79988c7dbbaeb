"""A real S3-compatible server on loopback (moto's threaded server) for S3Store tests."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

S3_TEST_REGION = "us-east-1"
S3_TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextmanager
def moto_server():
    """moto's threaded server (S3, SQS, EC2, Auto Scaling, ...) on a free loopback port;
    yields ``(endpoint URL, server)`` and stops it after."""
    from moto.server import ThreadedMotoServer

    # botocore must not find real credentials or a real endpoint through the environment.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}", server
    finally:
        server.stop()


def seed_objects(bucket: str, keys: list[str], body: bytes = b"") -> None:
    """Objects written straight into the moto server's backend (it runs in this process):
    for tests about listing and deleting many keys, where a thousand signed PUTs over HTTP
    (~15 s on 2 cores) test nothing."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for key in keys:
        backend.put_object(bucket, key, body)


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's server for the session (it speaks SQS too); yields its endpoint URL."""
    with moto_server() as (endpoint, _):
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh, empty bucket per test (name); removed afterwards with whatever is left in it."""
    import uuid

    import boto3

    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    name = f"tidegate-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys})
    client.delete_bucket(Bucket=name)
