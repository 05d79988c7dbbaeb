"""The transfer fit times a received tensor's first use: a tensor received from /dev/shm maps
the file (burst25hop), and its pages are only mapped in when first read, so a fit of send +
receive alone priced a leg's input ~0.16 ms/MB low (burst25plan)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import torch

from burst.store.local_dir import LocalDirStore
from burst.tensors import receive, send
from ops.profiler import touch_pages

SHM = Path("/dev/shm")


def _mapped_kb(path_part: str) -> int:
    """Rss (kB) of this process's mappings of files whose path holds ``path_part``."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = path_part in line
        elif inside and fields[:1] == ["Rss:"]:
            total += int(fields[1])
    return total


@pytest.mark.skipif(not os.access(SHM, os.W_OK), reason="no writable /dev/shm")
def test_touch_pages_maps_in_every_page_of_a_received_tensor():
    root = SHM / f"burst25plan-touch-{os.getpid()}"
    store = LocalDirStore(root)
    try:

        async def round_trip():
            ref = await send(torch.ones(1 << 20), store, "t/x", transport="store")  # 4 MiB
            return await receive(ref, store)

        got = asyncio.run(round_trip())
        before = _mapped_kb(root.name)
        if before >= 4096:
            pytest.skip("this store's receive does not map the file")
        assert touch_pages(got) == pytest.approx(1024.0)  # one value a page, all ones
        assert _mapped_kb(root.name) >= 4096  # every page of the 4 MiB now mapped in
    finally:
        shutil.rmtree(root, ignore_errors=True)
