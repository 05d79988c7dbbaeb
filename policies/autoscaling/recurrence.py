"""How long to hold a VM after the load leaves its layer, learnt from the gaps between bursts.

A VM let go after a burst is booted again at the next one and serves only a boot time after it
begins: the spill of that first boot time is what holding it would have saved, and the wait is
what holding costs. Per VM layer (layer ``j`` is the share of the rate between ``j C`` and
``(j + 1) C``, ``C`` a replica's full capacity: the (j+1)-th VM's) ``LayerRecurrence`` records
each gap between the rate leaving the layer and rising into it again, with the rows the layer's
VM would have taken in the boot time after that rise. Holding for ``h`` costs ``min(gap, h)`` of
VM time and saves those rows at the spill price when ``gap <= h``; the hold is the ``h`` (none,
or one of the gaps seen) with the least total over the gaps seen: ski rental with the learnt
gaps, the scale-in side of ``episodes.py``'s boot decision.

With fewer than ``min_gaps`` gaps the scaler's cooldown alone decides. Three were too few: the
least-cost hold over three gaps is optimistic, and on MMPP with 30 s bursts one long lucky gap
held three VMs through 12 quiet minutes (seed 0 +10 %); five hold that one no longer.

MMPP bursts of 15 s every 240 s save less than a held VM costs (no hold: the sweep's MMPP rows
do not move); 45-60 s bursts every 240 s save more, and a fleet let go after each paid most of
each next burst's first minute on functions (``docs/ops.md``).
"""

from __future__ import annotations

from collections import deque

MAX_LAYERS = 32


class LayerRecurrence:
    def __init__(self, min_gaps: int = 5, keep: int = 32):
        self.min_gaps = min_gaps
        self._last_s: float | None = None
        self._since: list[float | None] = [None] * MAX_LAYERS  # the layer's load rose then
        self._fell: list[float | None] = [None] * MAX_LAYERS  # ... or left it then
        self._gap_before: list[float | None] = [None] * MAX_LAYERS
        self._rows = [0.0] * MAX_LAYERS  # the current rise's rows in its first boot time
        self._gaps: list[deque[tuple[float, float]]] = [
            deque(maxlen=keep) for _ in range(MAX_LAYERS)
        ]
        self._cache: dict[int, tuple[int, float, float, float]] = {}
        self._added = [0] * MAX_LAYERS

    def observe(self, now_s: float, rate_per_s: float, cap_per_s: float, boot_s: float) -> None:
        """One sample of the arrival rate; ``cap_per_s`` is a replica's full capacity."""
        dt = 0.0 if self._last_s is None else max(now_s - self._last_s, 0.0)
        self._last_s = now_s
        if cap_per_s <= 0:
            return
        for j in range(MAX_LAYERS):
            floor = j * cap_per_s
            since = self._since[j]
            if rate_per_s > floor:
                if since is None:
                    fell = self._fell[j]
                    self._gap_before[j] = None if fell is None else now_s - fell
                    self._since[j], self._rows[j] = now_s, 0.0
                elif now_s - since <= boot_s:
                    self._rows[j] += min(rate_per_s - floor, cap_per_s) * dt
            elif since is not None:
                gap = self._gap_before[j]
                if gap is not None:
                    self._gaps[j].append((gap, self._rows[j]))
                    self._added[j] += 1
                self._since[j], self._fell[j] = None, now_s
            elif self._fell[j] is None:
                break  # never reached: nor were the layers above

    def hold_s(self, layer: int, request_usd: float, vm_usd_per_s: float) -> float:
        """The hold with the least cost over the gaps seen (0: let the VM go)."""
        if not 0 <= layer < MAX_LAYERS or len(self._gaps[layer]) < self.min_gaps:
            return 0.0
        cached = self._cache.get(layer)
        if cached is not None and cached[:3] == (self._added[layer], request_usd, vm_usd_per_s):
            return cached[3]
        gaps = sorted(self._gaps[layer])
        best_h, best_usd = 0.0, 0.0
        for h, _ in gaps:
            usd = sum(
                vm_usd_per_s * min(g, h) - (request_usd * rows if g <= h else 0.0)
                for g, rows in gaps
            )
            if usd < best_usd:
                best_h, best_usd = h, usd
        self._cache[layer] = (self._added[layer], request_usd, vm_usd_per_s, best_h)
        return best_h

    def holds(self, now_s: float, layer: int, request_usd: float, vm_usd_per_s: float) -> bool:
        """Whether the VM of ``layer`` is within its hold since the load left the layer."""
        if not 0 <= layer < MAX_LAYERS or self._since[layer] is not None:
            return False
        fell = self._fell[layer]
        return fell is not None and now_s - fell < self.hold_s(layer, request_usd, vm_usd_per_s)
