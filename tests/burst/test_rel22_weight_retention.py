"""Plan weights stored before the weight index existed: adopted into their model's index on
first sight, then swept by the same rule as any old version (grace after first sight, the
newest kept, never what a replica runs); on the directory store and on S3 (moto on loopback).
Before, nothing ever looked at them: they stayed in the store for good."""

from __future__ import annotations

import json
import logging

import burst.weight_retention as wr
from burst.store.factory import make_store
from burst.weights import plan_key, ready_key

from .test_weight_retention import H, T0, _exists, store_cfg  # noqa: F401 - a fixture
from tests.support.s3_server import s3_bucket, s3_endpoint  # noqa: F401 - fixtures


async def _stored_before_the_index(store, plan_id: str, model: str, digest: str) -> None:
    plan = {"model": model, "weights_digest": digest, "plan_id": plan_id, "stages": []}
    await store.put(plan_key(plan_id), json.dumps(plan).encode())
    await store.put(f"plans/{plan_id}/master.pt", b"w" * 1000)
    await store.put(ready_key(plan_id), b"1")


class _Plan:
    def __init__(self, plan_id: str, digest: str):
        self.plan_id, self.weights_digest = plan_id, digest


async def test_weights_stored_before_the_index_go_after_the_grace_from_first_sight(
    store_cfg, monkeypatch, caplog
):
    cfg = {**store_cfg, "weights_grace_h": 24, "weights_keep_versions": 1}
    now = [T0]
    monkeypatch.setattr(wr, "clock", lambda: now[0])
    store = make_store(cfg)
    try:
        await _stored_before_the_index(store, "old-a", "m", "d-old")  # the previous export
        await _stored_before_the_index(store, "cur-a", "m", "d-cur")  # this export, 2 workers
        await _stored_before_the_index(store, "other", "n", "d-n")  # another model's
        bad = "plans/broken/plan.json"
        await store.put(bad, b"not json")
        with caplog.at_level(logging.INFO, "tidegate.burst"):
            # the gateway's first plan after the upgrade: this export, 4 workers
            assert not await wr.record_safely(store, cfg, "m", _Plan("cur-b", "d-cur"))
        assert "plan old-a of m (weights d-old) adopted" in caplog.text
        assert "plan broken left alone" in caplog.text
        index = json.loads(await store.get(wr.index_key("m")))
        assert [(v["digest"], sorted(v["plans"])) for v in index["versions"]] == [
            ("d-old", ["old-a"]),
            ("d-cur", ["cur-a", "cur-b"]),
        ]
        assert json.loads(await store.get(wr.index_key("n")))["versions"][0]["plans"] == ["other"]

        now[0] = T0 + 23 * H  # within the grace from first sight: kept
        assert not await wr.record_safely(store, cfg, "m", _Plan("cur-b", "d-cur"))
        now[0] = T0 + 25 * H
        assert await wr.record_safely(store, cfg, "m", _Plan("cur-b", "d-cur"))
        wr.after_prepare(cfg, "m", _Plan("cur-b", "d-cur"))
        wr.wait_for_sweeps()
        gone = [p for p in ("old-a", "cur-a", "other") if not await _exists(store, p)]
        assert gone == ["old-a"]  # this export's plans and another model's stay
        assert await store.get(bad) == b"not json"  # unreadable: left alone
    finally:
        await store.close()


async def test_adopted_weights_a_replica_runs_are_never_swept(store_cfg, monkeypatch):
    cfg = {**store_cfg, "weights_grace_h": 1, "weights_keep_versions": 1}
    now = [T0]
    monkeypatch.setattr(wr, "clock", lambda: now[0])
    store = make_store(cfg)
    try:
        await _stored_before_the_index(store, "old-a", "m", "d-old")
        await wr.record_safely(store, cfg, "m", _Plan("new-a", "d-new"))
        now[0] = T0 + 100 * H
        # a replica still on the old export prepares its plan: the old version is current again
        assert not await wr.record_safely(store, cfg, "m", _Plan("old-a", "d-old"))
        assert await wr.sweep(store, "m", {"d-old"}, wr.WeightRetention(H, 1, lambda: now[0])) == []
        assert await _exists(store, "old-a")
    finally:
        await store.close()
