"""Which ready replica takes a VM request on a fleet serving several models.

Every replica holds every model; each model has its own batcher, and a model that computes
waits while another model's batch holds the replica's cores (``ops/sim/shared_vm.py``, as the
model server runs them). So a request of a tight model (mlp, 6 ms) sent by power of two
choices on outstanding *rows* to a replica whose rows are a ResNet-50 batch (142 ms at 8 rows)
waits for that batch: on rand4's s17 30 % of mlp's requests did, and missed.

The rule here weighs what a replica holds by *time*, per model: a request of model ``m`` is
answered after its own model's rows ahead and its own batch, plus, when ``m`` computes, every
other computing model's outstanding rows (served in full batches at that model's batch times:
the oldest request's model goes first, so what already waits goes before it). Power of two
choices keeps its pick (the replica with fewer outstanding rows) unless that pick holds other
models' work in the way; then the request goes to the replica of all ready ones that answers
it first. A fleet of one model, or models that only wait (the ``delay`` load-test model's
batches take no core), keeps power of two choices' pick exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..vm_perf import batch_service_ms


@dataclass(frozen=True)
class ModelWork:
    """What one model's rows cost a replica: its batch-time curve (ms by rows, as
    ``ModelStats.vm_service_ms_by_batch``), its largest batch, and whether its batches hold
    the replica's cores (False: the batch only waits, and runs beside the others)."""

    curve: tuple[tuple[int, float], ...]
    max_batch_size: int
    computes: bool = True
    # drain_ms by rows (pure: asked per request by the simulator; a dict, not lru_cache, which
    # hashed the whole curve on every call)
    drains: dict[int, float] = field(default_factory=dict, compare=False, repr=False)
    # batch time never falls with the rows (then neither does drain_ms: choose_replica's bound)
    monotone: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        times = [ms for _, ms in self.curve]
        object.__setattr__(self, "monotone", all(a <= b for a, b in zip(times, times[1:])))


def drain_ms(rows: int, work: ModelWork) -> float:
    """Time to serve ``rows`` rows of one model: full batches, then the rows left over."""
    ms = work.drains.get(rows)
    if ms is None:
        ms = work.drains[rows] = _drain_ms(rows, work)
    return ms


def _drain_ms(rows: int, work: ModelWork) -> float:
    if rows <= 0:
        return 0.0
    cap = work.max_batch_size
    full, rest = divmod(rows, cap)
    ms = full * batch_service_ms(work.curve, cap) if full else 0.0
    return ms + (batch_service_ms(work.curve, rest) if rest else 0.0)


def blocking_ms(rows_by_model: Sequence[int], model: int, works: Sequence[ModelWork]) -> float:
    """The other models' work a request of ``model`` waits behind on a replica holding
    ``rows_by_model`` outstanding rows: none unless ``model`` computes, and only theirs that
    compute."""
    if not works[model].computes:
        return 0.0
    ms = 0.0
    for j, rows in enumerate(rows_by_model):
        if rows and j != model and works[j].computes:
            ms += drain_ms(rows, works[j])
    return ms


def answer_ms(
    rows_by_model: Sequence[int], model: int, works: Sequence[ModelWork], rows: int = 1
) -> float:
    """Predicted time until a request of ``rows`` rows of ``model`` sent to a replica holding
    ``rows_by_model`` is answered (service time only: no gateway or network time)."""
    own = drain_ms(rows_by_model[model] + rows, works[model])
    return own + blocking_ms(rows_by_model, model, works)


def choose_replica(
    replicas: Sequence[Sequence[int]],
    model: int,
    works: Sequence[ModelWork],
    a: int,
    b: int,
    rows: int = 1,
) -> int:
    """The index of the replica (of ``replicas``, each its outstanding rows per model) that
    takes a request of ``model``, given power of two choices' two draws ``a`` and ``b``: the
    one of them with fewer outstanding rows (``a`` on a tie), unless other models' work on it
    is in the way; then the replica of all that answers first (``answer_ms``; the lowest
    index on a tie), or the pick itself when none answers sooner."""
    pick = a if sum(replicas[a]) <= sum(replicas[b]) else b
    if not blocking_ms(replicas[pick], model, works):
        return pick
    best, best_ms = pick, answer_ms(replicas[pick], model, works, rows)
    # where drain_ms grows with the rows no replica answers before an empty one: the first to
    # reach that bound is the answer, and the rest need not be counted (the simulator counts
    # each replica's rows as it is read)
    bound = drain_ms(rows, works[model]) if works[model].monotone else -1.0
    for i, held in enumerate(replicas):
        ms = answer_ms(held, model, works, rows)
        if ms < best_ms:
            best, best_ms = i, ms
            if ms <= bound:
                break
    return best
