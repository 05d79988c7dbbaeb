"""The per-process weight cache of function instances: bounded by the planner's weight budget
and by what the process really holds.

The budget (``burst.plan.weight_budget_bytes``) counts the weights and their packed copies. A
warm master also keeps what no entry counts (oneDNN's kernels and primitives for every shape it
ran, heap the allocator keeps under the functions' fixed trim threshold): in CI a 512 MB master
that had run five resnet18 plans sat at 425 MB between requests and died at 514 MB loading a
sixth, its cache within budget. So before a load the cache also evicts until the process's
resident memory, with the new weights at their loading peak, stays under the function's memory
less a margin for activations, and gives evicted pages back to the kernel at once.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import OrderedDict, deque
from typing import Callable

from burst.plan import WEIGHT_LOAD_PEAK, weight_budget_bytes

log = logging.getLogger(__name__)

# of the function's memory, kept free of weights for a request's activations
ACTIVATION_MARGIN = 0.10
# exit status of an instance that gives itself up (``give_up``)
EXIT_NO_ROOM = 75


def function_memory_bytes() -> int | None:
    """This function's memory size (its environment, as the runtime and deployed functions set
    it); None outside a function."""
    mb = os.environ.get("TIDEGATE_FUNCTION_MEMORY_MB")
    return int(mb) << 20 if mb and mb.isdigit() else None


def resident_bytes() -> int:
    """This process's resident memory (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def give_up(message: str) -> None:
    """End this function instance: what it holds besides its weights (heap, kernels kept from
    earlier plans) leaves no room for the weights a request needs, even with its cache empty,
    where a fresh instance would have room. Loading them would be killed for memory anyway;
    exiting says why, and the invoker retries a crashed instance once, on a fresh one
    (``burst.faas.lambda_wire.retry_invoke_on``), as Lambda gives the next invocation a fresh
    sandbox. (Where not even a fresh instance has room, the load goes ahead and the runtime's
    out-of-memory error says so, as before.)"""
    log.error("%s", message)
    stream = sys.__stderr__  # the instance's own stderr (the runtime redirects sys.stderr)
    if stream is not None:
        print(f"tidegate function instance exits: {message}", file=stream, flush=True)
    os._exit(EXIT_NO_ROOM)


def _release() -> None:
    from vmpool.body import release_memory

    release_memory()


def cache_budget_bytes() -> int:
    """What the planner lets one function's weights fill: a warm master switching plans keeps
    no more than that (half its memory had let a 512 MB master hold 250 MB of weights beside a
    320 MB runtime)."""
    return weight_budget_bytes(int(os.environ.get("TIDEGATE_FUNCTION_MEMORY_MB", "1024")))


class LruCache:
    """A per-process cache bounded by total bytes (least recently used evicted first). Entries
    carry a label (which plan's weights) so an eviction says in the log which plan evicted which;
    nothing is evicted while the budget holds both."""

    def __init__(
        self,
        budget_bytes: int | None = None,
        *,
        memory_bytes: int | None = None,
        resident: Callable[[], int] = resident_bytes,
        release: Callable[[], object] = _release,
        no_room: Callable[[str], object] | None = None,
    ):
        self.budget_bytes = cache_budget_bytes() if budget_bytes is None else budget_bytes
        # the function's memory (None: no check against what the process holds)
        self.memory_bytes = function_memory_bytes() if memory_bytes is None else memory_bytes
        # what to do when even an empty cache leaves no room for a load: in a function (its
        # memory from its environment) the instance gives itself up; elsewhere, load anyway
        in_function = memory_bytes is None and self.memory_bytes is not None
        self._no_room = no_room if no_room is not None else (give_up if in_function else None)
        self._least_uncounted = 1 << 62
        self._resident = resident
        self._release = release
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._labels: dict[str, str] = {}
        self.used_bytes = 0
        self.evicted_since_release = 0
        self.hits = 0
        self.misses = 0
        # (evicted label, label of what needed the room), the latest only
        self.evictions: deque[tuple[str, str]] = deque(maxlen=64)

    def get(self, key: str, label: str | None = None):
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        if label:
            self._labels[key] = label  # the plan that uses it now
        self.hits += 1
        return item[0]

    def put(self, key: str, value, nbytes: int, label: str | None = None) -> None:
        if key in self._items:
            self.used_bytes -= self._items.pop(key)[1]
        self._items[key] = (value, nbytes)
        self._labels[key] = label or key
        self.used_bytes += nbytes
        # keep at least the newest entry: it is in use right now
        while self.used_bytes > self.budget_bytes and len(self._items) > 1:
            self._evict_oldest(label or key, nbytes)
        self._release_evicted()

    def make_room(self, nbytes: int, label: str | None = None, *, keep: int = 0) -> None:
        """Evict least recently used entries until ``nbytes`` more fit the budget: before a
        load, so the old entries are gone while the new one is read (evicting after it had let
        a warm 2048 MB master, switching plans, hold ~1 GB of old weights beside the new 553 MB
        and die of out-of-memory). Then, in a function, until the process's resident memory
        leaves room for them at their loading peak; the ``keep`` newest entries stay."""
        while self._items and self.used_bytes + nbytes > self.budget_bytes:
            self._evict_oldest(label or "a new entry", nbytes)
        self._release_evicted()
        if not self.memory_bytes:
            return
        ceiling = self.memory_bytes * (1 - ACTIVATION_MARGIN)
        while len(self._items) > keep and self._resident() + nbytes * WEIGHT_LOAD_PEAK > ceiling:
            self._evict_oldest(label or "a new entry", nbytes)
            self._release_evicted()
        held = self._resident()
        # the least this process has held besides its weights: about what a fresh one holds
        self._least_uncounted = min(self._least_uncounted, held - self.used_bytes)
        fresh_fits = self._least_uncounted + nbytes <= self.memory_bytes
        if not keep and self._no_room and held + nbytes > self.memory_bytes and fresh_fits:
            self._no_room(
                f"no room for {label or 'a new entry'} ({nbytes / 2**20:.0f} MB): the process "
                f"holds {held / 2**20:.0f} MB with its weight cache empty, of "
                f"{self.memory_bytes / 2**20:.0f} MB"
            )

    def _release_evicted(self) -> None:
        """Give the evicted weights' pages back to the kernel now: under the functions' fixed
        trim threshold (burst.local_functions.ALLOCATOR_ENV, 256 MB) glibc kept them, and a
        warm 512 MB master that had switched plans ran at its old and new weights' sum (CI:
        514 MB, killed)."""
        if self.evicted_since_release:
            self.evicted_since_release = 0
            self._release()

    def _evict_oldest(self, for_label: str, nbytes: int) -> None:
        key, (_, size) = self._items.popitem(last=False)
        self.used_bytes -= size
        self.evicted_since_release += size
        evicted = self._labels.pop(key, key)
        self.evictions.append((evicted, for_label))
        log.warning(
            "weight cache: %s (%.1f MB) evicts %s (%.1f MB): budget %.1f MB, %.1f MB left held",
            for_label,
            nbytes / 2**20,
            evicted,
            size / 2**20,
            self.budget_bytes / 2**20,
            self.used_bytes / 2**20,
        )

    def grow_newest(self, nbytes: int) -> bool:
        """Charge ``nbytes`` more to the newest entry (the one in use: its convs' packed copies,
        ``burst.packed_conv``), evicting older entries to make room; False, and nothing charged,
        if even the newest alone would not fit."""
        if not self._items:
            return False
        key = next(reversed(self._items))
        value, size = self._items[key]
        if size + nbytes > self.budget_bytes:
            return False
        self.make_room(nbytes, f"{self._labels.get(key, key)} (packed copies)", keep=1)
        if key not in self._items:  # (make_room keeps the newest: it alone fits, see above)
            return False
        self._items[key] = (value, size + nbytes)
        self.used_bytes += nbytes
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
