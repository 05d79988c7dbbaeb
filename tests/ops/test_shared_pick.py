"""The simulator's inlined replica choice (ops/sim/shared_pick.py) picks what the rule in
policies/routing/replica_choice.py picks, and predicts the same answer time, to the bit."""

from __future__ import annotations

from collections import deque

import numpy as np

from ops.sim.shared_pick import answer_at, pick_by_time
from ops.sim.shared_vm import SharedReplica
from policies.routing.replica_choice import (
    ModelWork,
    answer_ms,
    blocking_ms,
    choose_replica,
)

WORKS = [
    ModelWork(((1, 0.1), (32, 2.0)), 32),  # a tight model (mlp)
    ModelWork(((1, 12.0), (8, 55.0)), 8),  # a heavy one (resnet)
    ModelWork(((1, 30.0), (4, 40.0)), 4, computes=False),  # one that only waits (delay)
    ModelWork(((1, 9.0), (4, 7.0), (8, 20.0)), 8),  # a curve that dips: no early stop
]


def _replica(rng, now_s: float) -> SharedReplica:
    r = SharedReplica(0, 0.0, 0.0, len(WORKS))
    for m in range(len(WORKS)):
        r.queues[m] = deque(range(int(rng.integers(0, 12)) * int(rng.random() < 0.5)))
        r.in_service[m] = int(rng.integers(0, 9))
        r.answered_s[m] = now_s + float(rng.uniform(-1, 1))
    r.qn = sum(len(q) for q in r.queues)
    r.idle_s = now_s + float(rng.uniform(-0.5, 1))
    return r


def test_the_inlined_pick_and_answer_equal_the_rule_on_random_fleets():
    rng, now_s, asked = np.random.default_rng(7), 100.0, 0
    for _ in range(3000):
        ready = [_replica(rng, now_s) for _ in range(int(rng.integers(2, 9)))]
        held = [r.rows_by_model(now_s) for r in ready]
        m, rows = int(rng.integers(0, len(WORKS))), int(rng.integers(1, 4))
        a, b = (int(x) for x in rng.choice(len(ready), 2, replace=False))
        for i, r in enumerate(ready):
            assert answer_at(r, m, WORKS, now_s, rows) == answer_ms(held[i], m, WORKS, rows)
        pick = a if sum(held[a]) <= sum(held[b]) else b
        want = choose_replica(held, m, WORKS, a, b, rows)
        if blocking_ms(held[pick], m, WORKS):  # (the case the simulator asks it in)
            asked += 1
            assert pick_by_time(ready, m, WORKS, pick, now_s, rows) == want
            assert want == _first_fastest(held, m, pick, rows)  # (its early stop is exact)
    assert asked > 1000


def _first_fastest(held, m: int, pick: int, rows: int) -> int:
    """The rule without its early stop: the lowest index of the fastest, the pick on a tie."""
    best, best_ms = pick, answer_ms(held[pick], m, WORKS, rows)
    for i, h in enumerate(held):
        if answer_ms(h, m, WORKS, rows) < best_ms:
            best, best_ms = i, answer_ms(h, m, WORKS, rows)
    return best
