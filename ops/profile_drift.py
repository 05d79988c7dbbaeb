"""How fast this host runs from moment to moment, while ``tidegate profile`` runs real plans.

This host is a VM on a shared machine, and it drifts: for seconds at a time a request's
compute takes 1.3-1.6x its usual CPU time (every stage alike, functions not waiting for a core
any more than usual: VGG-16's over-SLO requests in ``plan_accuracy``, 30 Nov), or the
hypervisor steals the vCPUs for ~300 ms a request. A plan's few requests, taken back to back
in a few seconds, miss those episodes or fold them into the plan's median, so the spread
fitted from them (``policies.calibration.fit_spread``) is the within-window one. The probe
times one fixed piece of work after every timed request of every plan, so its series spans
the whole run (a minute or more, across plans); its spread is the host's drift between
windows (``policies.calibration.fit_drift``), which a request served minutes later also
carries.
"""

from __future__ import annotations

import time

_SIDE = 256  # a 256x256 matmul chain: cache-resident compute, like a packed conv's tiles
_MATMULS = 16
_STREAM_FLOATS = 2 << 20  # and 8 MB streamed through memory, like an FC layer's weights


class HostProbe:
    """Thread CPU time of a fixed single-thread workload (~12 ms here; the clock's and the
    scheduler's jitter is well under a per cent of it): a slower host lengthens it (the
    episodes above showed as CPU time, the functions' up 1.4x). Not wall time: the function
    instances' own work after a request has answered (VGG-16's: the probe's wall time
    doubled right after its requests, 5.5 -> 12 ms) would read as drift. Stolen time is
    not the guest's CPU time, so the hypervisor's steal (2 of those 8 requests) is not in
    it: that part of the drift stays with the requests' own spread."""

    def __init__(self) -> None:
        import torch

        gen = torch.Generator().manual_seed(0)
        self._a = torch.randn(_SIDE, _SIDE, generator=gen)
        self._b = torch.randn(_SIDE, _SIDE, generator=gen)
        self._stream = torch.randn(_STREAM_FLOATS, generator=gen)
        self.samples_ms: list[float] = []

    def sample(self) -> float:
        import torch

        t0 = time.thread_time()
        with torch.inference_mode():
            c = self._a
            for _ in range(_MATMULS):
                c = torch.mm(c, self._b).clamp_(-1.0, 1.0)
            float(self._stream.sum()) + float(c[0, 0])
        ms = (time.thread_time() - t0) * 1000.0
        self.samples_ms.append(ms)
        return ms


class WindowNodeTimes:
    """Single-thread node times taken between the plans' timed requests, so the legs'
    slowdowns are fitted against node times from the same minutes. The node times taken at
    the profile's start are seconds to a minute earlier, and this host's pace moves 10-15 %
    between such windows (VGG-11: 267.6 vs 234.8 ms per sample in two profiles back to back):
    a leg measured in a slower window than those passes read as a slower leg, and the chosen
    plan changed from profile to profile. At most ``max_passes`` passes, spread evenly over
    ``timed`` requests (a pass costs one single-thread inference)."""

    def __init__(self, graph, program, x, timed: int, max_passes: int = 15) -> None:
        import torch

        from burst.graph import program_weights

        torch.set_num_threads(1)  # as a function instance computes
        self._graph = graph
        self._weights = program_weights(program)
        self._x = x  # every input by name, or the one input (ops.profiler.node_pass_ms)
        self._every = max(1, -(-timed // max_passes))
        self._seen = 0
        self.samples: dict[str, list[float]] = {n.name: [] for n in graph.nodes}

    def after_request(self) -> None:
        """One pass after every ``_every``-th timed request (the first a warm-up pass)."""
        from burst.packed_conv import packing
        from ops.profiler import node_pass_ms

        if self._seen % self._every == 0:
            with packing(True):
                if self._seen == 0:
                    node_pass_ms(self._graph, self._weights, self._x)
                for name, ms in node_pass_ms(self._graph, self._weights, self._x).items():
                    self.samples[name].append(ms)
        self._seen += 1

    def median_ms(self) -> dict[str, float]:
        """Each node's median over the passes; empty when no pass was taken."""
        import statistics

        return {n: statistics.median(v) for n, v in self.samples.items() if v}


def window_times(profile, graph, runs, say):
    """The profile with the node times taken between the plans' requests
    (``WindowNodeTimes``), plain convs scaled alike: the legs' slowdowns, the
    stages' rest and the plan errors are then all read against times from the same minutes
    as the legs, not the profile's start (the host's pace moves 10-15 % in between)."""
    from dataclasses import replace

    times = profile.models[graph.model]
    window = getattr(runs, "node_ms", None)
    if not window or set(window) != set(times.node_ms):
        return profile
    say(
        f"node times between the plans' requests: {sum(window.values()):.1f} ms per sample "
        f"(at the start {sum(times.node_ms.values()):.1f})"
    )
    plain = {
        n: ms * window[n] / max(times.node_ms[n], 1e-9) for n, ms in times.plain_node_ms.items()
    }
    return profile.with_model(graph.model, replace(times, node_ms=window, plain_node_ms=plain))
