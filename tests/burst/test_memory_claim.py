"""The memory claim, measured on the real local function runtime (which enforces memory sizes):
VGG-16 with its FC layers split by output features runs in 512 MB functions; unsplit it does not
fit. The planner picks how many ways (up to the workers asked) from the memory limit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from burst.service import BurstService, BurstUnavailable
from vmpool.artifact import load_artifact
from vmpool.export import export_zoo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vgg16_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("vgg16")
    # 32x32 keeps the convs cheap; the FC layers (25088 -> 4096 -> 4096 -> 1000) are full size
    export_zoo("vgg16", repo, size=(32, 32), max_batch_size=1)
    return repo


async def _service(repo, tmp_path, memory_mb, split):
    svc = BurstService(
        repo,
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(tmp_path / "objects")},
        memory_mb=memory_mb,
        concurrency=12,
        function_timeout_s=300,
        log_dir=tmp_path / "logs",
        split=split,
    )
    await svc.start()
    return svc


async def test_vgg16_fc_split_fits_512mb_and_unsplit_does_not(vgg16_repo, tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        ref = load_artifact(vgg16_repo, "vgg16").load_module()(torch.from_numpy(x)).numpy()
    scale = float(np.abs(ref).max())

    # 6 workers asked (the fewest that fit is 5): each function process costs seconds of CPU
    svc = await _service(vgg16_repo, tmp_path / "512mb", 512, "auto")
    try:
        plan = await svc.plan_for("vgg16", 6, 1)
        fc = [s for s in plan.stages if s.split == "output"]
        assert fc, "the 512 MB limit must force an output split of the FC layers"
        fc6 = max(fc, key=lambda s: max(s.weight_bytes))
        assert 2 <= fc6.workers <= 6
        # each worker holds only its slice of fc6's 411 MB, well inside a 512 MB function
        assert max(fc6.weight_bytes) <= 411e6 / fc6.workers * 1.01 < 256e6
        answer = await svc.infer("vgg16", {"input": x}, workers=6)
        # the whole model in one 512 MB function (same runtime): the limit is enforced
        with pytest.raises(BurstUnavailable, match="OutOfMemory"):
            await svc.infer("vgg16", {"input": x}, workers=1, split="none")
    finally:
        await svc.close()
    assert np.abs(answer.outputs["output"] - ref).max() <= 1e-5 * scale
    assert 0 < answer.max_memory_used_mb < 512, answer.max_memory_used_mb

    # the whole model where it fits: its measured peak is past 512 MB
    svc = await _service(vgg16_repo, tmp_path / "2048mb", 2048, "none")
    try:
        whole = await svc.infer("vgg16", {"input": x}, workers=1)
    finally:
        await svc.close()
    assert np.abs(whole.outputs["output"] - ref).max() <= 1e-5 * scale
    assert whole.max_memory_used_mb > 512, whole.max_memory_used_mb
    print(
        f"vgg16 peak: FC split {fc6.workers} ways {answer.max_memory_used_mb} MB per function, "
        f"unsplit {whole.max_memory_used_mb} MB"
    )
