# size: a stage's legs, its join and the plan's distribution are read together here; the
# legs' whole parts are in policies.perf_tiles, the VM path in policies.vm_perf
"""The performance model of a burst plan: its latency as a distribution, and its cost. Pure.

A plan is a sequence of stages. A serial stage is the master's own compute. A split stage of k
legs (``burst.forkjoin``) sends legs 1..k-1 their inputs, computes leg 0 on the master while
they run in worker functions, waits for all and stitches: its time is the master's sequential
send/receive work plus max(leg 0, the **maximum over the k-1 remote legs**), each remote leg an
invocation round trip (an empirical distribution measured at that fan-out) plus its transfers
plus its compute (the leg's share of the stage's measured node times, times the slowdown
measured when k legs share the cores, plus a measured time per node and one per leg that do
not shrink with the leg's share; under "graph" pricing each node's dispatch and a conv tile's
call are paid whole by every leg: ``policies.perf_tiles``). The maximum's distribution is exact for i.i.d. legs,
P(max <= t) = F(t)^n, so its quantile at p is F^-1(p^(1/n)); every remote leg takes the
heaviest remote leg's work (a slight overestimate when tiles differ by a halo row).

The plan's latency is the sum of independent stages plus the gateway's master invocation; it is
summarised by its mean and variance and a percentile q is read as mean + z_q * sd (a normal
approximation of the sum). Both are additive over stages, which is what lets
``policies.planner`` be exact. The reported p50 alone is read more closely: the master
invocation's measured distribution is skewed (its mean lies well above its median), so the
median is that of the invocation's quantiles plus the stages' normal sum. Cost is additive too: GB-s at the
platform's billing granularity for the master (for the whole request) and each leg, one request
per invocation, and store requests for tensors too big to travel inline.

Every stage is then scaled by how this model's real plans ran against the model
(``policies.calibration``: its measured node times, and split stages per fan-out, from
``tidegate profile``'s runs); mean and spread scale together, and so does what a leg is billed. Every
consumer (the planner's objectives, ``tidegate plan``, the gateway, the simulator) prices
through here, so all of them see the same calibrated distribution.
"""

from __future__ import annotations

import math

import numpy as np

from policies.calibration import Calibration
from policies.costs import queue_transfer_cost_usd
from policies.perf_types import (  # noqa: F401  (re-exported: what a plan is priced from)
    Candidate,
    Deployment,
    Estimate,
    NodeWork,
    PlanPrediction,
    percentile_ms,
)
from policies.perf_tiles import unshared_ms, unshared_parts
from policies.profile import GRAPH_PRICING, Profile

# The VM path's latency prediction (queueing plus batching) lives beside this, in vm_perf;
# ``policies.perf`` is the one place callers look for both paths' predictions.
from policies.vm_perf import (  # noqa: F401  (re-exported)
    batch_service_ms,
    predict_vm_ms,
    replica_capacity_per_s,
)

_GRID = (np.arange(64) + 0.5) / 64  # probabilities at which a stage's quantiles are read
WORKER_HANDLER_FIXED_MS = 1.0  # a worker's own bookkeeping inside its billed time


def request_cv(calibration: Calibration, profile: Profile) -> float:
    """A request's compute spread (sd / mean): a calibrated model's within-window spread and
    the host's drift between windows, independent, the drift the widest this host showed
    (``Profile.host_drift_cv``), never below the model's own reading; else the profile's
    leg spread with that drift."""
    if not calibration.compute_cv:  # the drift is the host's: a model without runs has it too
        return math.hypot(profile.compute_cv, profile.host_drift_cv)
    return math.hypot(calibration.compute_cv, max(calibration.drift_cv, profile.host_drift_cv))


class PerfModel:
    """Predicts stages and plans of one model under one profile and deployment."""

    def __init__(
        self,
        profile: Profile,
        deployment: Deployment,
        works: list[NodeWork],
        model: str = "",
        input_shape=(),
        batch: int = 1,
        works_at_one: list[NodeWork] | None = None,
    ):
        self.profile, self.dep = profile, deployment
        times = profile.times_for(model, input_shape) if model else None
        self.calibration = times.calibration if times else Calibration()
        # the nodes' work at batch 1, where the profile measured them (recurrent nodes scale
        # from there as their fit does: see _node_times)
        self._at_one = {w.name: w for w in works_at_one or ()}
        self.node_ms = self._node_times(works, times.node_ms if times else {}, batch)
        # convs run plain (their stage not packed): measured apart, else as packed (profiles
        # from before packing was a choice; their plans pack every stage)
        plain = self._node_times(works, times.plain_node_ms if times else {}, batch)
        self.plain_ms = {n: plain[n] for n in (times.plain_node_ms if times else {})}
        # what a leg pays whole, whatever its share (``Profile.split_pricing`` "graph"): per
        # node its dispatch, and its weight reads (a spatial leg reads them all)
        self._whole_parts = (
            unshared_parts(works, profile.compute, profile.tile_call, self.calibration.compute)
            if profile.split_pricing == GRAPH_PRICING
            else {}
        )
        self._whole_cache: dict[tuple, float] = {}
        self._max_cache: dict[int, np.ndarray] = {}
        self._transfer_cache: dict[tuple, float] = {}
        self._serial_cache: dict[tuple, float] = {}
        # a stage's estimate, for the searches after the first (the planner prices every
        # candidate each search; ``tidegate plan`` and the benches search a model several times)
        self._stage_cache: dict[Candidate, Estimate] = {}
        # within a window and the host's drift between windows, the host's widest
        self._cv = request_cv(self.calibration, profile)
        self._one_fn_ms = sum(self.node_ms.values()) * profile.slowdown("serial", 1)

    def _node_times(self, works, measured_ms: dict, batch: int) -> dict[str, float]:
        fit = self.profile.compute
        out: dict[str, float] = {}
        for w in works:
            measured = measured_ms.get(w.name)
            if measured is None:
                ms = fit.ms(w.op, w.macs, w.act_bytes, w.weight_bytes, w.steps, w.reread_bytes)
                out[w.name] = ms + w.wait_ms
            elif w.steps and w.name in self._at_one and batch != 1:
                # a recurrent node measured at batch 1: its weights once a call and its steps'
                # re-reads do not grow with the batch; it scales as its fit does (scaled as
                # below, a profiled 256-wide LSTM over 64 steps was priced 3x its batch-8 time)
                one = self._at_one[w.name]
                args = (one.op, one.macs, one.act_bytes, one.weight_bytes, one.steps)
                at_one = fit.ms(*args, one.reread_bytes)
                at_b = fit.ms(w.op, w.macs, w.act_bytes, w.weight_bytes, w.steps, w.reread_bytes)
                scale = at_b / at_one if at_one > 0 else float(batch)
                out[w.name] = measured * scale * self.calibration.compute
            else:  # measured at batch 1: the work part grows with the batch, dispatch does not
                fixed = min(fit.fixed_ms(w.op, w.steps), measured)
                ms = fixed + (measured - fixed) * batch
                out[w.name] = ms * self.calibration.compute  # as functions ran them
        return out

    def unshared_ms(self, nodes, split: str, packed: bool = True) -> float:
        """What every leg of a ``split`` stage over ``nodes`` computes whole, whatever its
        share of the work (``policies.perf_tiles``; 0 under "share" pricing)."""
        if not self._whole_parts:
            return 0.0
        key = (tuple(nodes), split, packed)
        got = self._whole_cache.get(key)
        if got is None:
            times = self.node_ms if packed else {**self.node_ms, **self.plain_ms}
            got = self._whole_cache[key] = unshared_ms(self._whole_parts, times, key[0], split)
        return got

    @property
    def packing_matters(self) -> bool:
        """Whether convs were measured plain too (else a plain stage is priced as packed)."""
        return bool(self.plain_ms)

    # pieces ----------------------------------------------------------------------------------

    def _route(self, nbytes: int, transport: str | None = None) -> str:
        """The transfer fit a tensor of ``nbytes`` uses: inline, dir, s3 or sqs."""
        d = self.dep
        transport = self._transport(transport)
        if transport == "inline" or (transport == "auto" and nbytes <= d.inline_limit_bytes):
            return "inline"
        kind = d.store_kind
        if kind == "sqs" and transport == "store":  # past the queue, to its object store
            kind = d.object_store_kind
        if kind == "sqs":  # ("queue" on a store without queues goes through the store, as
            # burst/tensors.send carries it); a regional round trip like S3's until measured
            return "sqs" if "sqs" in self.profile.transfer else "s3"
        return "s3" if kind in ("s3", "oss") else "dir"

    def _transport(self, transport: str | None) -> str:
        """A stage's own transport, else the deployment's (per-stage without a choice: auto)."""
        d = self.dep
        return transport or ("auto" if d.transport == "per-stage" else d.transport)

    def transfer_ms(self, nbytes: int, transport: str | None = None) -> float:
        key = (nbytes, transport)  # the planner prices thousands of stages of few sizes
        got = self._transfer_cache.get(key)
        if got is None:
            got = self._transfer_cache[key] = self.profile.transfer_fit(
                self._route(nbytes, transport)
            ).ms(nbytes)
        return got

    def _store_cost(self, nbytes: int, transport: str | None = None) -> float:
        route = self._route(nbytes, transport)
        if route == "inline":
            return 0.0
        p = self.dep.prices
        if route == "sqs" or (
            self.dep.store_kind == "sqs" and self._transport(transport) != "store"
        ):
            # queue requests per 64 KiB, claim checks past a message
            return queue_transfer_cost_usd(p, nbytes)
        return p.store_put_usd + p.store_get_usd

    def _gb_s_cost(self, ms: float, memory_mb: int, invocation: bool = True) -> float:
        """GB-s of ``ms`` at ``memory_mb``; an invocation's end adds the mean of rounding up
        to the billing step (the master's stages are parts of one invocation)."""
        p = self.dep.prices
        billed = ms + (p.fn_billing_granularity_ms / 2.0 if invocation else 0.0)
        return billed / 1000.0 * memory_mb / 1024.0 * p.fn_usd_per_gb_s

    def serial_ms(self, nodes, packed: bool = True) -> float:
        key = (tuple(nodes), packed)  # candidates share runs (grids, leads, transports)
        got = self._serial_cache.get(key)
        if got is None:
            times = self.node_ms if packed else {**self.node_ms, **self.plain_ms}
            got = self._serial_cache[key] = sum(times[n] for n in key[0])
        return got

    # stages ----------------------------------------------------------------------------------

    def stage(self, c: Candidate) -> Estimate:
        got = self._stage_cache.get(c)
        if got is None:
            got = self._stage_cache[c] = self._stage(c)
        return got

    def _stage(self, c: Candidate) -> Estimate:
        master_gb = self.dep.master_memory_mb
        if c.split == "serial":
            slow = self.profile.slowdown("serial", 1)
            mean = self.serial_ms(c.nodes, c.packed) * slow
            var = self._drift_var(mean)
            return Estimate(mean, var, self._gb_s_cost(mean, master_gb, invocation=False))
        k = c.workers
        slow = self.profile.slowdown(c.split, k)
        whole_ms = self.unshared_ms(c.nodes, c.split, c.packed)
        per_mac = (self.serial_ms(c.nodes, c.packed) - whole_ms) / max(c.macs, 1) * slow
        per_leg_ms = self._leg_fixed_ms(c.split, k, len(c.nodes)) + whole_ms * slow
        own_ms = self._own_leg_ms(c, per_mac, per_leg_ms)  # leg 0 runs on the master
        t_in = [self.transfer_ms(b, c.transport) for b in c.bytes_in[1:]]
        t_out = [self.transfer_ms(b, c.transport) for b in c.bytes_out[1:]]
        # the master writes every remote input, then computes its own leg while the remote
        # legs run, then reads their outputs; a remote leg reads its input and writes its
        # output (half of a one-way transfer each side)
        master_ms = (sum(t_in) + sum(t_out)) / 2.0
        remote_ms = [
            (ti + to) / 2.0 + m * per_mac + per_leg_ms
            for ti, to, m in zip(t_in, t_out, c.leg_macs[1:])
        ]
        mean_max, var_max = self._join(k - 1, own_ms, max(remote_ms, default=0.0))
        scale = self.calibration.split_at(k)  # the stage's wall as this model's plans ran
        mean, var_max = (master_ms + mean_max) * scale, var_max * scale * scale
        var_max += self._drift_var(mean)  # the host's drift moves the legs too
        remote_ms = [ms * scale for ms in remote_ms]
        p = self.dep.prices
        cost = (
            self._gb_s_cost(mean, master_gb, invocation=False)
            + sum(
                self._gb_s_cost(ms + WORKER_HANDLER_FIXED_MS, self.dep.memory_mb)
                for ms in remote_ms
            )
            + (k - 1) * p.fn_usd_per_request
            + sum(self._store_cost(b, c.transport) for b in c.bytes_in[1:] + c.bytes_out[1:])
        )
        return Estimate(mean, var_max, cost)

    def _drift_var(self, stage_ms: float) -> float:
        """A stage's share of the request's compute spread. The host's drift moves a
        request's compute together (requests spread as a whole, not as 40 independent nodes
        would): a stage carries cv^2 * its time * one function's, additive over stages (the
        planner scores them apart) and (cv * one function)^2 for one function. A split plan,
        faster than one function, is given a little more than (cv * its time)^2: on the
        safe side."""
        return self._cv**2 * stage_ms * self._one_fn_ms

    def _own_leg_ms(self, c: Candidate, per_mac: float, per_leg_ms: float) -> float:
        """Leg 0 on the master, from its sends to its output. Where the profile measured the
        master's legs apart (``SPLIT/master``: no hand-off, but it starts once its remote
        requests are out, and runs at its own pace) its own fit; else the legs' shared one."""
        key = f"{c.split}/master"
        if key not in self.profile.split_slowdown or c.workers < 2:
            return c.leg_macs[0] * per_mac + per_leg_ms
        slow = self.profile.slowdown(key, c.workers)
        whole_ms = self.unshared_ms(c.nodes, c.split, c.packed)
        compute_ms = self.serial_ms(c.nodes, c.packed) - whole_ms
        fixed_ms = self._leg_fixed_ms(key, c.workers, len(c.nodes)) + whole_ms * slow
        return c.leg_macs[0] * compute_ms / max(c.macs, 1) * slow + fixed_ms

    def _leg_fixed_ms(self, kind: str, workers: int, nodes: int) -> float:
        """What a leg of ``kind`` spends beyond its share of the work: per node (dispatch,
        cropping, padding) and once per leg (its start)."""
        p = self.profile
        return p.node_overhead_ms(kind, workers) * nodes + p.leg_overhead_ms(kind, workers)

    def _join(self, remote: int, own_ms: float, leg_ms: float) -> tuple[float, float]:
        """Mean and variance of max(own leg, slowest of ``remote`` i.i.d. legs): each remote
        leg is its work and transfers plus a round trip measured at that fan-out."""
        if remote == 0:
            return own_ms, 0.0
        q = np.maximum(own_ms, leg_ms + self._max_overhead_q(remote))
        mean = float(q.sum()) / q.size  # (np.var's overhead was a third of the planner's time)
        return mean, max(float(q @ q) / q.size - mean * mean, 0.0)

    def _max_overhead_q(self, k: int) -> np.ndarray:
        """Quantiles (on a fixed grid) of the slowest of k round trips: F^-1(p^(1/k))."""
        got = self._max_cache.get(k)
        if got is None:
            overhead = np.asarray(self.profile.invoke_ms(k).values_ms)
            probs = np.linspace(0.0, 1.0, overhead.size)
            got = self._max_cache[k] = np.interp(_GRID ** (1.0 / k), probs, overhead)
        return got

    def fixed(self) -> Estimate:
        """The gateway's master invocation and the request's own tensors (every plan pays it)."""
        d, p = self.dep, self.dep.prices
        q = np.asarray(self.profile.master_overhead_ms.values_ms)
        io_ms = self.transfer_ms(d.input_bytes) + self.transfer_ms(d.output_bytes)
        mean = float(q.mean()) + io_ms
        cost = (
            self._gb_s_cost(mean, d.master_memory_mb)
            + p.fn_usd_per_request
            + self._store_cost(d.input_bytes)
            + self._store_cost(d.output_bytes)
        )
        return Estimate(mean, float(q.var()), cost)

    def _median_ms(self, stages: Estimate) -> float:
        """The plan's median: the master invocation's measured distribution (skewed: a few
        slow round trips pull its mean well above its median, 12.5 against 7.2 ms for
        MobileNetV2 here) plus the stages, normal with their summed mean and variance. Solves
        mean_i Phi((t - f_i - mean) / sd) = 1/2 over the invocation's quantiles f_i."""
        d = self.dep
        q = self.profile.master_overhead_ms
        io_ms = self.transfer_ms(d.input_bytes) + self.transfer_ms(d.output_bytes)
        f = np.interp(_GRID, np.linspace(0.0, 1.0, len(q.values_ms)), q.values_ms) + io_ms
        sd = math.sqrt(max(stages.var_ms2, 0.0))
        if sd < 1e-9:
            return float(np.median(f)) + stages.mean_ms
        lo, hi = float(f.min()) + stages.mean_ms - 8 * sd, float(f.max()) + stages.mean_ms + 8 * sd
        z, scale, erf = (f + stages.mean_ms).tolist(), 1.0 / (sd * math.sqrt(2.0)), math.erf
        while hi - lo > 1e-9:  # bisection on the mixture's CDF (monotone in t): below 1/2
            t = (lo + hi) / 2  # where the erf terms (2 Phi - 1) sum below 0
            below = sum([erf((t - zi) * scale) for zi in z]) < 0.0
            lo, hi = (t, hi) if below else (lo, t)
        return (lo + hi) / 2

    def predict(self, stages: list[Candidate]) -> PlanPrediction:
        parts = [self.stage(c) for c in stages]
        total = self.fixed()
        rest = Estimate(0.0, 0.0, 0.0)
        for e in parts:
            total, rest = total + e, rest + e
        return PlanPrediction(
            p50_ms=self._median_ms(rest),
            p99_ms=percentile_ms(total.mean_ms, total.var_ms2, 0.99),
            mean_ms=total.mean_ms,
            var_ms2=total.var_ms2,
            cost_usd=total.cost_usd,
            stages=tuple(parts),
        )
