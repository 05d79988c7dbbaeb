"""What the simulator needs to know about a model on this target: the VM batch-time curve, boot
time, and the burst plan's latency distribution, instance count and billed GB-s.

One rule decides where each figure comes from (docs/ops.md, "Where the simulator's numbers come
from"): a profile *measured for the model being simulated* (``tidegate profile NAME``: the VM
curve, the cold start and, with the model's artifact, the gateway's own plan priced by it)
replaces the parts it measured; everything else is the production target below. Nothing
measured for one model is used for another: the entries ``tidegate profile`` copies into its
output from the bundled planner profile (``policies/data/reference_profile.json``, the dev
host's figures) do not count as measured (``ops.sim.profile_adapter.measured_models``). Every
``SimProfile`` carries ``provenance``: where its VM curve, function times, cold start, VM boot
and prices came from (``simulate`` prints it and writes it to ``--json`` as
``profile_sources``).

``SimProfile.reference()`` is the production target; ``load_sim_profile(path)`` reads a
``profile.json`` written by ``tidegate profile`` (through ``policies.profile``).

The production target (ResNet-18 at 224x224) and where each figure comes from:
- VM batch curve: one 4-vCPU c6i.xlarge, batch 1 -> 12 ms, 2 -> 18, 4 -> 30, 8 -> 55 ms. An
  estimate, not a measurement on that instance: the batch shape of this repo's model server,
  scaled to 4 vCPUs of AVX-512 (this 2-core dev host, busy, measured ~65 ms at batch 1).
- VM boot 60 s: EC2 launch to a ready model server (instance ~30-45 s, image pull and model load
  ~15 s; SageMaker documents "a few minutes" for new instances, so this is optimistic).
- Function: the whole model in one 2,048 MB function (Lambda gives 1,769 MB one vCPU's worth),
  warm p50 110 ms (lognormal, sigma 0.2), billed 110 ms; cold start +900 ms, billed on every
  instance (Lambda bills the init phase). 900 ms is optimistic for a container image with
  torch: published accounts put them at 1-10 s (``import torch`` alone 1-2 s), and this repo
  measured +3.0 s for ResNet-18 at 4 workers on the dev host. Concurrency 1,000 (Lambda's
  default regional limit); keep-alive 10 min.
- Prices: ``policies.costs.PriceTable`` (AWS us-east-1 on-demand list prices, ``prices_source``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


class ProfileError(ValueError):
    """A profile that cannot be used: says which file and what is missing."""


@dataclass(frozen=True)
class SimProfile:
    model: str = "resnet18"
    vm_service_ms_by_batch: tuple[tuple[int, float], ...] = (
        (1, 12.0),
        (2, 18.0),
        (4, 30.0),
        (8, 55.0),
    )
    vm_max_batch_size: int = 8
    vm_max_queue_delay_ms: float = 2.0
    vm_service_cv: float = 0.05  # run-to-run spread of a batch's service time
    vm_boot_s: float = 60.0
    gateway_overhead_ms: float = 1.5  # the gateway's own time on every request
    burst_workers: int = 1
    burst_instances: int = 1  # function instances per burst request (master + workers)
    burst_memory_mb: int = 2048
    burst_p50_ms: float = 110.0
    burst_sigma: float = 0.2  # lognormal shape of the warm burst latency
    burst_billed_ms: float = 110.0  # summed over the request's invocations, at p50
    burst_store_ops: tuple[float, float] = (0, 0)  # (puts, gets) per burst request (a mean)
    cold_start_ms: float = 900.0  # the typical cold start (what routing is told)
    # a cold start of the model's plan as measured (``tidegate profile``): quantiles of the
    # latency beyond a warm request and of the billed ms over its invocations, sampled
    # together; empty: every cold start takes ``cold_start_ms`` and bills it on every instance
    # (Lambda bills the init phase)
    cold_start_quantiles_ms: tuple[float, ...] = ()
    cold_billed_quantiles_ms: tuple[float, ...] = ()
    fn_concurrency: int = 1000
    fn_keep_alive_s: float = 600.0
    # cold starts share the host's cores (the embedded function runtime): with n under way on
    # ``fn_host_cores`` cores each runs at min(1, cores / n) of its speed alone, so a start
    # that joins pushes back those under way (``cold_share.py``; measured there: 8 started at
    # once on 2 cores ended together after 3.7-3.9x one alone). Off: independent cold starts
    # (Lambda's, the production target's)
    cold_start_contention: bool = False
    # cores the function instances share: what ``tidegate profile`` recorded (the profile's
    # ``cores``, os.cpu_count() where it ran); 0, not recorded (the production target), counts
    # as 1 core, the assumption of the gateway's own prediction (k under way: k + 1 times as long)
    fn_host_cores: int = 0
    # what else keeps those cores busy, so the starts share only the rest (``cold_share.py``,
    # floored at ``MIN_CORES``): CPU ms per request arriving (the gateway, and on the bench its
    # load generator: ``sim_vs_real.py`` measures them at 4 req/s, or with ``--host-slope`` the
    # slope over probes at several rates), cores that work keeps busy whatever the rate (that
    # line's intercept) and the cores a VM replica keeps busy while it serves a batch (its
    # torch threads x the share of the batch that computes). 0: not measured, nothing deducted
    host_cpu_ms_per_request: float = 0.0
    host_base_cores: float = 0.0
    vm_replica_cores: float = 0.0
    # CPU ms a warm invocation adds on those cores beyond the gateway's per-request CPU (its
    # instance is one process computing on one thread: ``sim_vs_real.py`` measures it). Its
    # run takes the profile's warm time alone; that CPU shares the cores with the cold starts
    # and other warm invocations under way, and the cold starts share what the warm ones
    # leave (``functions.py``, ``cold_share.py``). 0: not measured, warm runs as profiled
    fn_warm_cpu_ms: float = 0.0
    # a spill with no idle instance waits for a started one when that is no slower and meets the
    # SLO (policies/routing/instance_wait.py, as the gateway's burst service does); off: every
    # such spill starts an instance cold
    fn_wait_for_instances: bool = True
    # ms a warm instance takes to read this model's weights when it last ran another model
    # (models share the functions, ``ops/sim/lend.py``); None: that file's estimate
    fn_weight_read_ms: float | None = None
    slo_ms: float = 300.0
    source: str = "reference"
    extra: dict = field(default_factory=dict, compare=False)
    # where each group of figures came from (keys of ``SOURCES``): what `simulate` prints
    provenance: dict = field(default_factory=lambda: reference_sources(), compare=False)

    @classmethod
    def reference(
        cls, model: str = "resnet18", options: dict | None = None, shape: tuple | None = None
    ) -> "SimProfile":
        """The production target for ``model``: ResNet-18's, or for another zoo model
        ResNet-18's scaled by that model's times on the dev host (``ops.sim.profile_target``);
        ``options`` are a zoo model's export options (the delay model's waits), ``shape`` its
        input's without the batch (another image size than the dev host timed: ResNet-18's)."""
        from .profile_target import model_target

        target = model_target(model, options, shape)
        return target or cls(model=model, provenance=reference_sources(model))

    def with_sources(self, **sources: str) -> "SimProfile":
        """The same figures, with the named groups' sources replaced (an override's)."""
        return replace(self, provenance={**self.provenance, **sources})

    def describe(self) -> list[str]:
        """One line per group of figures: where the run's numbers came from."""
        return [f"{SOURCES[k]}: {self.provenance[k]}" for k in SOURCES if k in self.provenance]

    def vm_service_ms(self, rows: int) -> float:
        curve = self.vm_service_ms_by_batch
        if len(curve) == 1:
            b0, s0 = curve[0]
            return s0 * (0.5 + 0.5 * rows / b0)
        for (b0, s0), (b1, s1) in zip(curve, curve[1:], strict=False):  # noqa: B007
            if rows <= b1:
                break
        return max(s0 + (s1 - s0) / (b1 - b0) * (rows - b0), 0.1)

    def vm_capacity_per_s(self) -> float:
        """Rows per second one replica serves at full batches."""
        b = self.vm_max_batch_size
        return b / self.vm_service_ms(b) * 1000.0

    def burst_samples_ms(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return self.burst_p50_ms * np.exp(self.burst_sigma * rng.standard_normal(n))

    def burst_quantile_ms(self, q: float) -> float:
        from statistics import NormalDist

        return self.burst_p50_ms * math.exp(self.burst_sigma * NormalDist().inv_cdf(q))

    def cold_samples(self, n: int, seed: int) -> tuple[list[float], list[float]]:
        """``n`` cold starts: (latency ms beyond a warm request, billed ms), drawn together."""
        lat, billed = self.cold_start_quantiles_ms, self.cold_billed_quantiles_ms
        if len(lat) < 2 or len(billed) < 2:
            return [self.cold_start_ms] * n, [self.cold_start_ms * self.burst_instances] * n
        u = np.random.default_rng(seed).random(n)
        return (
            np.interp(u, np.linspace(0, 1, len(lat)), lat).tolist(),
            np.interp(u, np.linspace(0, 1, len(billed)), billed).tolist(),
        )

    def with_overrides(self, **kw) -> "SimProfile":
        kw = {k: v for k, v in kw.items() if v is not None}
        if "cold_start_ms" in kw and "cold_start_quantiles_ms" not in kw:
            # a deployment's own cold start replaces the measured distribution
            kw.update(cold_start_quantiles_ms=(), cold_billed_quantiles_ms=())
        return replace(self, **kw)


SOURCES = {  # provenance key -> what the banner calls it
    "vm_curve": "VM curve",
    "function_times": "function times",
    "cold_start": "cold start",
    "vm_boot": "VM boot",
    "prices": "prices",
}
TARGET_MODEL = "resnet18"  # the model the production target describes


def prices_source() -> str:
    from policies.costs import PriceTable

    t = PriceTable()
    return (
        "policies.costs.PriceTable, AWS us-east-1 on-demand list prices: VM (c6i.xlarge) "
        f"${t.vm_usd_per_hour:g}/h per second with a {t.vm_min_billed_s:g} s minimum, Lambda x86 "
        f"${t.fn_usd_per_gb_s:.10f}".rstrip("0")
        + f"/GB-s + ${t.fn_usd_per_request * 1e6:.2f} per million requests"
    )


def reference_sources(model: str = TARGET_MODEL, why: str | None = None) -> dict:
    """The production target's provenance for ``model``: for another model than the target's,
    says the figures are ResNet-18's; ``why`` says why nothing measured was used."""
    whose = "" if model == TARGET_MODEL else f"{TARGET_MODEL}'s "
    note = f" ({why})" if why else ""
    if not why and model != TARGET_MODEL:
        note = f" (nothing measured for {model})"
    return {
        "vm_curve": f"production target: {whose}batch 1/2/4/8 at 12/18/30/55 ms on a c6i.xlarge "
        f"(an estimate, docs/ops.md){note}",
        "function_times": f"production target: {whose}whole model in one 2048 MB Lambda function, "
        f"warm p50 110 ms, billed 110 ms{note}",
        "cold_start": f"production target: {whose}900 ms, billed on every instance{note}",
        "vm_boot": "production target: 60 s, EC2 launch to a ready model server",
        "prices": prices_source(),
    }


def load_sim_profile(path: str | Path | None, model: str | None = None) -> SimProfile:
    """The production target, or one measured by ``tidegate profile`` (``profile.json``): its
    figures for ``model`` where it measured them (``profile_adapter.from_profile_json``)."""
    if path is None:
        return SimProfile.reference(model or "resnet18")
    p = Path(path)
    if p.is_dir():
        p = p / "profile.json"
    if not p.is_file():
        raise ProfileError(f"profile {p} does not exist (write one with `tidegate profile`)")
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ProfileError(f"profile {p} is not JSON: {exc}") from None
    from ops.sim.profile_adapter import from_profile_json

    return from_profile_json(raw, p, model)
