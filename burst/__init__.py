"""Partitioned fork-join inference on functions.

Public names (imported lazily so ``burst.faas``/``burst.store`` stay light):
``build_graph``, ``Graph``, ``make_plan``, ``Plan``, ``PlanError``, ``prepare_plan``,
``run_master``, ``run_worker``, ``master``, ``worker``, ``BurstError``, ``run_plan_local``;
what the gateway composes: ``BurstBackend`` (the protocol), ``BurstService`` (the embedded
implementation), ``BurstUnavailable``, ``BurstAnswer``, ``MasterReport``; and ``RetryPolicy``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Graph": "burst.graph",
    "GraphError": "burst.graph",
    "build_graph": "burst.graph",
    "Plan": "burst.plan",
    "PlanError": "burst.plan",
    "make_plan": "burst.plan",
    "PLAN_VERSION": "burst.plan",
    "prepare_plan": "burst.weights",
    "run_plan_local": "burst.execute",
    "BurstError": "burst.runtime",
    "run_master": "burst.runtime",
    "run_worker": "burst.runtime",
    "master": "burst.runtime",
    "worker": "burst.runtime",
    "BurstBackend": "burst.backend",
    "BurstService": "burst.service",
    "BurstUnavailable": "burst.exchange",
    "BurstAnswer": "burst.exchange",
    "MasterReport": "burst.report",
    "RetryPolicy": "burst.retry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'burst' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
