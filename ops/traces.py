"""Request-arrival traces: readers for the public formats, synthetic generators, a mapping rule.

A ``Trace`` is arrival times in seconds from its start (sorted float64) plus, per request, the
model and tenant it belongs to (small int codes into ``models`` / ``tenants``). Everything is a
numpy array so 10 M requests load and simulate in seconds.

Formats (``read_trace(path, fmt="auto")``):
- ``azure2019``: Azure Functions 2019, ``HashOwner,HashApp,HashFunction,Trigger,1..1440``
  (invocations per minute); arrivals spread within each minute as a seeded Poisson process.
- ``azure2021``: Azure Functions 2021, ``app,func,end_timestamp,duration`` (one row per call,
  arrival = end - duration).
- ``azure-llm``: Azure LLM inference 2023, ``TIMESTAMP,ContextTokens,GeneratedTokens``.
- ``mooncake``: JSON lines with ``timestamp`` in milliseconds.
- ``per-second``: no header, ``sec,...,count`` (InferAll packaging: first column the second,
  last column the count; missing seconds are zero).
- ``gaps``: one inter-arrival gap in seconds per line.
- ``csv``: ``timestamp_s,model[,tenant]`` with or without a header.
Synthetic traces are named ``synth:KIND[:key=value,...]`` (see ``synthetic``).
"""

from __future__ import annotations

import csv
import io
import lzma
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ops import trace_synth
from ops.trace_mapping import DEFAULT_MODEL, DEFAULT_TENANT, MapRule, TraceMapping

__all__ = ["MapRule", "Trace", "TraceError", "TraceMapping", "read_trace", "write_csv"]

FORMATS = ("azure2019", "azure2021", "azure-llm", "mooncake", "per-second", "gaps", "csv")
MAX_SPAN_S = 366 * 86400.0  # longer is a unit mistake (ms read as s) or a hostile file
MAX_REQUESTS = 200_000_000  # ~5 GB of arrays: sample or window a bigger trace first
EPOCH_FLOOR_S = 1e8  # CSV timestamps from here on (1973) are epoch seconds: rebased
EPOCH_MS_FLOOR = 1e11  # epoch seconds past the year 5000: epoch milliseconds (1.7e12 today)


class TraceError(ValueError):
    """A trace that cannot be read: says which file, line and what was expected."""


@dataclass(frozen=True)
class Trace:
    name: str
    arrivals_s: np.ndarray  # float64, sorted, from 0
    model_idx: np.ndarray  # int32 into models
    tenant_idx: np.ndarray  # int32 into tenants
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    tenants: tuple[str, ...] = (DEFAULT_TENANT,)
    extra: dict = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return int(self.arrivals_s.size)

    @property
    def duration_s(self) -> float:
        return float(self.arrivals_s[-1]) if len(self) else 0.0

    def counts(self, bin_s: float = 1.0) -> np.ndarray:
        """Requests per bin (a histogram over the trace's span)."""
        nbins = int(np.floor(self.duration_s / bin_s)) + 1
        return np.bincount((self.arrivals_s // bin_s).astype(np.int64), minlength=nbins)

    def only_model(self, model: str) -> "Trace":
        if model not in self.models:
            raise TraceError(
                f"trace {self.name} has no requests for model {model!r} "
                f"(models: {', '.join(self.models)})"
            )
        keep = self.model_idx == self.models.index(model)
        return _build(
            self.name,
            self.arrivals_s[keep],
            [model] * int(keep.sum()),
            [self.tenants[i] for i in self.tenant_idx[keep]],
            rebase=False,
        )

    def with_model(self, model: str) -> "Trace":
        """The same arrivals, all for ``model``."""
        return Trace(
            self.name,
            self.arrivals_s,
            np.zeros(len(self), np.int32),
            self.tenant_idx,
            (model,),
            self.tenants,
        )

    def window(self, start_s: float, end_s: float) -> "Trace":
        lo, hi = np.searchsorted(self.arrivals_s, [start_s, end_s])
        return Trace(
            self.name,
            self.arrivals_s[lo:hi] - start_s,
            self.model_idx[lo:hi],
            self.tenant_idx[lo:hi],
            self.models,
            self.tenants,
        )

    def scaled(self, rate_factor: float = 1.0, speedup: float = 1.0, seed: int = 0) -> "Trace":
        """More or fewer requests with the same shape, and/or time compressed by ``speedup``.

        Each arrival is kept ``floor(factor)`` or ``ceil(factor)`` times (at random, so the
        mean is ``factor``); the copies land uniformly within the original's second, so counts
        per second scale and arrivals within a second stay Poisson (copies stacked on the
        original instant would make every batch full)."""
        if len(self) * rate_factor > MAX_REQUESTS:  # (numpy's MemoryError traceback before)
            raise TraceError(
                f"{self.name}: {len(self):,} requests x {rate_factor:g} is more than "
                f"{MAX_REQUESTS:,}: lower the rate scale or window the trace"
            )
        rng = np.random.default_rng(seed)
        t, m, tn = self.arrivals_s, self.model_idx, self.tenant_idx
        if rate_factor != 1.0:
            whole, frac = int(rate_factor), rate_factor - int(rate_factor)
            reps = np.full(len(self), whole) + (rng.random(len(self)) < frac)
            first = np.zeros(int(reps.sum()), dtype=bool)
            first[np.cumsum(reps)[reps > 0] - reps[reps > 0]] = True  # each original once
            t, m, tn = np.repeat(t, reps), np.repeat(m, reps), np.repeat(tn, reps)
            t = np.where(first, t, np.floor(t) + rng.random(t.size))
            order = np.argsort(t, kind="stable")
            t, m, tn = t[order], m[order], tn[order]
            if t.size:
                t = t - min(t[0], 0.0)
        return Trace(self.name, t / speedup, m, tn, self.models, self.tenants)


def check_arrivals(name: str, t: np.ndarray) -> None:
    """TraceError unless ``t`` holds requests at finite times within a year of each other."""
    if t.size == 0:
        raise TraceError(f"{name}: the trace has no requests")
    if not np.all(np.isfinite(t)):
        raise TraceError(f"{name}: a timestamp is not a finite number")
    span_s = float(t.max() - t.min())
    if span_s > MAX_SPAN_S:
        raise TraceError(
            f"{name}: the trace spans {span_s / 86400:.4g} days (at most 366): "
            "timestamps must be in seconds"
        )


def _build(
    name: str, arrivals_s, models: list[str] | np.ndarray, tenants, *, rebase: bool = True
) -> Trace:
    model_names, model_idx = np.unique(
        np.asarray(models, dtype=object).astype(str), return_inverse=True
    )
    tenant_names, tenant_idx = np.unique(
        np.asarray(tenants, dtype=object).astype(str), return_inverse=True
    )
    return build_coded(
        name,
        np.asarray(arrivals_s, dtype=np.float64),
        (tuple(str(m) for m in model_names), model_idx),
        (tuple(str(t) for t in tenant_names), tenant_idx),
        rebase=rebase,
    )


def build_coded(name: str, t: np.ndarray, models: tuple, tenants: tuple, *, rebase: bool) -> Trace:
    """A trace from arrival times and (names, int code per request) of models and tenants:
    sorted, checked, and rebased (``rebase``, or epoch seconds) as ``_build`` says."""
    check_arrivals(name, t)
    order = np.argsort(t, kind="stable")
    t = t[order]
    if not rebase and t[0] < 0:
        raise TraceError(f"{name}: a timestamp is negative ({t[0]:g} s)")
    if t[0] >= EPOCH_MS_FLOOR:  # (an hour of them read as seconds is a 41-day trace)
        raise TraceError(
            f"{name}: timestamps from {t[0]:.4g} look like epoch milliseconds; give seconds"
        )
    if rebase or t[0] >= EPOCH_FLOOR_S:  # epoch seconds: the trace starts at its first request
        t = t - t[0]
    (model_names, model_idx), (tenant_names, tenant_idx) = models, tenants
    return Trace(
        name,
        t,
        np.asarray(model_idx)[order].astype(np.int32),
        np.asarray(tenant_idx)[order].astype(np.int32),
        tuple(model_names),
        tuple(tenant_names),
    )


def _uniform_trace(name: str, arrivals_s: np.ndarray, mapping: TraceMapping) -> Trace:
    model, tenant = mapping.resolve("")
    t = np.asarray(arrivals_s, dtype=np.float64)
    check_arrivals(name, t)
    t = np.sort(t)
    return Trace(
        name, t - t[0], np.zeros(t.size, np.int32), np.zeros(t.size, np.int32), (model,), (tenant,)
    )


def spread_counts(
    counts: np.ndarray, bin_s: float, rng: np.random.Generator, offset_s: float = 0.0
) -> np.ndarray:
    """Arrivals for ``counts[i]`` requests in bin i: uniform in the bin, i.e. a Poisson process
    conditioned on the bin's count. Unsorted."""
    counts = np.asarray(counts, dtype=np.int64)
    if int(counts.sum()) > MAX_REQUESTS:
        raise TraceError(f"more than {MAX_REQUESTS:,} requests: window or sample the trace first")
    starts = offset_s + np.arange(counts.size, dtype=np.float64) * bin_s
    return np.repeat(starts, counts) + rng.random(int(counts.sum())) * bin_s


def read_trace(
    source: str | Path, fmt: str = "auto", mapping: TraceMapping | None = None, seed: int = 0
) -> Trace:
    """Read a trace file (or build a ``synth:...`` trace). Raises ``TraceError`` on bad input."""
    mapping = mapping or TraceMapping()
    text = str(source)
    try:
        if text.startswith("synth:"):
            arrivals = trace_synth.from_spec(text[len("synth:") :], seed=seed)
            return _uniform_trace(text, arrivals, mapping)
        if not Path(text).exists() and any(c in text for c in "*?["):
            from ops.trace_formats import read_days

            return read_days(text, fmt, mapping, seed)
        return _read_file(Path(source), fmt, mapping, seed)
    except MemoryError:
        raise TraceError(f"{text}: too many requests to hold in memory") from None


def _read_file(path: Path, fmt: str, mapping: TraceMapping, seed: int) -> Trace:
    if path.is_dir():
        raise TraceError(f"trace {path} is a directory, not a trace file")
    if not path.is_file():
        raise TraceError(f"trace file {path} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError as exc:
        raise TraceError(f"trace file {path}: {exc.strerror}") from None
    if not head.strip():
        raise TraceError(f"trace file {path} is empty: no requests")
    from ops import trace_formats

    if fmt != "auto" and fmt not in trace_formats.READERS:
        raise TraceError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
    try:
        fmt = trace_formats.detect_format(path) if fmt == "auto" else fmt
        return trace_formats.READERS[fmt](path, mapping, np.random.default_rng(seed))
    except TraceError as exc:
        if _ends_mid_line(path):  # a download cut short: its last line is half a record
            raise TraceError(
                f"{exc} (the file ends mid-line: cut short? its last line may be half a record)"
            ) from None
        raise
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a text file (UTF-8)") from None
    except (OSError, EOFError, lzma.LZMAError) as exc:  # a damaged .gz / .xz / .bz2
        raise TraceError(f"{path}: cannot decompress it ({exc})") from None


def _ends_mid_line(path: Path) -> bool:
    """The file's last byte is not a line end (gzip: a cut archive says so itself)."""
    with open(path, "rb") as f:
        return f.read(2) != b"\x1f\x8b" and f.seek(-1, 2) >= 0 and f.read(1) not in b"\r\n"


def write_csv(trace: Trace, out: str | Path) -> None:
    """Write ``timestamp_s,model,tenant`` (the plain format every command reads)."""
    buf = io.StringIO()
    rows = csv.writer(buf, lineterminator="\n")  # (a name with a comma: one quoted cell)
    rows.writerow(["timestamp_s", "model", "tenant"])
    for t, m, tn in zip(trace.arrivals_s, trace.model_idx, trace.tenant_idx, strict=True):
        rows.writerow([f"{t:.6f}", trace.models[m], trace.tenants[tn]])
    Path(out).write_text(buf.getvalue())


def describe(trace: Trace) -> dict:
    per_s = trace.counts(1.0)
    mean = len(trace) / max(trace.duration_s, 1.0)
    return {
        "name": trace.name,
        "requests": len(trace),
        "duration_s": round(trace.duration_s, 3),
        "mean_rps": round(mean, 3),
        "peak_rps_1s": int(per_s.max()),
        "peak_to_mean": round(float(per_s.max()) / mean, 2) if mean else 0.0,
        "models": list(trace.models),
        "tenants": list(trace.tenants),
    }
