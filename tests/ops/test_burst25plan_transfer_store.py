"""``tidegate profile`` times the directory transfer where the burst service keeps tensors in
flight (/dev/shm), not on its disk-backed scratch directory (burst25plan)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ops.commands.profile_measure import measure_transfers
from policies.profile import TransferFit

SHM = Path("/dev/shm")


@pytest.mark.skipif(not os.access(SHM, os.W_OK), reason="no writable /dev/shm")
def test_dir_transfer_is_timed_on_the_services_tensor_store(tmp_path):
    said: list[str] = []
    base = {"s3": TransferFit(20.0, 10.0)}
    got = asyncio.run(measure_transfers(base, tmp_path, 1, said.append))
    assert set(got) == {"s3", "inline", "dir"}
    assert got["s3"] == base["s3"]  # what it does not measure is kept
    line = next(s for s in said if s.startswith("transfer dir"))
    root = Path(line.split(" (on ", 1)[1].split(",", 1)[0])
    assert root.parent == SHM  # the store the service's tensors in flight use
    assert not root.exists()  # nothing left behind, on /dev/shm or in the scratch directory
    assert not any(tmp_path.rglob("*.part"))
