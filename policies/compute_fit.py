"""Single-thread compute time of a graph node from its work, for nodes no profile measured.

Two forms. The original (``ms_per_gmac`` per op family plus one fixed ms per node) counts
MACs only, so it priced memory-bound layers 2-8x low (depthwise convs, SiLU, concats,
upsampling) and a transformer's token-batched linears ~25x high (its linear rate came from
batch-1 classifiers, which stream their weights). Profiles from ``tidegate profile`` since
then also carry ``kinds``: per op kind a fixed ms, ms per GMAC, ms per MB of activations
read and written, and ms per MB of weights read, fitted by non-negative least squares
(``fit_kind``) over measured nodes (``ops/perfgen_fit.py`` says which), and per op where
the fit saw enough of it. A profile without ``kinds`` prices as before. Pure.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

# op kinds of the bytes-aware fit, first match wins (an op name is "aten.NAME.overload")
_KIND_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("elementwise", ("hardtanh", "hardsigmoid", "relu", "clamp")),  # not "tanh", "sigmoid"
    # little arithmetic, bytes moved: concatenation, resampling, padding, copies, gathers
    # (before "linear": "upsample_bilinear2d" is no linear layer)
    (
        "copy",
        (
            ".cat.",
            ".stack.",
            "upsample",
            "pad",
            "clone",
            "contiguous",
            "_to_copy",
            "embedding",
            "index",
            "gather",
            "repeat",
            "roll",
            "flip",
        ),
    ),
    ("attention", ("scaled_dot_product", "_flash_attention", "_efficient_attention")),
    ("conv", ("conv",)),
    # LSTM, GRU, RNN: their steps' matmuls (burst.graph_macs counts them), a fixed cost per
    # step and their hidden-to-hidden weights read every step (burst.graph_macs.recurrent_work)
    ("recurrent", (".lstm.", ".gru.", ".rnn_")),
    ("linear", ("linear", "addmm", ".mm.", "bmm", "matmul", "einsum")),
    ("norm", ("batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm")),
    ("pool", ("pool", ".mean.", ".sum.", ".amax.", ".amin.", ".max.dim", ".min.dim", "argmax")),
    # exp, erf or division per element: 3-10x an add (SiLU 3.0 ns an element against ReLU's
    # 0.45 on this host)
    (
        "transcendental",
        (
            "silu",
            "gelu",
            "sigmoid",
            "tanh",
            "softmax",
            ".exp.",
            ".log.",
            "erf",
            ".elu.",
            "mish",
            "softplus",
            "hardswish",
            ".pow.",
            "sqrt",
            ".div.",
        ),
    ),
    # no data moved at all: a new view of the same storage (or dropout in eval)
    (
        "view",
        (
            ".view.",
            "reshape",
            "flatten",
            "transpose",
            "permute",
            ".t.",
            "select",
            "slice",
            "expand",
            "squeeze",
            "unflatten",
            "alias",
            "detach",
            "dropout",
            "split",
            "chunk",
            "unbind",
            "getitem",
        ),
    ),
)
KINDS = tuple(k for k, _ in _KIND_WORDS[1:]) + ("elementwise",)
TERMS = (
    "fixed_ms",
    "ms_per_gmac",
    "ms_per_mb",
    "ms_per_weight_mb",
    "ms_per_step",
    "ms_per_reread_mb",
)
# a kind a profile has not fitted is priced as the next one here has (profiles from before
# ``recurrent`` priced those layers as linears), then as elementwise
_FALLBACK = {"recurrent": "linear"}


def op_name(op: str) -> str:
    """ "silu" of "aten.silu.default": an op's own fit is keyed by it."""
    parts = op.split(".")
    return parts[1] if len(parts) > 2 else op


def fit_keys(op: str) -> tuple[str, ...]:
    """The ``kinds`` entries a node of ``op`` is priced by, first present wins: the op's own
    (where the fit saw enough of it: SiLU 3 ns an element and tanh 0.7 on this host, a
    transposed conv 2x a conv per MAC), its kind's, elementwise's."""
    kind = op_kind(op)
    return tuple(dict.fromkeys((op_name(op), kind, _FALLBACK.get(kind, kind), "elementwise")))


def op_kind(op: str) -> str:
    """The kind of the bytes-aware fit an op belongs to (``elementwise`` if none other)."""
    for kind, words in _KIND_WORDS:
        if any(w in op for w in words):
            return kind
    return "elementwise"


def op_family(op: str) -> str:
    """The family of the MACs-only fit (profiles before ``kinds``)."""
    if "conv" in op:
        return "conv"
    if "linear" in op or "addmm" in op or ".mm." in op:
        return "linear"
    if "pool" in op:
        return "pool"
    return "other"


@dataclass(frozen=True)
class KindFit:
    """One op kind's node time: fixed + per GMAC + per MB of activations + per MB of weights
    read + per sequential step and per MB read again every step (recurrent layers: their
    weights once a call, which oneDNN's LSTM reorders, cost 6x a re-read of a matrix a step
    does, so the two have their own terms)."""

    fixed_ms: float = 0.0
    ms_per_gmac: float = 0.0
    ms_per_mb: float = 0.0
    ms_per_weight_mb: float = 0.0
    ms_per_step: float = 0.0
    ms_per_reread_mb: float = 0.0

    def ms(
        self,
        macs: float,
        act_bytes: float,
        weight_bytes: float,
        steps: float = 0,
        reread_bytes: float = 0,
    ) -> float:
        return (
            self.fixed_ms
            + self.ms_per_gmac * macs / 1e9
            + self.ms_per_mb * act_bytes / 1e6
            + self.ms_per_weight_mb * weight_bytes / 1e6
            + self.ms_per_step * steps
            + self.ms_per_reread_mb * reread_bytes / 1e6
        )

    def to_json(self) -> dict[str, float]:
        return {t: round(float(getattr(self, t)), 6) for t in TERMS}

    @classmethod
    def from_json(cls, raw: dict) -> "KindFit":
        return cls(**{t: float(raw.get(t, 0.0)) for t in TERMS})


@dataclass(frozen=True)
class ComputeFit:
    """Single-thread compute time of a node from its work. With ``kinds`` (op kind -> fit;
    a kind it lacks falls back to ``elementwise``), the bytes-aware fit; without, the
    MACs-only one: per family (conv, linear, pool, other) ms per GMAC plus a fixed ms."""

    ms_per_gmac: dict[str, float]
    fixed_ms_per_node: float
    kinds: dict[str, KindFit] = field(default_factory=dict)

    def ms(
        self,
        op: str,
        macs: int,
        act_bytes: int = 0,
        weight_bytes: int = 0,
        steps: int = 0,
        reread_bytes: int = 0,
    ) -> float:
        kind = self._kind(op)
        if kind is not None:
            return kind.ms(macs, act_bytes, weight_bytes, steps, reread_bytes)
        return self.fixed_ms_per_node + self.ms_per_gmac.get(op_family(op), 0.0) * macs / 1e9

    def fixed_ms(self, op: str, steps: int = 0) -> float:
        """What a node of ``op`` costs whatever its batch (dispatch, allocation; a recurrent
        node's steps: each a few kernels at any batch)."""
        kind = self._kind(op)
        if kind is None:
            return self.fixed_ms_per_node
        return kind.fixed_ms + kind.ms_per_step * steps

    def weight_ms(self, op: str, weight_bytes: int) -> float:
        """What reading a node's weights costs in the bytes-aware fit (0 in the MACs-only one):
        a spatial leg reads all of them, whatever its share of the work."""
        kind = self._kind(op)
        return kind.ms_per_weight_mb * weight_bytes / 1e6 if kind is not None else 0.0

    def with_kinds_of(self, other: "ComputeFit", names) -> "ComputeFit":
        """This fit with ``other``'s kinds ``names`` (those ``other`` has)."""
        taken = {k: other.kinds[k] for k in names if k in other.kinds}
        return ComputeFit(self.ms_per_gmac, self.fixed_ms_per_node, {**self.kinds, **taken})

    def _kind(self, op: str) -> KindFit | None:
        for key in fit_keys(op) if self.kinds else ():
            if key in self.kinds:
                return self.kinds[key]
        return None


# recurrent kinds fitted before their per-step re-reads had a term of their own (burst24): they
# read those re-reads as weights read once, so with the term apart they would price them free
RECURRENT_KEYS = frozenset({"recurrent", "lstm", "gru", "rnn_tanh", "rnn_relu"})


def stale_kinds(raw_kinds: dict) -> list[str]:
    """The recurrent kinds of a profile's JSON ``compute.kinds`` fitted before
    ``ms_per_reread_mb`` existed."""
    return sorted(k for k, v in raw_kinds.items() if k in RECURRENT_KEYS and TERMS[-1] not in v)


def nnls(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin |a x - y| over x >= 0, exactly, for a few columns: the optimum is the least-squares
    solution on its support, so the best feasible one over every support is it."""
    n = a.shape[1]
    best, best_err = np.zeros(n), float(y @ y)
    for size in range(1, n + 1):
        for cols in itertools.combinations(range(n), size):
            sub = a[:, cols]
            coef, *_ = np.linalg.lstsq(sub, y, rcond=None)
            if np.any(coef < 0):
                continue
            err = float(np.sum((sub @ coef - y) ** 2))
            if err < best_err - 1e-15:
                best, best_err = np.zeros(n), err
                best[list(cols)] = coef
    return best


def fit_kind(rows: list[tuple[float, ...]], relative: bool = True) -> KindFit:
    """A kind's coefficients from measured nodes (macs, activation bytes, weight bytes[,
    steps[, re-read bytes]], ms), non-negative. ``relative``: each node weighs by 1/sqrt(its time), between
    fitting the big nodes only (absolute error) and the many small ones only (relative
    error)."""
    if not rows:
        return KindFit()
    data = np.asarray(
        [(*r[:3], r[3] if len(r) > 4 else 0.0, r[4] if len(r) > 5 else 0.0, r[-1]) for r in rows],
        dtype=float,
    )
    scale = np.array([1.0, 1e-9, 1e-6, 1e-6, 1.0, 1e-6])
    a = np.column_stack([np.ones(len(data)), data[:, :5]]) * scale
    # no steps nor re-reads (every kind but the recurrent ones): 2^4 supports, not 2^6
    used = [c for c in range(6) if c < 4 or data[:, c - 1].any()]
    y = data[:, 5]
    if relative:
        w = 1.0 / np.sqrt(np.maximum(y, 1e-3))
        a, y = a * w[:, None], y * w
    coef = np.zeros(6)
    coef[used] = nnls(a[:, used], y)
    return KindFit(*(float(c) for c in coef))
