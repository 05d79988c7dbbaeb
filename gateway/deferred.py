"""Bookkeeping put off until a request's answer is written.

An HTTP endpoint gives the dispatcher a list (``CallContext.after``); the dispatcher puts its
metrics, stats and what the live view learns from an answer there (``later``), and the endpoint
runs them (``run_after``) right after writing the answer, in the same step of its task: no other
request runs in between, so nothing is decided on figures older than before, and the client
has its answer sooner (at one client on the small ``mlp`` model the gateway's whole time is on
the request's path). The ledger row is not put off: an answer goes out only once its row is in.
Callers without a list (gRPC, the async queue) have the work done at once.
"""

from __future__ import annotations

import logging

log = logging.getLogger("tidegate.gateway")


def later(ctx, fn, *args) -> None:
    """``fn(*args)`` once the answer is written when ``ctx.after`` collects such work, else now."""
    after = ctx.after
    if after is None:
        fn(*args)
    else:
        after.append((fn, args))


def run_after(after: list) -> None:
    """Run what ``later`` put off; a failure is logged, never the request's (it is answered)."""
    for fn, args in after:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - bookkeeping must not break the connection's handling
            log.exception("bookkeeping after an answer failed")
    after.clear()
