"""The routing policy's second look at a VM request once the pool has picked its replica, on a
fleet serving several models: ``SloAware.replica_misses`` is asked with that replica's predicted
answer (``policies.routing.replica_choice.answer_ms``: its own and the other models' batches
ahead, which the live view's rows per replica do not tell apart), and a request the replica
would answer too late goes to functions that meet its SLO. The simulator asks the same
(``ops/sim/shared.py`` ``SharedSimulation._misses``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vmpool.artifact import ModelConfig
from vmpool.pool_routing import ReplicaRouting

from .call import CallContext

if TYPE_CHECKING:
    from .dispatch import Dispatcher


def second_look(
    d: Dispatcher, ctx: CallContext, cfg: ModelConfig, batch: int
) -> Callable[[float], bool] | None:
    """What the pool asks with the picked replica's answer (ms): True sends the request to
    functions instead. None where there is nothing to ask: a policy without a second look, a
    forced route, no burst path, or a pool of one model (it weighs rows only)."""
    policy = d.policy
    look = getattr(policy, "replica_misses", None)
    if look is None or ctx.forced_route or d.burst is None:
        return None
    if not isinstance(d.pool, ReplicaRouting) or not d.pool.weighs_models():
        return None
    request = ctx.route_request(cfg.name, cfg.slo_ms, batch)  # (not forced: returned above)
    budget_ms = policy.budget_ms(request)

    def misses(answer_ms: float) -> bool:
        return answer_ms > budget_ms and look(request, d.live_state(), answer_ms) is not None

    return misses
