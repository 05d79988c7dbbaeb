"""A gateway whose model is exported or profiled again while it runs plans again (a new stamp
of the model's files) and lets the plans of the files it replaced go: before, the burst
service kept every version's plans and their locks for as long as it ran (each plan holds its
partition of the graph), so a model re-exported hourly grew the gateway without bound.

The planning itself is replaced by a stand-in here (what is under test is which plans the
service keeps); tests/burst/test_refusal_cache.py covers the refusals kept the same way."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import pytest

import burst.service
from burst.graph import GraphError
from burst.service import BurstService


class _Plan:
    def __init__(self, key: tuple) -> None:
        self.key = key


@pytest.fixture
def svc(tmp_path: Path, monkeypatch) -> BurstService:
    service = BurstService(
        tmp_path / "repo",
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(tmp_path / "objects")},
        memory_mb=512,
        max_workers=8,
    )
    stamps: dict[str, tuple] = {}  # each model's files' stamp (program, config, profile)
    service.files = stamps
    monkeypatch.setattr(
        burst.service, "model_files_stamp", lambda repo, model: stamps.get(model, (1, 1, None))
    )
    made: list[tuple] = []
    service.made = made

    def make_plan(model, workers, batch, split, when):
        made.append((model, workers, when))
        if model == "refused":
            raise GraphError("dynamic dimension 1")
        return _Plan((model, workers, batch, split, when)), None

    service._make_plan = make_plan
    service._prepare_blocking = lambda *a, **k: None
    return service


def _export_again(svc: BurstService, n: int, model: str = "m") -> None:
    svc.files[model] = (1 + n, 1, None)


async def test_a_model_exported_again_frees_the_plans_of_its_old_files(svc):
    old = weakref.ref(await svc.plan_for("m", 2, 1))
    assert await svc.plan_for("m", 2, 1) is old()  # the same files: the same plan, made once
    _export_again(svc, 1)
    new = await svc.plan_for("m", 2, 1)
    assert new.key[-1] == (2, 1, None)  # planned again from the new files
    gc.collect()
    assert old() is None, "the old export's plan is still held by the service"


async def test_many_exports_keep_one_version_of_each_plan(svc):
    kept = []
    for n in range(50):
        _export_again(svc, n)
        _export_again(svc, n, "other")
        for workers in (1, 2, 4):
            kept.append(weakref.ref(await svc.plan_for("m", workers, 1)))
        kept.append(weakref.ref(await svc.plan_for("other", 2, 1)))
    gc.collect()
    alive = [ref() for ref in kept if ref() is not None]
    # the last export's three plans of m and one of other; nothing of the 49 before
    assert sorted((p.key[0], p.key[1]) for p in alive) == [
        ("m", 1),
        ("m", 2),
        ("m", 4),
        ("other", 2),
    ]
    assert len(svc._locks) == 0, "a lock per plan ever made is kept"


async def test_a_new_export_of_one_model_keeps_the_other_models_plans(svc):
    other = await svc.plan_for("other", 2, 1)
    _export_again(svc, 1)
    await svc.plan_for("m", 2, 1)
    svc.made.clear()
    assert await svc.plan_for("other", 2, 1) is other
    await svc.plan_for("m", 2, 1)
    assert svc.made == []  # both kept: nothing planned again


async def test_concurrent_callers_of_a_new_plan_plan_it_once_and_leave_no_lock(svc):
    plans = await asyncio.gather(*(svc.plan_for("m", 4, 1) for _ in range(8)))
    assert len({id(p) for p in plans}) == 1 and len(svc.made) == 1
    with pytest.raises(GraphError):
        await svc.plan_for("refused", 2, 1)
    with pytest.raises(GraphError):
        await svc.plan_for("refused", 2, 1)
    assert [m for m, *_ in svc.made].count("refused") == 1  # the refusal is kept, not redone
    assert len(svc._locks) == 0
