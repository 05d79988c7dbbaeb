"""What the simulator needs to know about a model on this target: the VM batch-time curve, boot
time, and the burst plan's latency distribution, instance count and billed GB-s.

``SimProfile.reference()`` is the bundled default; ``load_sim_profile(path)`` reads a
``profile.json`` written by ``tidegate profile`` (through ``policies.profile`` when present).

Reference figures and where they come from:
- VM batch curve: resnet18 on one 4-vCPU c6i.xlarge-class VM, batch 1 -> 12 ms, 8 -> 55 ms
  (the shape measured by this repo's model server at 224x224 on 2 cores, scaled to 4 vCPUs).
- VM boot 60 s: EC2 launch to a ready model server (instance ~30-45 s, image pull and model load
  ~15 s; SageMaker documents "a few minutes" for new instances, so this is optimistic).
- Function: the whole-model plan in one 2,048 MB function, warm p50 110 ms (lognormal, sigma
  0.2), cold start +900 ms (Lambda with a container image of torch: ~1 s, AWS re:Invent 2022
  SVS404); concurrency 1,000 (Lambda's default regional limit); keep-alive 10 min.
- Prices: ``policies.costs.PriceTable`` (AWS us-east-1 list prices).
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
    burst_store_ops: tuple[int, int] = (0, 0)  # (puts, gets) per burst request
    cold_start_ms: float = 900.0  # the typical cold start (what routing is told)
    # a cold start of the model's plan as measured (``tidegate profile``): quantiles of the
    # latency beyond a warm request and of the billed ms over its invocations, sampled
    # together; empty: every cold start takes ``cold_start_ms`` and bills it on every instance
    # (Lambda bills the init phase)
    cold_start_quantiles_ms: tuple[float, ...] = ()
    cold_billed_quantiles_ms: tuple[float, ...] = ()
    fn_concurrency: int = 1000
    fn_keep_alive_s: float = 600.0
    # cold starts share the host's cores (the embedded function runtime): with k under way the
    # next takes k+1 times as long, the rule the gateway predicts by (gateway/cold_start.py).
    # Measured live: a 3.5 s cold start alone, 16-23 s for five started together
    cold_start_contention: bool = False
    # a spill with no idle instance waits for a started one when that is no slower and meets the
    # SLO (policies/routing/instance_wait.py, as the gateway's burst service does); off: every
    # such spill starts an instance cold
    fn_wait_for_instances: bool = True
    slo_ms: float = 300.0
    source: str = "reference"
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def reference(cls, model: str = "resnet18") -> "SimProfile":
        return cls(model=model)

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


def load_sim_profile(path: str | Path | None, model: str | None = None) -> SimProfile:
    """The reference profile, or one measured by ``tidegate profile`` (``profile.json``)."""
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
