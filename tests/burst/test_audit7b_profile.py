"""``tidegate profile`` as a user runs it on a model of their own with two inputs (issue 7's
audit, s13). It failed after its first progress line with a KeyError traceback: the profiler fed
only the first input (node times, VM service, plan runs, cold starts). Then ``tidegate plan``
and the gateway plan from what it wrote; and Ctrl-C half-way is one line, a non-zero exit, no
profile.json and no process left behind (it exited 130 without a word)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from burst.service import BurstService
from ops.cli import main
from policies.profile import Profile

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class TwoInputs(nn.Module):
    """An image and a vector of side information, joined before the head."""

    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.side = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, image, side):
        return self.head(torch.cat([self.image(image), self.side(side)], 1))


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def repo(tmp_path) -> Path:
    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=4)
    program = torch.export.export(
        TwoInputs().eval(),
        (torch.randn(2, 3, 32, 32), torch.randn(2, 8)),
        dynamic_shapes=({0: batch}, {0: batch}),
    )
    torch.export.save(program, str(tmp_path / "two.pt2"))
    code, _, err = _cli("export", tmp_path / "two.pt2", "--out", tmp_path / "repo", "--name", "two")
    assert code == 0, err
    return tmp_path / "repo"


def _plan(repo: Path) -> dict:
    code, out, err = _cli("plan", "two", "--repo", repo, "--workers", "2", "--json")
    assert code == 0, err
    return json.loads(out)


def test_profile_of_a_two_input_model_is_written_and_plans_use_it(repo, tmp_path):
    before = _plan(repo)
    assert before["inputs"] == ["image", "side"]  # the model's names
    code, out, err = _cli(
        "profile", "two", "--repo", repo, "--reps", 2, "--workers", 2, "--cold-reps", 1
    )
    assert code == 0, err
    assert sum(1 for line in out.splitlines() if line.startswith("[")) >= 5  # progress
    written = Profile.from_json(json.loads((repo / "two" / "profile.json").read_text()))
    assert written.models["two"].node_ms and written.models["two"].vm_service_ms
    # it says which model it measured: the zoo's entries beside it are the bundled profile's
    assert written.measured_models == ("two",) and "resnet18" in written.models
    after = _plan(repo)
    assert after["predicted_p50_ms"] != before["predicted_p50_ms"]  # the profile's figures
    service = BurstService(
        repo, platform={"kind": "local"}, store={"kind": "dir", "root": str(tmp_path / "o")}
    )
    import asyncio

    served = asyncio.run(service.plan_for("two", 2, 1))
    assert served.plan_id == after["plan_id"]


def _descendants(pid: int) -> list[int]:
    rows = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    pairs = [tuple(int(v) for v in line.split()) for line in rows.splitlines()]
    found, frontier = [], {pid}
    while frontier:
        frontier = {p for p, parent in pairs if parent in frontier}
        found += sorted(frontier)
    return found


def test_ctrl_c_half_way_is_one_line_and_leaves_nothing(repo):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops", "profile", "two", "--repo", str(repo), "--reps", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C goes to the whole foreground group: killpg below
    )
    try:
        deadline = time.monotonic() + 600  # a guard against a hang, not a timing
        line = ""
        while "invocation round trip" not in line:  # the function runtime is up: half-way
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline()
        running = _descendants(proc.pid)
        assert running  # the runtime and its instances
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err, err
    assert not (repo / "two" / "profile.json").exists()
    assert not list((repo / "two").glob("*.tmp"))
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in running):
        assert time.monotonic() < deadline, [p for p in running if os.path.exists(f"/proc/{p}")]
        time.sleep(0.1)
