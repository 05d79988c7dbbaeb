"""A gateway that died without removing its /dev/shm tensor directory (SIGKILL, a crash, a
test that never closed it) left it, and any tensors in flight in it, in memory until the
machine rebooted: the soak's host held 131 of them. The burst service now marks its directory
with its owner and, starting, removes the directories whose owner is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import burst.service
from burst import tensor_roots
from burst.service import BurstService

ROOT = Path(__file__).resolve().parents[2]


def _claimed_by_a_process_that_exited(parent: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix=tensor_roots.PREFIX, dir=parent))
    (root / "req-1").mkdir()
    (root / "req-1" / "tensor.bin").write_bytes(b"\0" * 4096)  # a request's tensor, left behind
    code = "import sys; from burst import tensor_roots; tensor_roots.claim(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(root)], check=True, cwd=ROOT)
    return root


def test_a_starting_service_removes_dead_gateways_tensor_dirs_and_no_live_ones(
    tmp_path, monkeypatch
):
    shm = tmp_path / "shm"
    shm.mkdir()
    dead = [_claimed_by_a_process_that_exited(shm) for _ in range(3)]
    unmarked = Path(tempfile.mkdtemp(prefix=tensor_roots.PREFIX, dir=shm))  # nothing says free
    alive = Path(tempfile.mkdtemp(prefix=tensor_roots.PREFIX, dir=shm))
    tensor_roots.claim(alive)  # another gateway, running (this process)
    other_file = shm / "not-ours"
    other_file.write_text("x")
    made: list[str] = []

    def fresh_root(cfg):
        made.append(tempfile.mkdtemp(prefix=tensor_roots.PREFIX, dir=shm))
        return made[-1]

    monkeypatch.setattr(burst.service, "memory_tensor_root", fresh_root)
    svc = BurstService(
        tmp_path / "repo",
        platform={"kind": "local"},
        store={"kind": "dir", "root": str(tmp_path / "objects")},
    )
    svc._use_memory_tensor_root()
    left = set(shm.iterdir())
    assert not any(d in left for d in dead), "dead gateways' tensor directories kept"
    assert {unmarked, alive, other_file, Path(made[0])} <= left
    # and its own directory names it, so the next gateway after a crash of this one frees it
    assert (Path(made[0]) / tensor_roots.OWNER_FILE).read_text().split()[0] == str(os.getpid())


def test_a_reused_process_id_does_not_keep_a_dead_owners_directory(tmp_path):
    root = tmp_path / (tensor_roots.PREFIX + "x")
    root.mkdir()
    # this process's id, but another start time: the owner that had the id is gone
    (root / tensor_roots.OWNER_FILE).write_text(f"{os.getpid()} 1\n")
    assert tensor_roots.sweep(tmp_path) == [root] and not root.exists()
