"""Gateway-side coalescing: concurrent small infer calls to one replica, sent as one batch.

A model server batches concurrent requests itself, but it still parses, decodes, queues,
encodes and answers each HTTP request, and the gateway's replica client pays a request's
encode, ``writev``, read, parse and decode per call. On a small model that per-call work is
most of the CPU per request on both sides (py-spy, mlp at 16 clients). Calls that reach the
replica client in the same event-loop iteration, for the same replica, model, outputs and
input signature (names, dtypes, shapes past the batch dimension), ride in one request whose
inputs are stacked along the batch dimension, up to the model's largest batch; each caller
gets its own rows of the outputs back (views, not copies).

A call to a replica that has no request of the model out goes at once, from the caller's task.
Otherwise a group is sent by its own task, which yields the loop once so that the calls of this
iteration can join, then sends alone when nobody did or sends the merged request. While requests
of the model are already out to that replica, the group waits for one of them to come back,
taking the calls that arrive meanwhile, until it is full or ``max_hold_s`` has passed: one
request of 8 rows costs both sides far less than 8 of one row (mlp: the model server's CPU per
row fell from 442 to 165 us, 1 -> 8 rows). How many may be out before a group waits depends on
how busy the replica is (the service time its answers report, over the last second or so):
with time to spare, one (every call carries all that came while the last was out: the fewest
calls, and the fewest hand-offs between processes); once it is busy (over ``BUSY_ENTER`` of its
time, until it falls under ``BUSY_LEAVE``), ``max_in_flight`` (one batch running, one queued
behind it: the replica never waits for the gateway's turnaround between batches). Measured on
mlp, 16 clients, gateway and model server on one 2-core host (ops/bench/gateway_ab.py against
always holding behind two, both orders): the gateway's share of direct throughput rose by
0.09-0.15 (0.04-0.06 under SCHED_FIFO), with 5-20 % less CPU per request on both sides.
Only models whose requests come back within ``max_hold_s`` (a moving average of the round
trip) are held: for a slow model the per-call work is small beside its compute, and a held
request would miss the batch queued on the replica that it could have joined there.
A merged request the replica refuses or fails on (an answer of 400 to 500, or
outputs without a batch dimension) is sent again as each member alone, so one caller's bad input
never fails another's request (callers of several tenants share groups); a replica that cannot be
reached, is overloaded or times out fails every member as it is. A member cancelled while it
waits only drops its own answer. The merged request carries the leader's
request id. Only small calls are merged (``max_bytes``): large tensors are compute-bound on
the replica and stacking them would copy them once more.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from .codec_params import TimedInputs

Outputs = dict[str, np.ndarray]
Answer = tuple[Outputs, object]  # the outputs and the replica's batch report (or None)
Send = Callable[..., Awaitable[Answer]]  # (base_url, model, inputs, outputs, id, timeout_s)
MAX_COALESCED_BYTES = 64 * 1024  # per call: above it, a call goes alone


DEFAULT_MAX_IN_FLIGHT = 2  # one batch running on the replica, one queued behind it
DEFAULT_MAX_HOLD_S = 0.02
# The share of its time a replica spends on batches (as its answers report them) above which
# it counts as busy, and below which it no longer does (apart, so that it does not flip at
# every window), over windows of BUSY_WINDOW_S.
BUSY_ENTER = 0.6
BUSY_LEAVE = 0.4
BUSY_WINDOW_S = 1.0


@dataclass
class _Call:
    inputs: Outputs
    rows: int
    future: asyncio.Future  # the caller's answer


@dataclass
class _Busy:
    """How busy one replica is with one model's batches: the service time its answers reported
    since ``since`` and whether it counts as busy (see the module docstring)."""

    since: float
    service_s: float = 0.0
    busy: bool = False

    def add(self, now: float, service_s: float) -> None:
        self.service_s += service_s
        elapsed = now - self.since
        if elapsed >= BUSY_WINDOW_S:
            share = self.service_s / elapsed
            self.busy = share >= (BUSY_LEAVE if self.busy else BUSY_ENTER)
            self.since, self.service_s = now, 0.0


@dataclass
class _Group:
    limit_rows: int
    calls: list[_Call] = field(default_factory=list)
    rows: int = 0
    held: asyncio.Future | None = None  # set while the group waits for a request to come back


def _wake(waiter: asyncio.Future | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Coalescer:
    """Merges concurrent calls to ``send`` for models given a row limit (``set_max_rows``).

    While ``max_in_flight`` requests of a model are already out to a replica, a new group waits
    (at most ``max_hold_s``) for one of them to come back, taking the calls that arrive
    meanwhile, unless it fills up first (see the module docstring)."""

    def __init__(
        self,
        send: Send,
        *,
        max_bytes: int = MAX_COALESCED_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self._send = send
        self._clock = clock
        self.max_bytes = max_bytes
        self.max_in_flight = max_in_flight  # per replica and model; 0: never hold
        self.max_hold_s = max_hold_s
        self._max_rows: dict[str, int] = {}
        self._open: dict[tuple, _Group] = {}  # groups still taking calls, by key
        self._in_flight: dict[tuple[str, str], int] = {}  # requests out, per (replica, model)
        self._slots: dict[tuple[str, str], deque[asyncio.Future]] = {}  # groups held for one
        self._round_trip_s: dict[tuple[str, str], float] = {}  # EWMA per (replica, model)
        self._busy: dict[tuple[str, str], _Busy] = {}  # per (replica, model)
        self._tasks: set[asyncio.Task] = set()
        self.requests_sent = 0  # merged requests (for tests and benchmarks)
        self.calls_merged = 0
        self.groups_held = 0  # groups that waited for a request in flight to come back

    def forget(self, base_url: str) -> None:
        """A replica that is gone: its per-model counts, round trips and load (none in flight)."""
        for per_slot in (self._in_flight, self._slots, self._round_trip_s, self._busy):
            for slot in [s for s in per_slot if s[0] == base_url and not self._in_flight.get(s)]:
                del per_slot[slot]

    def set_max_rows(self, model: str, max_rows: int) -> None:
        """Coalesce calls to ``model`` up to ``max_rows`` rows (its largest batch); <= 1: never."""
        if max_rows > 1:
            self._max_rows[model] = max_rows
        else:
            self._max_rows.pop(model, None)

    async def infer(self, base_url, model, inputs: Outputs, outputs, request_id, timeout_s):
        """``send``'s answer for these inputs: alone, or as rows of a merged request."""
        limit = self._max_rows.get(model)
        if not limit or type(inputs) is TimedInputs:  # (a queue timeout of its own: alone)
            return await self._send(base_url, model, inputs, outputs, request_id, timeout_s)
        rows, signature = _rows(inputs, self.max_bytes)
        args = (base_url, model, outputs, request_id, timeout_s)
        if rows is None or rows >= limit:
            return await self._tracked(inputs, args)
        key = (base_url, model, None if outputs is None else tuple(outputs), signature)
        if not self._in_flight.get((base_url, model)) and key not in self._open:
            # the replica has none of this model's requests: this one goes now, from the
            # caller's task (no group task and loop iteration of its own, 1 in 6 of the
            # gateway's at one client); calls that come while it is out form a group
            return await self._tracked(inputs, args)
        call = _Call(inputs, rows, asyncio.get_running_loop().create_future())
        group = self._open.get(key)
        if group is not None and group.rows + rows <= group.limit_rows:
            group.calls.append(call)
            group.rows += rows
            if group.rows >= group.limit_rows:
                del self._open[key]  # full: the next call opens a new group
                _wake(group.held)  # (a held group goes now: nothing more can join)
            return await call.future
        group = self._open[key] = _Group(limit, [call], rows)
        task = asyncio.get_running_loop().create_task(self._run_group(key, group, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await call.future  # (cancelled: only this call's answer is dropped)

    async def _run_group(self, key: tuple, group: _Group, args: tuple) -> None:
        """Let the calls of this loop iteration join (and, while the replica has
        ``max_in_flight`` requests of the model out, those until one comes back), then send."""
        try:
            await asyncio.sleep(0)
            slot = (args[0], args[1])
            if (
                self.max_in_flight
                and group.rows < group.limit_rows
                and self._in_flight.get(slot, 0) >= self._hold_behind(slot)
                and self._round_trip_s.get(slot, float("inf")) <= self.max_hold_s
            ):
                await self._hold(slot, group)
        except asyncio.CancelledError:  # (the loop shuts down)
            for call in group.calls:
                call.future.cancel()
            raise
        finally:
            if self._open.get(key) is group:
                del self._open[key]
        if len(group.calls) == 1:
            await self._send_alone(group.calls[0], args)
        else:
            await self._send_group(group, args)

    def _hold_behind(self, slot: tuple[str, str]) -> int:
        """How many requests of the model out to the replica make a new group wait: one while
        the replica has time to spare, ``max_in_flight`` once it is busy."""
        busy = self._busy.get(slot)
        return self.max_in_flight if busy is not None and busy.busy else 1

    async def _hold(self, slot: tuple[str, str], group: _Group) -> None:
        loop = asyncio.get_running_loop()
        group.held = loop.create_future()
        self._slots.setdefault(slot, deque()).append(group.held)
        self.groups_held += 1
        timer = loop.call_later(self.max_hold_s, _wake, group.held)
        try:
            await group.held
        finally:
            timer.cancel()

    async def _tracked(self, inputs: Outputs, args: tuple) -> Answer:
        """``send``, counted in flight for its replica and model; a held group gets the slot."""
        base_url, model, outputs, request_id, timeout_s = args
        slot = (base_url, model)
        self._in_flight[slot] = self._in_flight.get(slot, 0) + 1
        start = self._clock()
        try:
            answer = await self._send(base_url, model, inputs, outputs, request_id, timeout_s)
        finally:
            self._in_flight[slot] -= 1
            waiting = self._slots.get(slot)
            while waiting:
                waiter = waiting.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break
        now = self._clock()
        took_s = now - start
        last = self._round_trip_s.get(slot)
        self._round_trip_s[slot] = took_s if last is None else last + 0.2 * (took_s - last)
        service_ms = getattr(answer[1], "service_ms", None)  # (vmpool.batch_report)
        if service_ms is not None:
            busy = self._busy.get(slot)
            if busy is None:
                busy = self._busy[slot] = _Busy(start)
            busy.add(now, service_ms / 1000.0)
        return answer

    async def _send_group(self, group: _Group, args: tuple) -> None:
        calls = group.calls
        names = list(calls[0].inputs)
        merged = {name: np.concatenate([c.inputs[name] for c in calls]) for name in names}
        self.requests_sent += 1
        self.calls_merged += len(calls)
        try:
            answer, report = await self._tracked(merged, args)
            parts = _split(answer, [c.rows for c in calls])
        except asyncio.CancelledError:  # (the loop shuts down)
            for call in calls:
                call.future.cancel()
            raise
        except Exception as exc:
            if not _members_may_differ(exc):  # the replica's state: every member's failure
                for call in calls:
                    if not call.future.done():
                        call.future.set_exception(exc)
                return
            if isinstance(exc, _NotBatched):
                self._max_rows.pop(args[1], None)  # outputs cannot be split: never merge again
            await asyncio.gather(*(self._send_alone(call, args) for call in calls))
            return
        for call, part in zip(calls, parts, strict=True):
            if not call.future.done():
                call.future.set_result((part, report))

    async def _send_alone(self, call: _Call, args: tuple) -> None:
        if call.future.done():  # cancelled meanwhile
            return
        try:
            answer = await self._tracked(call.inputs, args)
        except Exception as exc:  # (CancelledError is not one: the loop shuts down)
            if not call.future.done():
                call.future.set_exception(exc)
            return
        if not call.future.done():
            call.future.set_result(answer)


class _NotBatched(Exception):
    """A merged answer whose outputs do not have the merged rows: the model's outputs are not
    per row, so its calls go alone from then on."""


def _members_may_differ(exc: Exception) -> bool:
    """Could one member's input have caused ``exc``? An answer of 400 to 500 from the model, or
    outputs that are not batched; not an unreachable, overloaded or slow replica."""
    if isinstance(exc, _NotBatched):
        return True
    status = getattr(exc, "status", None)
    connect = getattr(exc, "connect", False)
    return isinstance(status, int) and 400 <= status <= 500 and status != 429 and not connect


def _rows(inputs: Outputs, max_bytes: int) -> tuple[int | None, tuple]:
    """The rows every input has (its first dimension), or None when the call cannot merge, and
    the inputs' signature (names, dtypes, shapes past the batch dimension), in one pass."""
    rows = None
    size = 0
    signature = []
    for name, array in inputs.items():
        shape = array.shape
        if not shape or (rows is not None and shape[0] != rows):
            return None, ()
        rows = shape[0]
        size += array.nbytes
        signature.append((name, array.dtype.str, shape[1:]))
    return (rows if rows and size <= max_bytes else None), tuple(signature)


def _split(answer: Outputs, rows: list[int]) -> list[Outputs]:
    total = sum(rows)
    for name, array in answer.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise _NotBatched(name, list(array.shape))
    parts = []
    start = 0
    for count in rows:
        parts.append({name: array[start : start + count] for name, array in answer.items()})
        start += count
    return parts
