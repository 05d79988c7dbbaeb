"""Plan weights of a model's old versions leave the object store once a newer version has been
current for the grace period, never the current one nor the K newest; on the directory store and
on S3 (moto's server on loopback). Time is a clock the test moves."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

import burst.weight_retention as wr
from burst.service import BurstService
from burst.store.base import StoreError
from burst.store.factory import make_store
from burst.weights import plan_key, ready_key
from tests.support.s3_server import S3_TEST_CREDENTIALS, S3_TEST_REGION, s3_bucket, s3_endpoint  # noqa: F401
from vmpool.export import export_zoo

H = 3600.0
T0 = 1_790_000_000.0


@pytest.fixture(params=["dir", "s3"])
def store_cfg(request, tmp_path):
    if request.param == "dir":
        return {"kind": "dir", "root": str(tmp_path / "objects")}
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return {
        "kind": "s3",
        "bucket": bucket,
        "prefix": "tg",
        "endpoint_url": endpoint,
        "region": S3_TEST_REGION,
        "encrypt": False,
        **S3_TEST_CREDENTIALS,
    }


async def _plan_objects(store, plan_id: str) -> None:
    """What a prepared plan leaves in the store (its weights stand-in, and READY)."""
    await store.put(plan_key(plan_id), b"{}")
    await store.put(f"plans/{plan_id}/master.pt", b"w" * 1000)
    await store.put(ready_key(plan_id), b"1")


async def _exists(store, plan_id: str) -> bool:
    try:
        await store.get(ready_key(plan_id))
        return True
    except StoreError as exc:
        assert exc.missing
        return False


async def test_an_old_version_goes_after_the_grace_and_the_newest_stay(store_cfg, caplog):
    store = make_store(store_cfg)
    try:
        for pid in ("v1a", "v1b", "v2a", "v3a"):
            await _plan_objects(store, pid)
        await wr.record_plan(store, "m", "d1", "v1a", T0)
        await wr.record_plan(store, "m", "d1", "v1b", T0 + 60)
        await wr.record_plan(store, "m", "d2", "v2a", T0 + 10 * H)  # exported again
        rule = wr.WeightRetention(grace_s=24 * H, keep_versions=1, clock=lambda: T0 + 30 * H)
        assert await wr.sweep(store, "m", {"d2"}, rule) == []  # d2 current for 20 h only
        rule = wr.WeightRetention(grace_s=24 * H, keep_versions=2, clock=lambda: T0 + 40 * H)
        assert await wr.sweep(store, "m", {"d2"}, rule) == []  # the 2 newest are kept
        await wr.record_plan(store, "m", "d3", "v3a", T0 + 41 * H)
        with caplog.at_level(logging.INFO, "tidegate.burst"):
            assert sorted(await wr.sweep(store, "m", {"d3"}, rule)) == ["v1a", "v1b"]
        assert "deleted plan v1a of m (weights d1" in caplog.text
        assert [await _exists(store, p) for p in ("v1a", "v1b", "v2a", "v3a")] == [
            False,
            False,
            True,
            True,
        ]
        index = json.loads(await store.get(wr.index_key("m")))
        assert [v["digest"] for v in index["versions"]] == ["d2", "d3"]
    finally:
        await store.close()


async def test_the_version_a_replica_runs_is_never_deleted(store_cfg):
    store = make_store(store_cfg)
    try:
        for pid in ("old", "new"):
            await _plan_objects(store, pid)
        await wr.record_plan(store, "m", "d1", "old", T0)
        await wr.record_plan(store, "m", "d2", "new", T0 + H)
        rule = wr.WeightRetention(grace_s=H, keep_versions=1, clock=lambda: T0 + 100 * H)
        assert await wr.sweep(store, "m", {"d1"}, rule) == []  # this process runs d1
        assert await wr.sweep(store, "m", {"d2"}, rule) == ["old"]
        # the current version, however long ago it was recorded, stays
        assert await wr.sweep(store, "m", set(), rule) == [] and await _exists(store, "new")
    finally:
        await store.close()


async def test_a_replica_still_preparing_the_old_version_keeps_it(tmp_path):
    store = make_store({"kind": "dir", "root": str(tmp_path / "objects")})
    for pid in ("old", "new"):
        await _plan_objects(store, pid)
    await wr.record_plan(store, "m", "d1", "old", T0)
    await wr.record_plan(store, "m", "d2", "new", T0 + H)
    await wr.record_plan(store, "m", "d2", "new", T0 + 30 * H)  # (no flip: d2 is the newest)
    # another replica, started from the old files, prepares d1 again: current again (rollback)
    await wr.record_plan(store, "m", "d1", "old", T0 + 40 * H)
    rule = wr.WeightRetention(grace_s=24 * H, keep_versions=1, clock=lambda: T0 + 50 * H)
    assert await wr.sweep(store, "m", {"d1"}, rule) == []  # d2 superseded 10 h ago only
    late = wr.WeightRetention(grace_s=24 * H, keep_versions=1, clock=lambda: T0 + 70 * H)
    assert await wr.sweep(store, "m", {"d1"}, late) == ["new"]
    assert await _exists(store, "old")


class _Failing:
    """A store whose deletes fail ``failures`` times (a store outage), else the inner one's."""

    def __init__(self, inner, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def delete_prefix(self, prefix: str) -> int:
        if self.failures:
            self.failures -= 1
            raise StoreError("s3 delete failed: 503 SlowDown")
        return await self.inner.delete_prefix(prefix)

    async def put(self, key: str, data: bytes) -> None:
        if self.failures:
            raise StoreError("s3 put failed: connection reset")
        await self.inner.put(key, data)


async def test_a_store_failure_is_logged_and_the_next_sweep_finishes(tmp_path, caplog):
    inner = make_store({"kind": "dir", "root": str(tmp_path / "objects")})
    for pid in ("old", "new"):
        await _plan_objects(inner, pid)
    await wr.record_plan(inner, "m", "d1", "old", T0)
    await wr.record_plan(inner, "m", "d2", "new", T0 + H)
    rule = wr.WeightRetention(grace_s=H, keep_versions=1, clock=lambda: T0 + 10 * H)
    flaky = _Failing(inner, failures=1)
    with pytest.raises(StoreError):
        await wr.sweep(flaky, "m", {"d2"}, rule)
    assert await _exists(inner, "old")  # still in the index, still in the store
    assert await wr.sweep(flaky, "m", {"d2"}, rule) == ["old"]
    assert not await _exists(inner, "old")

    class Plan:
        weights_digest, plan_id = "d3", "p3"

    with caplog.at_level(logging.WARNING, "tidegate.burst"):
        assert not await wr.record_safely(_Failing(inner, failures=1), {}, "m", Plan())
    assert "could not record plan p3 of m" in caplog.text


def test_burst_weights_settings_reach_the_service(tmp_path):
    from gateway.settings import Settings

    def rule(**burst) -> wr.WeightRetention:
        service = BurstService.from_settings(Settings(data_dir=tmp_path, burst=burst))
        return wr.WeightRetention.from_store_cfg(service.store_cfg)

    assert (rule().grace_s, rule().keep_versions) == (24 * H, 2)  # the defaults
    configured = rule(weights={"grace_h": 2, "keep_versions": 3})
    assert (configured.grace_s, configured.keep_versions) == (2 * H, 3)
    with pytest.raises(ValueError, match="keep_versions"):
        Settings(data_dir=tmp_path, burst={"weights": {"keep_versions": 0}})


def test_a_gateway_re_export_deletes_the_old_weights_after_the_grace(
    store_cfg, tmp_path, monkeypatch
):
    """The burst service end to end: plans of export 1, export 2, and export 1's weights leave
    the store at the first plan made after export 2 has been current for the grace."""
    repo = tmp_path / "repo"
    export_zoo("mlp", repo, max_batch_size=2, seed=0)
    now = [T0]
    monkeypatch.setattr(wr, "clock", lambda: now[0])
    cfg = {**store_cfg, "weights_grace_h": 1, "weights_keep_versions": 1}

    def stored(plan_id: str) -> bool:
        async def go():
            store = make_store(cfg)  # (an S3 client belongs to its event loop)
            try:
                return await _exists(store, plan_id)
            finally:
                await store.close()

        return asyncio.run(go())

    def plan(workers: int):
        svc = BurstService(repo, platform={"kind": "local"}, store=cfg, max_workers=8)
        made = asyncio.run(svc.plan_for("mlp", workers, 1, "none"))
        wr.wait_for_sweeps()
        return made

    first = plan(1)
    export_zoo("mlp", repo, max_batch_size=2, seed=1)  # new weights: a new version
    now[0] += 2 * H
    second = plan(1)
    assert second.weights_digest != first.weights_digest
    assert stored(first.plan_id)  # export 2 current for 0 h: kept
    now[0] += 2 * H
    third = plan(2)  # a plan made later (a gateway's start, another worker count)
    assert third.weights_digest == second.weights_digest
    assert not stored(first.plan_id)
    assert stored(second.plan_id) and stored(third.plan_id)
