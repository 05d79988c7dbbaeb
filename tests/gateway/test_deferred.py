"""Bookkeeping put off until the answer is written (gateway/deferred.py)."""

from __future__ import annotations

import logging

from gateway.deferred import later, run_after
from gateway.call import CallContext


def _ctx(after: list | None) -> CallContext:
    return CallContext(tenant=None, model="m", after=after)  # type: ignore[arg-type]


def test_without_a_list_the_work_is_done_at_once():
    done: list[int] = []
    later(_ctx(None), done.append, 1)
    assert done == [1]


def test_with_a_list_the_work_waits_for_run_after_in_order():
    done: list[int] = []
    after: list = []
    ctx = _ctx(after)
    later(ctx, done.append, 1)
    later(ctx, done.append, 2)
    assert done == []  # nothing before the answer is written
    run_after(after)
    assert done == [1, 2]
    assert after == []  # run once


def test_a_failing_piece_is_logged_and_the_rest_still_runs(caplog):
    done: list[int] = []
    after: list = []
    ctx = _ctx(after)
    later(ctx, lambda: 1 / 0)
    later(ctx, done.append, 2)
    with caplog.at_level(logging.ERROR, logger="tidegate.gateway"):
        run_after(after)  # (the request is answered already: nothing may reach it)
    assert done == [2]
    assert "bookkeeping after an answer failed" in caplog.text
