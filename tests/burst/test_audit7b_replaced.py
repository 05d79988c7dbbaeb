"""model.pt2 exported anew (new weights) while the gateway made a plan from the old one (issue
7's audit, s13; the race s12's audit left): the plan's id named the old weights while the new
ones were sliced into the store under it, so once the old weights came back, burst answered
with the newer ones (and the VM path with the right ones)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from burst.service import BurstService
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo
from vmpool.zoo import example_input

pytestmark = pytest.mark.slow


def _expected(repo) -> np.ndarray:
    x = torch.from_numpy(example_input("mlp").numpy())
    with torch.inference_mode():
        return load_artifact(repo, "mlp").load_module()(x).numpy()


def _close(a, b) -> bool:
    return float(np.abs(a - b).max()) <= 1e-5 * max(1.0, float(np.abs(b).max()))


def test_weights_replaced_while_a_plan_is_made_are_never_served_under_the_old_id(tmp_path):
    repo = tmp_path / "repo"
    export_zoo("mlp", repo, seed=1)
    new = _expected(repo)
    export_zoo("mlp", repo, seed=0)
    old = _expected(repo)
    assert not _close(new, old)
    x = example_input("mlp").numpy()
    svc = BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(tmp_path / "objects")},
        memory_mb=512,
        split="output",
        max_workers=2,
        log_dir=tmp_path / "logs",
    )
    make_plan, replaced = svc._make_plan, []

    def make_plan_then_export(*args):
        made = make_plan(*args)
        if not replaced:  # the user exports new weights right after the plan was made
            replaced.append(export_zoo("mlp", repo, seed=1))
        return made

    svc._make_plan = make_plan_then_export

    async def run():
        await svc.start()
        try:
            first = await svc.infer("mlp", {"input": x}, workers=2)
            export_zoo("mlp", repo, seed=0)  # and then the old weights again
            again = await svc.infer("mlp", {"input": x}, workers=2)
            return first, again
        finally:
            await svc.close()

    first, again = asyncio.run(run())
    assert _close(first.outputs["output"], new)
    assert _close(again.outputs["output"], old)
