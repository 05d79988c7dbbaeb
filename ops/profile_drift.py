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
