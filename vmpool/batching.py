"""Dynamic batching for one model: concurrent requests are run together on one inference thread.

The thread takes the first waiting request, then gathers more until the batch holds
``max_batch_size`` rows or ``max_queue_delay_ms`` has passed since that first request arrived,
concatenates along dim 0, runs the module once and hands each caller its own rows back.
It does not wait when the server holds no request besides those in hand (``upstream_in_flight``):
at one client nothing can join, and the delay was pure latency. Such a lone request of a cheap
model runs on the caller's thread (``INLINE_MAX_MS``), without the hand-offs.
"""

# size: ~410 lines: one batcher whose queue (with its timeouts), gathering, inline path and run share
# one lock

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from vmpool.batch_report import BatchReport


# A lone one-row request runs on the caller's thread when one-row batches take at most this
# (Batcher._may_run_inline): mlp's take 0.2-1.6 ms on a loaded 2-core VM, resnet18's ~15 ms.
INLINE_MAX_MS = 2.0


class BatcherClosed(RuntimeError):
    """The batcher is closing and accepts no new work."""


class InferenceError(RuntimeError):
    """The model raised while running a batch; only that batch's requests fail."""


class QueueTimeout(RuntimeError):
    """The request waited in the queue past its ``timeout`` (Triton's request parameter, in
    microseconds) and was dropped unrun, as Triton's scheduler rejects it."""


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    shapes: tuple = ()  # each input's shape past the batch dim: only equal ones share a batch
    enqueued_s: float = field(default_factory=time.monotonic)
    timeout_s: float = 0.0  # the queue wait it allows (0: no limit)


class Batcher:
    """Queue + one inference thread for ``module(*tensors)`` (inputs in ``input_names`` order).

    ``on_batch(batch_rows, seconds)`` is called on the inference thread after each batch (metrics).
    ``warm_up()`` runs on the inference thread before the constructor returns: the OpenMP team
    and oneDNN kernels that serve requests are the ones it initialises (warmed on another thread,
    the first requests paid for them).
    ``upstream_in_flight()`` counts the requests the server holds, for any model, from arrival
    to answer (None: unknown, so a batch that is not full always waits for the delay).
    """

    def __init__(
        self,
        module: Callable,
        *,
        input_names: Sequence[str],
        output_names: Sequence[str],
        max_batch_size: int,
        max_queue_delay_ms: float,
        threads: int = 1,
        name: str = "model",
        on_batch: Callable[[int, float], None] | None = None,
        warm_up: Callable[[], None] | None = None,
        upstream_in_flight: Callable[[], int] | None = None,
        inline_max_ms: float = INLINE_MAX_MS,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must not be negative, got {max_queue_delay_ms}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self._module = module
        self._input_names = list(input_names)
        self._output_names = list(output_names)
        self._threads = threads
        self._on_batch = on_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_rows = 0
        self._timed = 0  # queued requests with a timeout (none: nothing to look for)
        # Queued rows at which an arrival wakes the inference thread: 1 while it waits for
        # work, the rows that complete its batch while it waits for more, never while it runs
        # (it looks at the queue itself afterwards). A wake-up per arrival cost a futex wake
        # and a GIL hand-off each; most of them found the batch still not full.
        self._wake_at_rows: float = math.inf
        self._cond = threading.Condition()
        self._gathered = 0  # requests taken off the queue into the batch being assembled
        self._running = 0  # requests in the batch being executed
        self._closing = False
        self._warm_up = warm_up
        self._upstream_in_flight = upstream_in_flight
        self._inline_max_s = inline_max_ms / 1000.0
        self._lone_batch_s: float | None = None  # EWMA of one-row batches' service time
        self._inline_torch = None  # torch, once the caller's thread is set up to run it
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"infer-{name}", daemon=True)
        self._thread.start()
        self._started.wait()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for their batch to start."""
        return len(self._queue) + self._gathered

    @property
    def in_flight(self) -> int:
        """Requests accepted and not yet answered (waiting or running)."""
        with self._cond:
            return len(self._queue) + self._gathered + self._running

    @property
    def closed(self) -> bool:
        return self._closing

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one request (every input batched on dim 0); returns its outputs by name."""
        outputs, _ = await self.infer_reported(inputs)
        return outputs

    async def infer_reported(
        self, inputs: dict[str, np.ndarray], queue_timeout_s: float = 0.0
    ) -> tuple[dict[str, np.ndarray], BatchReport]:
        """``infer``, plus the batch the request rode in (its rows and service time).
        ``queue_timeout_s`` (> 0): a request still queued that long is dropped with QueueTimeout
        when the inference thread next forms a batch (Triton's ``timeout``; a request that
        runs at once never waits)."""
        rows = _rows(inputs, self._input_names)
        if rows > self.max_batch_size:
            raise ValueError(f"batch of {rows} exceeds max_batch_size {self.max_batch_size}")
        if self._may_run_inline(rows):  # (a peek without the lock; decided under it below)
            # requests read with this one start their tasks in this iteration: let them count (a
            # burst of 16 each found itself alone and ran inline, unbatched: 1960 -> 1160 req/s)
            await asyncio.sleep(0)
        with self._cond:
            if self._closing:
                raise BatcherClosed(f"model {self.name} is shutting down")
            inline = self._may_run_inline(rows)
            if inline:
                self._running = 1
            else:  # (get_running_loop is a getpid() system call per use on Python 3.11)
                loop = asyncio.get_running_loop()
                shapes = tuple(inputs[n].shape[1:] for n in self._input_names)
                pending = _Pending(inputs, rows, loop.create_future(), loop, shapes)
                if queue_timeout_s > 0:
                    pending.timeout_s = queue_timeout_s
                    self._timed += 1
                self._queue.append(pending)
                self._queued_rows += rows
                if self._queued_rows >= self._wake_at_rows:
                    self._cond.notify()
        if inline:
            return self._run_inline(inputs, rows)
        return await pending.future

    def _may_run_inline(self, rows: int) -> bool:
        """A lone one-row request of a model that answers it within ``inline_max_ms`` runs on
        the caller's thread: nothing could join its batch, and the hand-offs to the inference
        thread and back (two thread wake-ups, GIL ping-pong: ~10 futex calls a request) cost
        more than the model (mlp, 1 thread). Called with the lock held."""
        lone_s = self._lone_batch_s
        return (
            rows == 1
            and lone_s is not None
            and lone_s <= self._inline_max_s
            and not self._queue
            and not self._gathered
            and not self._running
            and self._alone(1)
        )

    def _run_inline(self, inputs: dict[str, np.ndarray], rows: int):
        torch = self._inline_torch
        if torch is None:
            import torch

            torch.set_num_threads(self._threads)  # this thread's OpenMP team, as _loop's
            self._inline_torch = torch
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                arrays = self._forward([inputs], rows, torch)
        except Exception as exc:
            raise _inference_error(exc, self.name) from None
        finally:
            with self._cond:
                self._running = 0
        service_s = time.perf_counter() - started
        self._note_service(rows, service_s)
        if self._on_batch is not None:
            self._on_batch(rows, service_s)
        outputs = dict(zip(self._output_names, arrays))
        return outputs, BatchReport(rows, service_s * 1000.0)

    def _note_service(self, rows: int, service_s: float) -> None:
        if rows == 1:
            last = self._lone_batch_s
            self._lone_batch_s = service_s if last is None else last + 0.2 * (service_s - last)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting work, finish what is queued, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)

    # ------------------------------------------------------------ inference thread

    def _loop(self) -> None:
        import torch

        torch.set_num_threads(self._threads)  # per thread: OpenMP's thread count is thread-local
        try:
            if self._warm_up is not None:
                self._warm_up()
        finally:
            self._started.set()
        with torch.inference_mode():  # once: entered per batch it cost ~50 us a request (mlp)
            while True:
                batch = self._gather()
                if batch is None:
                    return
                self._run(batch, torch)

    def _gather(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue or (self._timed and not self._drop_expired()):
                if self._closing:
                    return None
                self._wake_at_rows = 1
                self._cond.wait()
            deadline = self._queue[0].enqueued_s + self.max_queue_delay_s
            batch: list[_Pending] = []
            rows, shapes = 0, self._queue[0].shapes
            while True:
                while self._queue and self._joins(rows, shapes):
                    item = self._queue.popleft()
                    self._queued_rows -= item.rows
                    if item.timeout_s:
                        self._timed -= 1
                        if batch and self._expired(item):  # (ran out while the batch filled)
                            continue
                    batch.append(item)
                    rows += item.rows
                self._gathered = len(batch)
                full = rows >= self.max_batch_size or (
                    self._queue and not self._joins(rows, shapes)
                )
                remaining = deadline - time.monotonic()
                if full or remaining <= 0 or self._closing or self._alone(len(batch)):
                    break
                self._wake_at_rows = self.max_batch_size - rows  # what fills (or overflows) it
                self._cond.wait(remaining)
            self._wake_at_rows = math.inf
            self._gathered, self._running = 0, len(batch)
            return batch

    def _drop_expired(self) -> bool:
        """Answer QueueTimeout to the queued requests that waited past their timeout and take
        them off the queue (lock held); whether any request is left."""
        now = time.monotonic()
        expired = [p for p in self._queue if p.timeout_s and now - p.enqueued_s > p.timeout_s]
        if expired:
            gone = {id(p) for p in expired}
            self._queue = collections.deque(p for p in self._queue if id(p) not in gone)
            self._queued_rows -= sum(p.rows for p in expired)
            self._timed -= len(expired)
            _deliver(expired, [self._timed_out(p, now) for p in expired])
        return bool(self._queue)

    def _expired(self, p: _Pending) -> bool:
        """Whether ``p`` (off the queue) waited past its timeout; if so it is answered so."""
        now = time.monotonic()
        if now - p.enqueued_s <= p.timeout_s:
            return False
        _deliver([p], [self._timed_out(p, now)])
        return True

    def _timed_out(self, p: _Pending, now: float) -> QueueTimeout:
        return QueueTimeout(
            f"Request timeout expired: waited {(now - p.enqueued_s) * 1e3:.1f} ms in model "
            f"{self.name}'s queue, past its timeout of {round(p.timeout_s * 1e6)} us"
        )

    def _joins(self, rows: int, shapes: tuple) -> bool:
        """Whether the queue's first request fits a batch of ``rows`` rows of ``shapes``: another
        sequence length ends it (concatenated, both failed: "... dimensions must match")."""
        head = self._queue[0]
        return rows + head.rows <= self.max_batch_size and head.shapes == shapes

    def _alone(self, in_hand: int) -> bool:
        """Whether the server holds no request besides the ``in_hand`` ones (and the queue)."""
        if self._upstream_in_flight is None:
            return False
        return self._upstream_in_flight() <= in_hand + len(self._queue)

    def _run(self, batch: list[_Pending], torch) -> None:
        rows = sum(p.rows for p in batch)
        started = time.perf_counter()
        try:
            arrays = self._forward([p.inputs for p in batch], rows, torch)
        except Exception as exc:  # the model's failure is this batch's failure only
            _deliver(batch, [_inference_error(exc, self.name)] * len(batch))
        else:
            # the replica's time for this batch, as every answer in it reports it: the
            # inference thread is free for the next batch once the callers are handed theirs
            service_s = time.perf_counter() - started
            self._note_service(rows, service_s)
            report = BatchReport(rows, service_s * 1000.0)
            offset, results = 0, []
            for p in batch:
                outputs = {
                    n: a[offset : offset + p.rows] for n, a in zip(self._output_names, arrays)
                }
                results.append((outputs, report))
                offset += p.rows
            _deliver(batch, results)
        finally:
            with self._cond:
                self._running = 0
        if self._on_batch is not None:
            self._on_batch(rows, time.perf_counter() - started)

    def _forward(self, inputs: list[dict[str, np.ndarray]], rows: int, torch) -> list:
        """The model's outputs (arrays of ``rows`` rows) for these requests' inputs, stacked."""
        from vmpool.codec_torch import to_numpy, to_torch  # (torch-free import of this module)

        tensors = [to_torch(_concat([i[n] for i in inputs])) for n in self._input_names]
        # a dict or nested tuple output: its tensors in the program's flat order, as exported
        result = torch.utils._pytree.tree_leaves(self._module(*tensors))
        if len(result) != len(self._output_names):
            raise InferenceError(
                f"model returned {len(result)} outputs, config names {len(self._output_names)}"
            )
        arrays = [to_numpy(t.detach().contiguous()) for t in result]
        for name, a in zip(self._output_names, arrays, strict=True):
            if a.ndim == 0 or a.shape[0] != rows:
                raise InferenceError(
                    f"output {name!r} has shape {list(a.shape)}, expected {rows} rows"
                )
        return arrays


def _inference_error(exc: Exception, model: str) -> InferenceError:
    if isinstance(exc, InferenceError):
        return exc
    return InferenceError(f"model {model} failed: {type(exc).__name__}: {exc}")


def _rows(inputs: dict[str, np.ndarray], names: list[str]) -> int:
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ValueError(f"missing input {missing[0]!r}")
    rows = {inputs[n].shape[0] if inputs[n].ndim else 0 for n in names}
    if len(rows) != 1 or 0 in rows:
        raise ValueError(f"inputs must share a batch dimension of at least 1, got {sorted(rows)}")
    return rows.pop()


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1 and arrays[0].flags.writeable and arrays[0].flags.c_contiguous:
        return arrays[0]
    # concatenate copies, which also makes read-only wire buffers writable for torch
    return np.concatenate(arrays, axis=0)


def _deliver(batch: list[_Pending], results: list) -> None:
    """Hand each caller its result (a dict of outputs, or an exception): one call into each
    event loop per batch, not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for p, result in zip(batch, results, strict=True):
        by_loop.setdefault(p.loop, []).append((p.future, result))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:  # that loop is closed; nobody is waiting
            pass


def _settle(settled: list) -> None:
    for future, result in settled:
        if future.done():  # the caller went away (cancelled)
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
