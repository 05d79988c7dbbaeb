"""What every leg of a split stage computes whole, whatever its share of the work ("graph"
split pricing, ``Profile.split_pricing``). Pure.

A leg's nodes dispatch as often as the whole stage's do, and a conv's call on a tile costs
more than its share of the MACs: it reads all the conv's weights and pays by its activations
(``Profile.tile_call``, measured by ``ops/bench/plan7_tiles.py``: tiles of half a ResNet-50
or VGG-16 conv ran 1.0-1.5x their share of the whole, a quarter up to 2x). burst25plan
measured 2-way ResNet legs at 1.2-1.3x their MAC share; priced by share alone, a model
without split runs of its own was predicted 15-30 % fast on its splits. An output leg (its
slice of the channels) reads its slice of the weights: it pays only the dispatch whole.
"""

from __future__ import annotations

from policies.compute_fit import ComputeFit, KindFit, op_kind
from policies.perf_types import NodeWork


def unshared_parts(
    works: list[NodeWork], fit: ComputeFit, tile: KindFit, scale: float
) -> dict[str, tuple[float, float]]:
    """Per node (what an output leg, what a spatial leg computes whole), at the compute
    scale functions run nodes at; each is capped by the node's own time where it is used."""
    out = {}
    for w in works:
        fixed = fit.fixed_ms(w.op, w.steps)
        spatial = fixed + fit.weight_ms(w.op, w.weight_bytes)
        if op_kind(w.op) == "conv":
            spatial = max(spatial, tile.ms(0, w.act_bytes, w.weight_bytes))
        out[w.name] = (fixed * scale, spatial * scale)
    return out


def unshared_ms(
    parts: dict[str, tuple[float, float]], times: dict[str, float], nodes, split: str
) -> float:
    """The whole part of a ``split`` leg over ``nodes`` (each at most the node's time)."""
    i = 1 if split == "spatial" else 0
    return sum(min(times[n], parts[n][i]) for n in nodes if n in parts)
