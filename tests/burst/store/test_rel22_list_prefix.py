"""``list_prefix`` on every store: the keys ``delete_prefix`` would delete, without the store's
own prefix, and nothing else (the weight sweep lists ``plans/`` with it)."""

from __future__ import annotations

import pytest

from burst.store.counting import CountingStore
from burst.store.encrypted import EncryptedStore
from burst.store.local_dir import LocalDirStore
from burst.store.memory import MemoryStore
from burst.store.oss import OSSStore
from burst.store.routed import RoutedStore
from tests.support.oss_server import OSS_TEST_CREDENTIALS, oss_server  # noqa: F401

KEYS = ["plans/a/plan.json", "plans/a/stage0/worker0.pt", "plans/b/plan.json", "plansx", "z/1"]


@pytest.fixture(params=["memory", "dir", "oss", "routed", "wrapped"])
async def store(request, tmp_path):
    if request.param == "oss":
        server = request.getfixturevalue("oss_server")
        ((key_id, secret),) = OSS_TEST_CREDENTIALS.items()
        made = OSSStore(
            "tidegate",
            endpoint=server.endpoint,
            prefix=f"t/{request.node.name}",
            access_key_id=key_id,
            access_key_secret=secret,
        )
    elif request.param == "dir":
        made = LocalDirStore(tmp_path / "objects")
    elif request.param == "routed":
        made = RoutedStore(LocalDirStore(tmp_path / "objects"), MemoryStore())
    else:
        made = CountingStore(EncryptedStore(MemoryStore()))
    for key in KEYS:
        await made.put(key, b"x")
    yield made
    await made.delete_prefix("")
    await made.close()


async def test_list_prefix_names_what_delete_prefix_would_delete(store):
    assert sorted(await store.list_prefix("plans/")) == KEYS[:3]
    assert sorted(await store.list_prefix("plans")) == KEYS[:4]  # a string prefix, as S3's
    assert sorted(await store.list_prefix("")) == sorted(KEYS)
    assert await store.list_prefix("nothing/") == []
    assert await store.delete_prefix("plans/") == 3
    assert await store.list_prefix("plans/") == []
