"""A model the burst path refuses is planned once, not at every burst request: the burst service
keeps the refusal (per model files and plan arguments) with its error, as it keeps the plans it
made, and plans again once the model's files change.

Before: every burst request for such a model loaded its program and traced its graph again
(the text classifier here: a dynamic sequence length, refused by ``burst.graph``), only to fail
the same way; the gateway remembered the model, other callers of the service did not."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import burst.service
from burst.service import BurstService, BurstUnavailable
from ops.cli import main as cli
from vmpool.artifact import CONFIG_FILE

sys.path.insert(0, str(Path(__file__).parent))
import byo_models as bm  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """``textseq``: token ids of any length from 4 to 64, exported as the README says."""
    tmp = tmp_path_factory.mktemp("refused")
    batch, seq = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=4, max=64)
    program = torch.export.export(
        bm.build("textcls"), tuple(bm.example("textcls")), dynamic_shapes=({0: batch, 1: seq},)
    )
    torch.export.save(program, str(tmp / "textseq.pt2"))
    assert cli(["export", str(tmp / "textseq.pt2"), "--name", "textseq", "--out", str(tmp)]) == 0
    return tmp


@pytest.fixture
def graph_loads(monkeypatch) -> list[str]:
    """The models whose program the service loaded and traced (the real work, counted)."""
    loads, real = [], burst.service.load_graph

    def counted(repo, model):
        loads.append(model)
        return real(repo, model)

    monkeypatch.setattr(burst.service, "load_graph", counted)
    return loads


def _service(repo: Path, tmp_path: Path) -> BurstService:
    return BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(tmp_path / "objects")},
        memory_mb=512,
        log_dir=tmp_path / "logs",
        max_workers=4,
    )


def _ids(length: int) -> dict[str, np.ndarray]:
    return {"ids": np.ones((2, length), np.int64)}


async def test_a_refused_model_asked_twice_is_planned_once_and_says_why_both_times(
    repo, tmp_path, graph_loads
):
    svc = _service(repo, tmp_path)
    await svc.start()
    try:
        errors = []
        for _ in range(2):
            with pytest.raises(BurstUnavailable) as info:
                await svc.infer("textseq", _ids(23), workers=2)
            errors.append(info.value)
        # at once, as a spike sends them: they wait for the first, then share its answer
        many = await asyncio.gather(
            *(svc.infer("textseq", _ids(23), workers=3) for _ in range(4)),
            return_exceptions=True,
        )
    finally:
        await svc.close()
    assert graph_loads == ["textseq", "textseq"]  # once per plan asked (2, then 3 workers)
    assert all(e.refused and e.retry_after_s is None for e in errors)
    assert "dynamic dimension 1" in str(errors[0]) and str(errors[1]) == str(errors[0])
    assert all(isinstance(e, BurstUnavailable) and str(e) == str(errors[0]) for e in many)


async def test_plan_for_a_refused_model_raises_its_error_again_until_its_files_change(
    repo, tmp_path, graph_loads
):
    from burst.graph import GraphError

    svc = _service(repo, tmp_path)  # (plans need no started service: `tidegate plan`-like use)
    for _ in range(3):
        with pytest.raises(GraphError, match="dynamic dimension 1"):
            await svc.plan_for("textseq", 2, 1)
    assert graph_loads == ["textseq"]
    config = repo / "textseq" / CONFIG_FILE
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # saved again
    with pytest.raises(GraphError, match="dynamic dimension 1"):
        await svc.plan_for("textseq", 2, 1)
    assert graph_loads == ["textseq", "textseq"]  # planned again from the files as they are now
