"""S3Store against a real S3-compatible server on loopback (moto's threaded server)."""

from __future__ import annotations

import boto3
import pytest

from burst.store import StoreError
from burst.store.s3 import S3Store
from tests.support import STORE_CONTRACT as CONTRACT
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, s3_bucket, s3_endpoint  # noqa: F401
from tests.support.s3_server import seed_objects


def _store(endpoint: str, bucket: str, **kw) -> S3Store:
    return S3Store(
        bucket, endpoint_url=endpoint, region=S3_TEST_REGION, **S3_TEST_CREDENTIALS, **kw
    )


@pytest.fixture
async def store(s3_endpoint, s3_bucket):
    s = _store(s3_endpoint, s3_bucket, prefix="tidegate/tensors")
    yield s
    await s.close()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_s3_store_contract(store, check):
    await check(store)


async def test_objects_live_under_the_configured_prefix(store, s3_endpoint, s3_bucket):
    await store.put("req-1/x", b"payload")
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    assert (
        client.get_object(Bucket=s3_bucket, Key="tidegate/tensors/req-1/x")["Body"].read()
        == b"payload"
    )
    # Objects outside the prefix are not the store's to delete.
    client.put_object(Bucket=s3_bucket, Key="other/req-1/y", Body=b"z")
    assert await store.delete_prefix("") == 1
    assert client.get_object(Bucket=s3_bucket, Key="other/req-1/y")["Body"].read() == b"z"


async def test_delete_prefix_pages_and_batches_past_1000_keys(store, s3_endpoint, s3_bucket):
    # The store must list 2 pages and send 2 DeleteObjects batches (S3 caps both at 1000).
    seed_objects(s3_bucket, [f"tidegate/tensors/req-many/{i:05d}" for i in range(1205)])
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
    )
    assert await store.get("req-many/01204") == b""  # seeded where the store reads
    assert await store.delete(["req-many/00000"]) is None
    assert await store.delete_prefix("req-many/") == 1204
    assert client.list_objects_v2(Bucket=s3_bucket, Prefix="tidegate/").get("KeyCount") == 0


async def test_missing_bucket_is_an_error_not_a_missing_key(s3_endpoint):
    s = _store(s3_endpoint, "no-such-bucket-tidegate")
    try:
        with pytest.raises(StoreError) as info:
            await s.get("k")
        assert not info.value.missing
        with pytest.raises(StoreError):
            await s.put("k", b"v")
    finally:
        await s.close()


async def test_client_opens_lazily_once_and_close_is_idempotent(s3_endpoint, s3_bucket):
    s = _store(s3_endpoint, s3_bucket)
    assert s._aws._client is None
    await s.put("a", b"1")
    first = s._aws._client
    await s.put("b", b"2")
    assert s._aws._client is first
    await s.close()
    await s.close()
    assert await s.get("a") == b"1"  # reopens after close
    await s.close()


def test_from_config_requires_a_bucket():
    with pytest.raises(ValueError, match="bucket"):
        S3Store.from_config({"kind": "s3"})
    s = S3Store.from_config({"kind": "s3", "bucket": "b-1", "prefix": "p/", "region": "eu-west-1"})
    assert s.prefix == "p/" and s.bucket == "b-1"


class _ScriptedS3:
    """A loopback endpoint that answers each request with the next scripted (status, S3 error code)."""

    def __init__(self, script: list[tuple[int, str]]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.script, self.seen = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_PUT(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append(self.command)
                status, code = outer.script.pop(0) if outer.script else (200, "")
                body = (
                    b""
                    if status == 200
                    else (
                        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                        f"<Message>scripted</Message><RequestId>r</RequestId></Error>"
                    ).encode()
                )
                self.send_response(status)
                if status == 200:
                    self.send_header("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.endpoint = "http://%s:%d" % self.httpd.server_address[:2]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


async def test_throttling_is_retried_but_client_errors_are_not():
    server = _ScriptedS3([(503, "SlowDown"), (200, ""), (403, "AccessDenied")])
    s = _store(server.endpoint, "retry-bucket")
    try:
        await s.put("k", b"v")  # 503 SlowDown, then success
        assert server.seen == ["PUT", "PUT"]
        with pytest.raises(StoreError, match="AccessDenied"):
            await s.put("k", b"v")
        assert server.seen == ["PUT", "PUT", "PUT"]  # the 403 was not retried
    finally:
        await s.close()
        server.stop()


@pytest.fixture
def fault_proxy(s3_endpoint):
    from tests.support.fault_proxy import FaultProxy

    proxy = FaultProxy(s3_endpoint).start()
    yield proxy
    proxy.stop()


def _proxied(proxy, bucket, **kw) -> S3Store:
    return _store(proxy.endpoint, bucket, retry_backoff_max_s=0.05, **kw)


async def test_5xx_answers_are_retried_then_a_clean_error(fault_proxy, s3_bucket):
    s = _proxied(fault_proxy, s3_bucket, max_attempts=4)
    try:
        fault_proxy.fail_next(2, 503)
        await s.put("req-f/x", b"survives two 503s")
        assert fault_proxy.requests == 3
        fault_proxy.fail_next(2, 500)
        assert await s.get("req-f/x") == b"survives two 503s"
        fault_proxy.fail_next(4, 503)  # every attempt fails
        before = fault_proxy.requests
        with pytest.raises(StoreError) as info:
            await s.get("req-f/x")
        assert fault_proxy.requests - before == 4 and not info.value.missing
        assert "after retries" in str(info.value) and "ServiceUnavailable" in str(info.value)
        fault_proxy.fail_next(1, 403)  # a 4xx is an answer, not a fault: never retried
        before = fault_proxy.requests
        with pytest.raises(StoreError):
            await s.get("req-f/x")
        assert fault_proxy.requests - before == 1
    finally:
        await s.close()


async def test_slow_answers_time_out_and_are_retried_then_a_clean_error(fault_proxy, s3_bucket):
    s = _proxied(fault_proxy, s3_bucket, max_attempts=3, read_timeout_s=0.5)
    try:
        await s.put("req-s/x", b"v")
        fault_proxy.delay_next(1, 30.0)  # held past the read timeout: the client retries
        assert await s.get("req-s/x") == b"v"
        fault_proxy.delay_next(3, 30.0)
        with pytest.raises(StoreError) as info:
            await s.put("req-s/y", b"w")
        assert "timeout" in str(info.value).lower()
        fault_proxy.fail_next(1, 503)  # delete_prefix lists, then deletes: both retried
        assert await s.delete_prefix("req-s/") >= 1
    finally:
        await s.close()
