"""AES-GCM for per-request tensors in the store: sealed at rest, key only in the payloads,
tampering fails the request with a clear error."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import orjson
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
import special_models as sm  # noqa: E402

from burst.faas.base import Billing, InvokeResult  # noqa: E402
from burst.graph import build_graph  # noqa: E402
from burst.plan import make_plan  # noqa: E402
from burst.runtime import BurstError, reset_cache, run_master, run_worker  # noqa: E402
from burst.store.base import StoreError  # noqa: E402
from burst.store.encrypted import (
    MAGIC,
    EncryptedStore,
    TamperedObject,
    encode_key,  # noqa: E402
    new_request_key,
)
from burst.store.factory import make_store  # noqa: E402
from burst.store.memory import MemoryStore  # noqa: E402
from burst.tensors import encode_inline, receive  # noqa: E402
from burst.weights import prepare_plan  # noqa: E402
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION  # noqa: E402
from tests.support.s3_server import s3_bucket, s3_endpoint  # noqa: E402,F401 (fixtures)

torch.set_num_threads(1)


class RecordingStore(MemoryStore):
    """Keeps every byte string ever written, so a test can look for the key in all of them."""

    def __init__(self):
        super().__init__()
        self.written: list[tuple[str, bytes]] = []

    async def put(self, key: str, data: bytes) -> None:
        self.written.append((key, bytes(data)))
        await super().put(key, data)


async def test_round_trip_seals_request_tensors_and_leaves_plan_data():
    inner = MemoryStore()
    key = new_request_key()
    store = EncryptedStore(inner).for_request(key)
    secret = b"activation bytes " * 100
    await store.put("req/r1/s0/w0/in", secret)
    await store.put("plans/p/plan.json", b'{"plan": 1}')
    sealed = await inner.get("req/r1/s0/w0/in")
    assert sealed.startswith(MAGIC) and secret not in sealed
    assert await store.get("req/r1/s0/w0/in") == secret
    assert await inner.get("plans/p/plan.json") == b'{"plan": 1}'  # written once per plan


async def test_tampering_and_wrong_keys_fail_clearly():
    inner = MemoryStore()
    store = EncryptedStore(inner).for_request(new_request_key())
    await store.put("req/r1/out", b"x" * 64)
    blob = bytearray(await inner.get("req/r1/out"))
    blob[-20] ^= 1
    await inner.put("req/r1/out", bytes(blob))
    with pytest.raises(TamperedObject, match="integrity check"):
        await store.get("req/r1/out")
    await store.put("req/r1/a", b"a" * 64)
    await inner.put("req/r1/b", await inner.get("req/r1/a"))  # moved to another key
    with pytest.raises(TamperedObject):
        await store.get("req/r1/b")
    with pytest.raises(TamperedObject):  # another request's key
        await EncryptedStore(inner).for_request(new_request_key()).get("req/r1/a")
    await inner.put("req/r1/plain", b"not sealed at all")
    with pytest.raises(TamperedObject, match="not an encrypted tensor"):
        await store.get("req/r1/plain")


async def test_an_unbound_store_refuses_request_tensors():
    store = EncryptedStore(MemoryStore())
    with pytest.raises(StoreError, match="tensor_key"):
        await store.put("req/r1/in", b"plaintext must not land")


def test_on_by_default_for_remote_stores_only(tmp_path):
    s3 = make_store({"kind": "s3", "bucket": "tensors", "endpoint_url": "http://127.0.0.1:9"})
    oss = make_store(
        {
            "kind": "oss",
            "bucket": "tensors",
            "endpoint": "http://127.0.0.1:9",
            "access_key_id": "a",
            "access_key_secret": "s",
        }
    )
    assert isinstance(s3, EncryptedStore) and isinstance(oss, EncryptedStore)
    assert not isinstance(make_store({"kind": "dir", "root": str(tmp_path)}), EncryptedStore)
    assert isinstance(
        make_store({"kind": "dir", "root": str(tmp_path), "encrypt": True}), EncryptedStore
    )
    s3_plain = make_store({"kind": "s3", "bucket": "tensors", "encrypt": False})
    assert not isinstance(s3_plain, EncryptedStore)


async def test_s3_by_default_holds_only_ciphertext(s3_endpoint, s3_bucket):  # noqa: F811
    import boto3

    store = make_store(
        {
            "kind": "s3",
            "bucket": s3_bucket,
            "endpoint_url": s3_endpoint,
            "region": S3_TEST_REGION,
            **S3_TEST_CREDENTIALS,
        }
    )
    key = new_request_key()
    secret = torch.randn(3 * 1024 * 1024 // 4).numpy().tobytes()  # 3 MB of activations
    try:
        sealed = store.for_request(key)
        await sealed.put("req/r9/s0/w1/in", secret)
        assert await sealed.get("req/r9/s0/w1/in") == secret
        raw = (
            boto3.client(
                "s3", endpoint_url=s3_endpoint, region_name=S3_TEST_REGION, **S3_TEST_CREDENTIALS
            )
            .get_object(Bucket=s3_bucket, Key="req/r9/s0/w1/in")["Body"]
            .read()
        )
        assert raw.startswith(MAGIC) and secret[:4096] not in raw and key not in raw
        assert len(raw) == len(secret) + 32  # magic, nonce and tag: no other growth
    finally:
        await store.close()


class InProcessInvoker:
    """Runs workers in-process; ``tamper`` flips a byte of each worker's input object first."""

    def __init__(self, store, inner, tamper: bool = False):
        self.store, self.inner, self.tamper = store, inner, tamper
        self.payloads: list[bytes] = []

    async def invoke(self, function: str, payload: bytes) -> InvokeResult:
        self.payloads.append(payload)
        event = orjson.loads(payload)
        if self.tamper and "key" in event["input"]:
            blob = bytearray(await self.inner.get(event["input"]["key"]))
            blob[len(blob) // 2] ^= 0x40
            await self.inner.put(event["input"]["key"], bytes(blob))
        body = await run_worker(event, self.store)
        return InvokeResult(
            orjson.dumps(body),
            Billing(duration_ms=1.0, billed_ms=1, memory_mb=1024, cold_start=False),
        )

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def grouped():
    model = sm.build("grouped")
    x = torch.randn(2, *sm.input_shape("grouped"), generator=torch.Generator().manual_seed(1))
    program = sm.export(model, x)
    with torch.no_grad():
        ref = model(x)
    return program, build_graph(program, "grouped"), x, ref


async def _prepared(grouped, inner):
    program, graph, x, _ = grouped
    plan = make_plan(graph, workers=2, split="spatial", transport="store", batch=2)
    await prepare_plan(program, plan, inner, graph=graph)
    reset_cache()
    return plan


async def test_burst_request_through_sealed_store_matches_and_key_never_stored(grouped):
    inner = RecordingStore()
    plan = await _prepared(grouped, inner)
    store = EncryptedStore(inner)
    key = new_request_key()
    invoker = InProcessInvoker(store, inner)
    event = {
        "plan_id": plan.plan_id,
        "request_id": "r1",
        "inputs": [encode_inline(grouped[2])],
        "tensor_key": encode_key(key),
    }
    result = await run_master(event, invoker, store)
    y = await receive(result["outputs"][0], store.for_request(key))
    ref = grouped[3]
    assert (y - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    request_objects = [(k, d) for k, d in inner.written if k.startswith(("req/", "resp/"))]
    assert request_objects, "the plan sends tensors through the store"
    assert all(d.startswith(MAGIC) for _, d in request_objects)
    forms = [key, encode_key(key).encode(), base64.b64encode(key), key.hex().encode()]
    assert not any(f in d for _, d in inner.written for f in forms)
    # it travelled in each worker's invocation payload instead
    assert all(encode_key(key).encode() in p for p in invoker.payloads)


async def test_tampered_tensor_fails_the_request_clearly(grouped):
    inner = MemoryStore()
    plan = await _prepared(grouped, inner)
    store = EncryptedStore(inner)
    event = {
        "plan_id": plan.plan_id,
        "request_id": "r2",
        "inputs": [encode_inline(grouped[2])],
        "tensor_key": encode_key(new_request_key()),
    }
    with pytest.raises(
        BurstError, match="cannot be read: object req/r2/.* failed its integrity check"
    ):
        await run_master(event, InProcessInvoker(store, inner, tamper=True), store)
    with pytest.raises(StoreError, match="tensor_key"):  # a sealed store and no key: refused
        await run_master({**event, "tensor_key": None}, InProcessInvoker(store, inner), store)
