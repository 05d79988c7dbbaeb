"""The transports the planner weighs per split stage (``policies.planner`` re-exports these):
each split candidate once per transport, so the search picks a stage's transport with its
split. Pure."""

from __future__ import annotations

from dataclasses import replace

from policies.perf import Candidate, Deployment, PerfModel

_INLINE_FRAMING_BYTES = 4096  # JSON around a base64 tensor in an event (burst.tensors)


def stage_transports(dep: Deployment) -> tuple[str, ...]:
    """The transports the planner weighs for a split stage: with ``per-stage``, inline, the
    object store and, where the deployment has queues (sqs), the queue; else the one set."""
    if dep.transport != "per-stage":
        return ()
    return ("inline", "store", "queue") if dep.store_kind == "sqs" else ("inline", "store")


def with_transports(model: PerfModel, candidates: list[Candidate]) -> list[Candidate]:
    """Each split candidate once per transport ``stage_transports`` allows (inline only where
    every tensor of the stage fits an invocation's payload): the search then picks a stage's
    transport with its split, from the transfer fits and prices, exactly like the rest."""
    transports = stage_transports(model.dep)
    if not transports:
        return candidates
    out: list[Candidate] = []
    for c in candidates:
        if c.split == "serial":
            out.append(c)
            continue
        largest = max(c.bytes_in[1:] + c.bytes_out[1:], default=0)
        inline_bytes = 4 * ((largest + 2) // 3) + _INLINE_FRAMING_BYTES
        for t in transports:
            if t != "inline" or inline_bytes <= model.dep.max_payload_bytes:
                out.append(replace(c, transport=t))
    return out
