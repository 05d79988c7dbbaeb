"""Synthetic arrival processes: diurnal base plus bursts, flash crowds, MMPP.

Each generator returns sorted arrival times in seconds (numpy, vectorised: a day at 100 req/s
takes well under a second). ``from_spec("mmpp:duration_s=3600,low_rps=5")`` builds one from the
``synth:KIND:key=value,...`` form the CLI accepts as a trace name.
"""

from __future__ import annotations

import inspect

import numpy as np


def _poisson_per_second(rate_per_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rate_per_s = np.maximum(rate_per_s, 0.0)
    _check_expected(float(rate_per_s.sum()))
    counts = rng.poisson(rate_per_s)
    starts = np.repeat(np.arange(counts.size, dtype=np.float64), counts)
    return np.sort(starts + rng.random(starts.size))


def diurnal(
    duration_s: float = 86400.0,
    mean_rps: float = 20.0,
    peak_to_trough: float = 3.0,
    period_s: float = 86400.0,
    bursts: int = 6,
    burst_mult: float = 4.0,
    burst_s: float = 120.0,
    seed: int = 0,
) -> np.ndarray:
    """A sinusoidal day (trough at t=0) plus ``bursts`` rectangular bursts of ``burst_mult`` x
    the local rate, at random times (where bursts overlap, still ``burst_mult`` x: they were
    multiplied, so 6 minute-long bursts in 2 minutes made 4^6 x, 423,000 requests, not ~9,000)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s), dtype=np.float64)
    amp = (peak_to_trough - 1.0) / (peak_to_trough + 1.0)
    rate = mean_rps * (1.0 - amp * np.cos(2 * np.pi * t / period_s))
    bursting = np.zeros(t.size, dtype=bool)
    for start in rng.uniform(0, max(duration_s - burst_s, 1.0), int(bursts)):
        bursting[int(start) : int(start + burst_s)] = True
    rate[bursting] *= burst_mult
    return _poisson_per_second(rate, rng)


def flash_crowd(
    duration_s: float = 3600.0,
    base_rps: float = 10.0,
    peak_mult: float = 10.0,
    start_s: float = 1200.0,
    ramp_s: float = 30.0,
    hold_s: float = 300.0,
    decay_s: float = 600.0,
    seed: int = 0,
) -> np.ndarray:
    """Steady base, a fast ramp to ``peak_mult`` x, a hold, then an exponential decay back."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s), dtype=np.float64)
    extra = np.zeros_like(t)
    ramp = (t >= start_s) & (t < start_s + ramp_s)
    extra[ramp] = (t[ramp] - start_s) / max(ramp_s, 1e-9)
    hold = (t >= start_s + ramp_s) & (t < start_s + ramp_s + hold_s)
    extra[hold] = 1.0
    after = t >= start_s + ramp_s + hold_s
    extra[after] = np.exp(-(t[after] - start_s - ramp_s - hold_s) / max(decay_s, 1e-9) * 3.0)
    return _poisson_per_second(base_rps * (1.0 + (peak_mult - 1.0) * extra), rng)


def mmpp(
    duration_s: float = 3600.0,
    low_rps: float = 5.0,
    high_rps: float = 50.0,
    mean_low_s: float = 300.0,
    mean_high_s: float = 60.0,
    seed: int = 0,
) -> np.ndarray:
    """A two-state Markov-modulated Poisson process: exponential sojourns in a low and a high
    rate state. Exact: Poisson counts per sojourn, uniform within it."""
    rng = np.random.default_rng(seed)
    n_guess = int(duration_s / (mean_low_s + mean_high_s) * 2 + 16)
    if n_guess > MAX_SOJOURNS:  # (their arrays alone would fill the memory)
        from ops.traces import TraceError

        raise TraceError(
            f"synth:mmpp: ~{n_guess:.3g} state changes in {duration_s:g} s (at most "
            f"{MAX_SOJOURNS:,}): make mean_low_s and mean_high_s longer"
        )
    while True:
        low = rng.exponential(mean_low_s, n_guess)
        high = rng.exponential(mean_high_s, n_guess)
        lengths = np.column_stack([low, high]).ravel()
        if lengths.sum() >= duration_s:
            break
        n_guess *= 2
    ends = np.cumsum(lengths)
    k = int(np.searchsorted(ends, duration_s)) + 1
    ends = np.minimum(ends[:k], duration_s)
    starts = np.concatenate([[0.0], ends[:-1]])
    rates = np.tile([low_rps, high_rps], k)[:k]
    _check_expected(float((rates * (ends - starts)).sum()))
    counts = rng.poisson(rates * (ends - starts))
    base = np.repeat(starts, counts)
    span = np.repeat(ends - starts, counts)
    return np.sort(base + rng.random(base.size) * span)


def steady(duration_s: float = 600.0, rps: float = 10.0, seed: int = 0) -> np.ndarray:
    """A homogeneous Poisson process."""
    rng = np.random.default_rng(seed)
    return _poisson_per_second(np.full(int(duration_s), rps), rng)


def step(
    duration_s: float = 300.0,
    base_rps: float = 5.0,
    mult: float = 4.0,
    start_s: float = 120.0,
    step_s: float = 60.0,
    seed: int = 0,
) -> np.ndarray:
    """A steady rate with one step to ``mult`` x for ``step_s`` (the autoscale benchmark's load)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s), dtype=np.float64)
    rate = np.where((t >= start_s) & (t < start_s + step_s), base_rps * mult, base_rps)
    return _poisson_per_second(rate, rng)


GENERATORS = {
    "diurnal": diurnal,
    "flash-crowd": flash_crowd,
    "mmpp": mmpp,
    "steady": steady,
    "step": step,
}


MAX_SOJOURNS = 10_000_000


def _check_expected(mean_requests: float) -> None:
    """TraceError when the process would draw more requests than a trace may hold (before:
    numpy's 'lam value too large' traceback, or the memory filled)."""
    from ops.traces import MAX_REQUESTS, TraceError

    if not mean_requests <= MAX_REQUESTS:  # (inf and NaN too: a rate that overflowed)
        raise TraceError(
            f"synthetic trace: ~{mean_requests:.3g} requests expected (at most "
            f"{MAX_REQUESTS:,}): lower the rate or the duration"
        )


def from_spec(spec: str, seed: int = 0) -> np.ndarray:
    """``KIND[:key=value,...]`` -> arrivals; unknown kinds or keys are a ValueError naming the
    valid ones."""
    from ops.traces import TraceError

    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    gen = GENERATORS.get(kind)
    if gen is None:
        raise TraceError(f"unknown synthetic trace {kind!r}; known: {', '.join(GENERATORS)}")
    params = inspect.signature(gen).parameters
    kwargs: dict[str, float] = {"seed": seed}
    given: set[str] = set()
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in params:
            raise TraceError(
                f"synth:{kind}: bad parameter {item!r}; known: {', '.join(p for p in params)}"
            )
        if key in given:  # (the last one won, silently)
            raise TraceError(f"synth:{kind}: {key} is given twice")
        given.add(key)
        try:
            kwargs[key] = int(value) if key == "seed" else float(value)
        except ValueError:
            what = "an integer" if key == "seed" else "a number"
            raise TraceError(f"synth:{kind}: {key} must be {what}, got {value!r}") from None
        _check(kind, key, kwargs[key])
    _check_start(kind, {name: p.default for name, p in params.items()} | kwargs)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # (said in one line below)
            return gen(**kwargs)
    except MemoryError:
        raise TraceError(f"synth:{kind}: too many requests to hold in memory") from None


MAX_DURATION_S = 366 * 86400.0
MAX_BURSTS = 100_000


def _check(kind: str, key: str, value: float) -> None:
    """Every parameter is a finite count, rate, factor or time: >= 0; a duration or period
    > 0 and at most a year (the generators allocate per second)."""
    from ops.traces import TraceError

    if key == "seed":  # numpy's generators take no negative seed (a traceback before)
        if value < 0:
            raise TraceError(f"synth:{kind}: seed must be an integer >= 0, got {value:g}")
        return
    if not np.isfinite(value) or value < 0:
        raise TraceError(f"synth:{kind}: {key} must be a finite number >= 0, got {value:g}")
    if key in ("mean_low_s", "mean_high_s") and value <= 0:
        raise TraceError(f"synth:{kind}: {key} (a mean sojourn) must be > 0, got {value:g}")
    if key in ("duration_s", "period_s") and not 0 < value <= MAX_DURATION_S:
        raise TraceError(f"synth:{kind}: {key} must be > 0 and at most 366 days, got {value:g}")
    if key == "bursts" and (value != int(value) or value > MAX_BURSTS):  # (1e9: memory filled)
        raise TraceError(
            f"synth:{kind}: bursts must be a whole number of at most {MAX_BURSTS:,}, got {value:g}"
        )


def _check_start(kind: str, args: dict) -> None:
    """A flash crowd or step that starts at or after the trace's end would silently leave a
    steady trace: refused, naming both times."""
    if "start_s" not in args:
        return
    from ops.traces import TraceError

    start, duration = float(args["start_s"]), float(args["duration_s"])
    if start >= duration:
        raise TraceError(
            f"synth:{kind}: start_s {start:g} is not before duration_s {duration:g} "
            "(the trace would hold no burst); set start_s=... below it"
        )
