"""Session 21's held-out set ``rand4`` (``heldout.py --set rand4``): other models of the reference
profile at SLOs of their own, traces of two or three models and tenants, very low rates, and a
long silence before a burst. Drawn once from its own generator (seed 21) before any policy change
of that session, and kept for validation.

A run is one or more parts, each a synthetic arrival process for one model and tenant at an
offset; the parts are written to one CSV ``timestamp_s,model,tenant`` (what ``tidegate simulate
--trace FILE --model M`` reads) and read back. The gateway serves each model on its own fleet
in these runs: every model is simulated on its own (``Trace.only_model``, its reference profile
at its part's SLO) and the run's cost, VM hours and attainment are the sums over its models
(attainment weighted by requests). Rates are drawn as multiples of the model's replica capacity
(``SimProfile.vm_capacity_per_s``) so that each model's fleet is a few VMs, at most 1500 req/s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ops import trace_synth
from ops.sim import SimProfile
from ops.traces import Trace, read_trace, write_csv

# SLO ranges (ms), log-uniform: about 2.5-15x the model's VM batch-1 time (``profile_target``:
# resnet50 21 ms, mobilenet_v2 6.8, vgg16 67, wide_resnet50_2 57); mlp's 0.07 ms is below the
# gateway's own 1.5 ms, so from 5 ms; vgg16 500-1500 ms (its functions take 594 ms at the median)
SLO_RANGE_MS = {
    "resnet18": (60.0, 600.0),
    "resnet50": (50.0, 300.0),
    "mobilenet_v2": (20.0, 150.0),
    "vgg16": (500.0, 1500.0),
    "mlp": (5.0, 50.0),
    "wide_resnet50_2": (150.0, 1000.0),
}
MODELS = ("resnet50", "mobilenet_v2", "vgg16", "mlp", "wide_resnet50_2")
MAX_RPS = 1500.0
MLP_CAP_RPS = 60.0  # mlp's replica serves 300k req/s: its rates are drawn as another model's


@dataclass(frozen=True)
class Part:
    """One model's and tenant's arrivals: ``spec`` (a ``synth:`` spec without the prefix) from
    ``offset_s`` on."""

    model: str
    slo_ms: float
    spec: str
    tenant: str = "default"
    offset_s: float = 0.0


@dataclass(frozen=True)
class Run:
    name: str
    parts: tuple[Part, ...]
    seed: int

    def models(self) -> dict[str, float]:
        """Each model and its SLO (one per model: a model's parts share it)."""
        return {p.model: p.slo_ms for p in self.parts}


def build_trace(run: Run, csv_dir: Path) -> Trace:
    """The run's parts in one CSV under ``csv_dir`` (written once), read back as a trace."""
    path = csv_dir / f"{run.name.replace(' ', '_').replace('/', '-')}.csv"
    if not path.is_file():
        times, models, tenants = [], [], []
        for k, part in enumerate(run.parts):
            t = trace_synth.from_spec(part.spec, seed=run.seed * 10 + k) + part.offset_s
            times.append(t)
            models += [part.model] * t.size
            tenants += [part.tenant] * t.size
        t = np.concatenate(times)
        order = np.argsort(t, kind="stable")
        model_names, tenant_names = sorted(set(models)), sorted(set(tenants))
        trace = Trace(
            run.name,
            t[order],
            np.array([model_names.index(models[i]) for i in order], np.int32),
            np.array([tenant_names.index(tenants[i]) for i in order], np.int32),
            tuple(model_names),
            tuple(tenant_names),
        )
        csv_dir.mkdir(parents=True, exist_ok=True)
        write_csv(trace, path)
    return read_trace(str(path))


def model_profile(model: str, slo_ms: float) -> SimProfile:
    return SimProfile.reference(model).with_overrides(slo_ms=slo_ms)


def _cap(model: str) -> float:
    if model == "mlp":
        return MLP_CAP_RPS
    return SimProfile.reference(model).vm_capacity_per_s()


class _Draw:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def logu(self, lo: float, hi: float) -> float:
        return math.exp(self.rng.uniform(math.log(lo), math.log(hi)))

    def slo(self, model: str) -> float:
        return float(round(self.logu(*SLO_RANGE_MS[model])))

    def rps(self, model: str, lo_x: float, hi_x: float) -> float:
        return round(min(_cap(model) * self.logu(lo_x, hi_x), MAX_RPS), 1)

    def mmpp(self, model: str, duration_s: int = 3600) -> str:
        low, high = self.rps(model, 0.1, 1.5), self.rps(model, 2.0, 8.0)
        gap, burst = round(self.logu(40, 900)), round(self.logu(3, 200))
        return (
            f"mmpp:duration_s={duration_s},low_rps={low},high_rps={high},"
            f"mean_low_s={gap},mean_high_s={burst}"
        )

    def flash(self, model: str) -> str:
        base, mult = self.rps(model, 0.1, 1.0), round(self.logu(3, 30))
        mult = max(2, min(mult, int(MAX_RPS / base)))
        start, ramp = self.rng.randint(120, 2700), round(self.logu(2, 180))
        hold, decay = round(self.logu(15, 1200)), round(self.logu(20, 900))
        return (
            f"flash-crowd:duration_s=3600,base_rps={base},peak_mult={mult},start_s={start},"
            f"ramp_s={ramp},hold_s={hold},decay_s={decay}"
        )

    def diurnal(self, model: str) -> str:
        mean, n = self.rps(model, 0.3, 2.0), self.rng.randint(3, 30)
        mult, dur = round(self.logu(2, 6), 1), round(self.logu(10, 180))
        return (
            f"diurnal:duration_s=3600,mean_rps={mean},peak_to_trough=3,period_s=3600,"
            f"bursts={n},burst_mult={mult},burst_s={dur}"
        )

    def step(self, model: str) -> str:
        base, mult, length = self.rps(model, 0.2, 1.5), round(self.logu(2, 8), 1), 0
        length = round(self.logu(60, 2400))
        start = self.rng.randint(60, 3600 - length)
        return f"step:duration_s=3600,base_rps={base},mult={mult},start_s={start},step_s={length}"


def _single(d: _Draw, runs: list[Run], seed0: int) -> None:
    for i in range(10):  # MMPP, each model twice
        m = MODELS[i % len(MODELS)]
        slo, spec = d.slo(m), d.mmpp(m)
        runs.append(Run(f"r4 {m} mmpp slo{slo:g} s{i}", (Part(m, slo, spec),), seed0 + i))
    shapes = (("flash", d.flash), ("diurnal", d.diurnal), ("step", d.step))
    for i in range(10, 16):  # two of each shape on drawn models
        m = d.rng.choice(MODELS)
        kind, draw = shapes[(i - 10) // 2]
        slo, spec = d.slo(m), draw(m)
        runs.append(Run(f"r4 {m} {kind} slo{slo:g} s{i}", (Part(m, slo, spec),), seed0 + i))


def _multi(d: _Draw, runs: list[Run], seed0: int) -> None:
    for i in range(16, 19):  # two or three models, one tenant each, their own shapes
        models = d.rng.sample(MODELS, 2 if i < 18 else 3)
        parts = []
        for k, m in enumerate(models):
            draw = d.rng.choice((d.mmpp, d.flash, d.diurnal))
            parts.append(Part(m, d.slo(m), draw(m), tenant=f"tenant{k}"))
        name = "r4 mix " + "+".join(models) + f" s{i}"
        runs.append(Run(name, tuple(parts), seed0 + i))


def _low_and_silent(d: _Draw, runs: list[Run], seed0: int) -> None:
    for i in range(19, 22):  # 1-5 req/s, steady or in MMPP bursts, on drawn models
        m = d.rng.choice(("resnet18", *MODELS))
        slo = d.slo(m)
        if i == 19:
            spec = f"steady:duration_s=3600,rps={round(d.logu(1, 5), 1)}"
        else:
            low, high = round(d.logu(0.2, 1.5), 2), round(d.logu(2, 5), 1)
            spec = (
                f"mmpp:duration_s=3600,low_rps={low},high_rps={high},"
                f"mean_low_s={round(d.logu(60, 900))},mean_high_s={round(d.logu(10, 300))}"
            )
        runs.append(Run(f"r4 low {m} slo{slo:g} s{i}", (Part(m, slo, spec),), seed0 + i))
    for i in range(22, 24):  # a trickle, hours of nothing, then a burst
        m = d.rng.choice(("resnet18", *MODELS))
        slo, quiet_h = d.slo(m), round(d.logu(1, 4), 1)
        lead = f"steady:duration_s=600,rps={round(d.logu(1, 10), 1)}"
        high, hold = d.rps(m, 2.0, 8.0), round(d.logu(20, 300))
        burst = f"step:duration_s={hold + 60},base_rps=0.5,mult={round(high / 0.5)},start_s=30,step_s={hold}"
        parts = (Part(m, slo, lead), Part(m, slo, burst, offset_s=600 + quiet_h * 3600))
        name = f"r4 silent {m} {quiet_h}h then {high:g}x{hold}s slo{slo:g} s{i}"
        runs.append(Run(name, parts, seed0 + i))


def rand4(seed: int = 21) -> list[Run]:
    """16 single-model runs (10 MMPP, 2 each of flash crowds, diurnal hours and steps), 3
    multi-model, 3 at 1-5 req/s, 2 with hours of silence before a burst; seeds 300-323."""
    d, runs = _Draw(seed), []
    _single(d, runs, 300)
    _multi(d, runs, 300)
    _low_and_silent(d, runs, 300)
    return runs
