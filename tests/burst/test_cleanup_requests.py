"""The store requests a burst request pays for cleaning up (burst.exchange.cleanup and the
master's delete of ``req/``): none when every tensor travelled inline (each prefix deleted is
a LIST, billed as a PUT: 3 of them were $15e-6 a request on S3, 4x a ResNet-18 function's
time), and nothing left behind when tensors went through the store."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from burst.service import BurstService
from vmpool.export import export_zoo
from vmpool.zoo import example_input


def _answers(tmp_path, transport: str, workers: int) -> tuple[list, list[str]]:
    """Two answers of the real burst service (local runtime, directory store), and the
    per-request objects left in the store afterwards."""
    repo, objects = tmp_path / "repo", tmp_path / f"objects-{transport}"
    if not repo.exists():
        export_zoo("mlp", repo)
    x = example_input("mlp").numpy()

    async def run() -> list:
        svc = BurstService(
            repo,
            platform={"kind": "local"},
            store={"kind": "dir", "root": str(objects)},
            memory_mb=512,
            function_timeout_s=120,
            log_dir=tmp_path / "logs",
            split="output" if workers > 1 else "none",
            max_workers=workers,
            transport=transport,
        )
        await svc.start()
        try:
            return [await svc.infer("mlp", {"input": x}, workers=workers) for _ in range(2)]
        finally:
            await svc.close()

    answers = asyncio.run(run())
    left = [
        str(p.relative_to(objects))
        for prefix in ("req", "resp")
        for p in (objects / prefix).rglob("*")
        if p.is_file()
    ]
    return answers, left


@pytest.mark.slow
def test_an_inline_request_makes_no_store_request_and_a_stored_one_leaves_nothing(tmp_path):
    inline, left = _answers(tmp_path, "auto", 1)
    assert (inline[1].store_puts, inline[1].store_gets) == (0, 0)  # was 3 LISTs
    assert left == []
    stored, left = _answers(tmp_path, "store", 2)
    assert stored[1].store_puts > 0 and stored[1].store_gets > 0
    assert left == []  # the master's req/ and the gateway's resp/ deletes still ran
    assert np.allclose(stored[1].outputs["output"], inline[1].outputs["output"], atol=1e-5)
