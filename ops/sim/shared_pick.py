"""Replica choice weighed by time (``policies/routing/replica_choice.py``) on the simulator's
replicas, per request: the same rule and the same arithmetic, read straight from each
replica's queues (no per-replica row lists, no calls per model). ``choose_replica`` built on
``HeldRows`` took 16 of 80 profiled seconds of the two-model day's busiest half hour.
``tests/ops/test_shared_pick.py`` holds the two to the same pick."""

from __future__ import annotations

from policies.routing.replica_choice import drain_ms


def pick_by_time(ready: list, m: int, works: list, pick: int, now_s: float, rows: int = 1) -> int:
    """``choose_replica(held, m, works, a, b, rows)`` where power of two choices picked
    ``pick`` and other models' work is in its way (``SharedVmPool.others_in_way``)."""
    bound = drain_ms(rows, works[m]) if works[m].monotone else -1.0
    best, best_ms = pick, answer_at(ready[pick], m, works, now_s, rows)
    for i, r in enumerate(ready):
        ms = answer_at(r, m, works, now_s, rows)
        if ms < best_ms:
            best, best_ms = i, ms
            if ms <= bound:
                break
    return best


def answer_at(r, m: int, works: list, now_s: float, rows: int = 1) -> float:
    """``replica_choice.answer_ms`` of replica ``r`` (``SharedReplica``) at ``now_s``: its own
    model's rows and batch, then every other computing model's rows (summed in the same order,
    so a tie falls as it does there)."""
    queues, busy = r.queues, r.idle_s > now_s
    in_service, answered = r.in_service, r.answered_s
    own = len(queues[m]) + (in_service[m] if busy and answered[m] > now_s else 0) + rows
    work = works[m]
    ms = work.drains.get(own)
    if ms is None:
        ms = drain_ms(own, work)
    blocking = 0.0
    if not work.computes:  # (a model that only waits runs beside the others)
        return ms + blocking
    for j, work in enumerate(works):
        if j == m or not work.computes:
            continue
        held = len(queues[j]) + (in_service[j] if busy and answered[j] > now_s else 0)
        if held:
            d = work.drains.get(held)
            blocking += d if d is not None else drain_ms(held, work)
    return ms + blocking
