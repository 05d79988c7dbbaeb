"""What the planner says when no plan fits: the memory size that holds the whole model (a 128 MB
function has no room for any weights, so "allow more workers" would not help there)."""

from __future__ import annotations

from burst.plan import FUNCTION_RUNTIME_MB, weight_budget_bytes
from policies.planner import _resources


def no_fit_message(graph, request, cands, entry_bytes: int) -> str:
    """Why no plan fits, with the memory size that holds the whole model in one function (a
    128 MB function has no room for any weights: "allow more workers" would not help)."""
    mib = 1 << 20
    room = max(0, request.limits().worker_weight_bytes)
    least: dict[int, int] = {}  # per node: its serial candidate's bytes, plain where it has one
    for c in (c for c in cands if c.split == "serial"):
        least[c.start] = min(least.get(c.start, 1 << 62), _resources(c)[0])
    whole = sum(least.values())
    one_mb = 128
    while one_mb < 10240 and weight_budget_bytes(one_mb) - entry_bytes < whole:
        one_mb += 64
    if not room:
        why = (
            f"a {request.memory_mb} MB function has no room for weights (the function runtime "
            f"takes about {FUNCTION_RUNTIME_MB} MB)"
        )
    else:
        why = f"a {request.memory_mb} MB function holds {room / mib:.0f} MB of weights" + (
            f" and no split into up to {request.workers} workers fits that"
            if request.workers > 1
            else ""
        )
    model_mb = sum(w["bytes"] for w in graph.weights.values()) / 1e6
    return (
        f"no plan of {graph.model} fits: {why}; the whole model ({model_mb:.1f} MB of weights) "
        f"fits one function of {one_mb} MB" + (" (or allow more workers)" if room else "")
    )
