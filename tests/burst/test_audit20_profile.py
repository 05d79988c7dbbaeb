"""``tidegate profile`` at a memory size no plan fits (session 20's audit): one line saying why
and nothing written, where it measured every plan and ended in a traceback ("ProfileError: no
samples" at 128 MB after ~13 s; "PlanError: no plan of hugemlp fits" at 321 MB, in the second
pass, after all of the plans' runs)."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import audit20_models as am  # noqa: E402

from ops.cli import main as cli  # noqa: E402

pytestmark = pytest.mark.slow  # the second case starts the local function runtime


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A 2.2 MB MLP: more than a 321 MB function's weight room (0.67 MB) and than half of it."""
    tmp = tmp_path_factory.mktemp("audit20_profile")
    module = am.build("hugemlp", d=512, wide=1024)
    torch.export.save(am.export(module, am.example("hugemlp")), str(tmp / "mlp.pt2"))
    assert _cli("export", str(tmp / "mlp.pt2"), "--name", "mlp", "--out", str(tmp / "m"))[0] == 0
    return tmp / "m"


@pytest.mark.parametrize(
    "memory_mb,workers,says",
    [
        ("128", "2,4", "--memory-mb 128: a function this size has no room for weights"),
        ("321", "2", "cannot profile mlp in 321 MB functions: no plan of mlp fits"),
    ],
)
def test_a_memory_size_no_plan_fits_is_one_line_and_writes_nothing(repo, memory_mb, workers, says):
    code, out, err = _cli(
        "profile", "mlp", "--repo", str(repo), "--memory-mb", memory_mb, "--workers", workers,
        "--reps", "2", "--cold-reps", "0",
    )  # fmt: skip
    assert code == 2 and says in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "plan " not in out  # refused before any plan was run
    assert not (repo / "mlp" / "profile.json").exists()
    plan = _cli("plan", "mlp", "--repo", str(repo), "--memory-mb", memory_mb, "--workers", "2")
    assert plan[0] == 2 and "no plan of mlp fits" in plan[2]  # as tidegate plan says
