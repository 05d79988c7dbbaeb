"""LocalDirStore (the embedded default), the memory store and the store factory."""

from __future__ import annotations

import asyncio
import os

import pytest

from burst.store import LocalDirStore, MemoryStore, StoreError, make_store
from tests.support import STORE_CONTRACT as CONTRACT
from tests.support import check_small_round_trip


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_local_dir_store_contract(tmp_path, check):
    await check(LocalDirStore(tmp_path / "store"))


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
async def test_memory_store_contract(check):
    await check(MemoryStore())


def _files_under(root) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


async def test_objects_are_plain_files_and_no_temp_files_remain(tmp_path):
    store = LocalDirStore(tmp_path)
    await asyncio.gather(*(store.put(f"r/{i}", b"v" * 100_000) for i in range(10)))
    assert _files_under(tmp_path) == sorted(f"r/{i}" for i in range(10))
    assert (tmp_path / "r" / "3").read_bytes() == b"v" * 100_000


async def test_failed_write_keeps_the_old_value(tmp_path):
    store = LocalDirStore(tmp_path)
    await store.put("r/x", b"old")
    with pytest.raises(TypeError):
        await store.put("r/x", "not bytes")  # type: ignore[arg-type]
    assert await store.get("r/x") == b"old"
    assert _files_under(tmp_path) == ["r/x"]


async def test_delete_prefix_removes_emptied_directories_but_not_root(tmp_path):
    root = tmp_path / "store"
    store = LocalDirStore(root)
    await store.put("req-9/stage0/w0", b"a")
    await store.put("req-9/stage1/w1", b"b")
    await store.put("req-90/keep", b"c")
    assert await store.delete_prefix("req-9/") == 2
    assert not (root / "req-9").exists()
    assert await store.get("req-90/keep") == b"c"
    # A bare prefix matches like S3: "req-9" also covers "req-90/...".
    assert await store.delete_prefix("req-9") == 1
    assert root.is_dir() and list(root.iterdir()) == []
    assert await store.delete_prefix("") == 0


async def test_delete_removes_emptied_parent_directories(tmp_path):
    store = LocalDirStore(tmp_path)
    await store.put("req/a/b/c", b"x")
    await store.delete(["req/a/b/c"])
    assert list(tmp_path.iterdir()) == []


async def test_a_prefix_is_not_an_object(tmp_path):
    store = LocalDirStore(tmp_path)
    await store.put("req/a/b", b"x")
    with pytest.raises(StoreError) as info:
        await store.get("req/a")
    assert info.value.missing


async def test_keys_cannot_escape_the_root(tmp_path):
    root = tmp_path / "inner"
    store = LocalDirStore(root)
    for bad in ["../outside", "/etc/passwd", "a/../../outside"]:
        with pytest.raises(ValueError):
            await store.put(bad, b"x")
    assert list(tmp_path.iterdir()) == [root]


def test_factory_builds_each_kind_and_names_them_on_error(tmp_path):
    assert isinstance(make_store({"kind": "dir", "root": str(tmp_path)}), LocalDirStore)
    assert isinstance(make_store({"kind": "memory"}), MemoryStore)
    s3 = make_store({"kind": "s3", "bucket": "tg", "endpoint_url": "http://127.0.0.1:1"})
    assert type(getattr(s3, "inner", s3)).__name__ == "S3Store"  # maybe sealed (encrypted)
    with pytest.raises(ValueError, match="invalid OSS bucket"):
        make_store(
            {
                "kind": "oss",
                "bucket": "x",
                "endpoint": "http://127.0.0.1:1",
                "access_key_id": "a",
                "access_key_secret": "b",
            }
        )
    oss = make_store(
        {
            "kind": "oss",
            "bucket": "tidegate",
            "endpoint": "http://127.0.0.1:1",
            "access_key_id": "a",
            "access_key_secret": "b",
        }
    )
    assert type(getattr(oss, "inner", oss)).__name__ == "OSSStore"
    asyncio.run(oss.close())
    with pytest.raises(ValueError, match="dir, s3, oss, memory"):
        make_store({"kind": "gcs"})
    with pytest.raises(ValueError, match="root"):
        make_store({"kind": "dir"})
    with pytest.raises(ValueError, match="access_key_id"):
        make_store({"kind": "oss", "bucket": "tg", "endpoint": "http://x"})


@pytest.mark.parametrize("prunes", [2, 10])
async def test_a_cleanup_removing_the_shared_parent_mid_write_does_not_fail_the_write(
    tmp_path, monkeypatch, prunes
):
    """The interleaving behind 'cannot write .../req/<id>/input0: No such file or directory':
    request B creates req/, request A's cleanup prunes the (still empty) req/, B's mkdir of
    req/B fails. Injected at that exact point, ``prunes`` times in a row: five tries back to
    back lost to three processes cleaning up side by side on a loaded host (CI); the write
    now outlasts ten."""
    store = LocalDirStore(tmp_path)
    (tmp_path / "req").mkdir()
    real_mkdir, pruned = os.mkdir, []

    def mkdir_after_a_concurrent_prune(path, *args, **kwargs):
        parent = os.path.dirname(os.fspath(path))
        if os.path.basename(os.fspath(path)) == "B" and len(pruned) < prunes:
            if os.path.isdir(parent):
                os.rmdir(parent)  # what A's _prune_empty_dirs does to an empty req/
                pruned.append(parent)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir_after_a_concurrent_prune)
    await store.put("req/B/input0", b"tensor")
    assert len(pruned) == prunes and await store.get("req/B/input0") == b"tensor"


def _put_and_clean(root: str, rounds: int) -> int:
    import uuid

    async def go() -> int:
        store = LocalDirStore(root)
        for _ in range(rounds):
            rid = uuid.uuid4().hex
            await store.put(f"req/{rid}/input0", b"x" * 100)
            await store.delete_prefix(f"req/{rid}/")
        return rounds

    return asyncio.run(go())


def test_requests_in_several_processes_write_and_clean_up_side_by_side(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(3) as pool:
        done = list(pool.map(_put_and_clean, [str(tmp_path)] * 3, [400] * 3))
    assert done == [400] * 3
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


async def test_tensors_in_flight_can_live_in_their_own_root(tmp_path):
    store = make_store(
        {"kind": "dir", "root": str(tmp_path / "objects"), "tensor_root": str(tmp_path / "shm")}
    )
    await store.put("req/r1/input0", b"tensor")
    await store.put("resp/r1/output0", b"answer")
    await store.put("plans/p1/plan.json", b"{}")
    assert (tmp_path / "shm/req/r1/input0").read_bytes() == b"tensor"
    assert (tmp_path / "objects/plans/p1/plan.json").exists()
    assert not (tmp_path / "objects/req").exists()
    assert await store.get("resp/r1/output0") == b"answer"
    assert await store.delete_prefix("req/r1/") == 1
    assert await store.delete_prefix("") == 2  # both roots
    await check_small_round_trip(store)
