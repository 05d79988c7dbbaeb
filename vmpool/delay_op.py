"""``tidegate::delay``: an op that waits instead of computing, for the ``delay`` load-test model.

Like Knative's autoscale test image, it lets scaling be tested at rates far beyond what two cores
compute: a batch of n rows takes ``delay_ms + per_item_ms * n`` of wall time and almost no CPU
(the thread sleeps, the GIL is released). Every process that runs such a program (model servers,
function instances) imports this module before loading it; ``burst.graph`` and
``vmpool.artifact`` do so when they meet the op.
"""

from __future__ import annotations

import time

import torch


# The low-level registration, not ``torch.library.custom_op``: the latter's first call imports
# ~800 modules (torch._dynamo and friends), 5 s of CPU in every fresh function instance, which
# made the burst path's first request per instance look like a multi-second cold start.
_LIB = torch.library.Library("tidegate", "DEF")
_LIB.define("delay(Tensor x, float delay_ms, float per_item_ms) -> Tensor")


def delay(x: torch.Tensor, delay_ms: float, per_item_ms: float) -> torch.Tensor:
    rows = x.shape[0] if x.dim() else 1
    time.sleep(max(delay_ms + per_item_ms * rows, 0.0) / 1000.0)
    return x.clone()


_LIB.impl("delay", delay, "CompositeExplicitAutograd")
OP = "tidegate.delay.default"  # as a graph node names it (``burst.graph``)


def wait_ms(op: str, args: list, batch: int) -> float:
    """What a graph node waits at ``batch``: this op's delay_ms + per_item_ms x rows, 0 for
    any other op (the performance model prices the wait that no MAC count shows)."""
    if op != OP or len(args) < 3:
        return 0.0
    delay_ms, per_item_ms = args[1], args[2]
    if not all(isinstance(v, int | float) for v in (delay_ms, per_item_ms)):
        return 0.0
    return max(float(delay_ms) + float(per_item_ms) * batch, 0.0)


@torch.library.register_fake("tidegate::delay")
def _delay_fake(x: torch.Tensor, delay_ms: float, per_item_ms: float) -> torch.Tensor:
    return torch.empty_like(x)


class DelayModel(torch.nn.Module):
    """Identity over a small FP32 tensor whose forward waits."""

    def __init__(self, delay_ms: float = 50.0, per_item_ms: float = 5.0):
        super().__init__()
        if delay_ms < 0 or per_item_ms < 0:
            raise ValueError("delay_ms and per_item_ms must be >= 0")
        self.delay_ms = float(delay_ms)
        self.per_item_ms = float(per_item_ms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.tidegate.delay(x, self.delay_ms, self.per_item_ms)
