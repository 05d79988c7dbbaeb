"""Suite-wide hooks. Test files run longest first (``tests/support/file_seconds.py``): with
``--dist loadfile --no-loadscope-reorder`` (the Makefile's) xdist hands them out in this order,
so the last minutes are short files on both workers, not one long file on one."""

from __future__ import annotations

from tests.support import file_seconds


def pytest_collection_modifyitems(session, config, items) -> None:
    table = file_seconds.load()
    items.sort(key=lambda item: file_seconds.sort_key(item.nodeid, table))
