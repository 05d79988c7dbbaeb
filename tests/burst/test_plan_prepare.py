"""Preparing plans concurrently: loading one ``.pt2`` from several threads at once must work."""

from __future__ import annotations

import asyncio
import threading

import pytest

from burst.service import BurstService
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    export_zoo("resnet18", root, size=(32, 32), max_batch_size=2)
    return root


def test_program_loads_from_many_threads_at_once(repo):
    artifact = load_artifact(repo, "resnet18")
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def load():
        start.wait()  # all four call torch.export.load at the same moment
        try:
            artifact.load_program()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []  # was: AssertionError: _CURRENT_DESERIALIZER is already set


@pytest.mark.slow
def test_plans_for_three_worker_counts_prepare_concurrently(repo, tmp_path):
    """What the gateway does right after start: background preparation of the default plan
    while requests ask for other worker counts (issue 7: two of three got a 500)."""
    svc = BurstService(
        repo, platform={"kind": "local"}, store={"kind": "dir", "root": str(tmp_path / "objects")}
    )

    async def go():
        return await asyncio.gather(
            *(svc.plan_for("resnet18", w, 1) for w in (3, 5, 6)), return_exceptions=True
        )

    plans = asyncio.run(go())
    assert [type(p).__name__ for p in plans] == ["Plan"] * 3
    # each is what its worker count plans (a plan with no split stage is the one "none" plan)
    assert [p.workers for p in plans] == [
        w if any(s.split != "serial" for s in p.stages) else 1 for p, w in zip(plans, (3, 5, 6))
    ]
    for p in plans:
        assert (tmp_path / "objects" / "plans" / p.plan_id / "READY").is_file()
