"""Dynamic batching for one model: concurrent requests are run together on one inference thread.

The thread takes the first waiting request, then gathers more until the batch holds
``max_batch_size`` rows or ``max_queue_delay_ms`` has passed since that first request arrived,
concatenates along dim 0, runs the module once and hands each caller its own rows back.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np


class BatcherClosed(RuntimeError):
    """The batcher is closing and accepts no new work."""


class InferenceError(RuntimeError):
    """The model raised while running a batch; only that batch's requests fail."""


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued_s: float = field(default_factory=time.monotonic)


class Batcher:
    """Queue + one inference thread for ``module(*tensors)`` (inputs in ``input_names`` order).

    ``on_batch(batch_rows, seconds)`` is called on the inference thread after each batch (metrics).
    ``warm_up()`` runs on the inference thread before the constructor returns: the OpenMP team
    and oneDNN kernels that serve requests are the ones it initialises (warmed on another thread,
    the first requests paid for them).
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
        self._cond = threading.Condition()
        self._gathered = 0  # requests taken off the queue into the batch being assembled
        self._running = 0  # requests in the batch being executed
        self._closing = False
        self._warm_up = warm_up
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
        rows = _rows(inputs, self._input_names)
        if rows > self.max_batch_size:
            raise ValueError(f"batch of {rows} exceeds max_batch_size {self.max_batch_size}")
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, rows, loop.create_future(), loop)
        with self._cond:
            if self._closing:
                raise BatcherClosed(f"model {self.name} is shutting down")
            self._queue.append(pending)
            self._cond.notify()
        return await pending.future

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
        while True:
            batch = self._gather()
            if batch is None:
                return
            with torch.inference_mode():
                self._run(batch, torch)

    def _gather(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = self._queue[0].enqueued_s + self.max_queue_delay_s
            batch: list[_Pending] = []
            rows = 0
            while True:
                while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
                    item = self._queue.popleft()
                    batch.append(item)
                    rows += item.rows
                self._gathered = len(batch)
                full = rows >= self.max_batch_size or (
                    self._queue and rows + self._queue[0].rows > self.max_batch_size
                )
                remaining = deadline - time.monotonic()
                if full or remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
            self._gathered, self._running = 0, len(batch)
            return batch

    def _run(self, batch: list[_Pending], torch) -> None:
        rows = sum(p.rows for p in batch)
        started = time.perf_counter()
        try:
            tensors = [
                torch.from_numpy(_concat([p.inputs[n] for p in batch])) for n in self._input_names
            ]
            result = self._module(*tensors)
            if isinstance(result, torch.Tensor):
                result = (result,)
            if len(result) != len(self._output_names):
                raise InferenceError(
                    f"model returned {len(result)} outputs, config names {len(self._output_names)}"
                )
            arrays = [t.detach().contiguous().numpy() for t in result]
            for name, a in zip(self._output_names, arrays, strict=True):
                if a.ndim == 0 or a.shape[0] != rows:
                    raise InferenceError(
                        f"output {name!r} has shape {list(a.shape)}, expected {rows} rows"
                    )
        except Exception as exc:  # the model's failure is this batch's failure only
            error = (
                exc
                if isinstance(exc, InferenceError)
                else InferenceError(f"model {self.name} failed: {type(exc).__name__}: {exc}")
            )
            for p in batch:
                _deliver(p, error=error)
        else:
            offset = 0
            for p in batch:
                _deliver(
                    p,
                    result={
                        n: a[offset : offset + p.rows]
                        for n, a in zip(self._output_names, arrays, strict=True)
                    },
                )
                offset += p.rows
        finally:
            with self._cond:
                self._running = 0
        if self._on_batch is not None:
            self._on_batch(rows, time.perf_counter() - started)


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


def _deliver(p: _Pending, *, result=None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if p.future.done():  # the caller went away (cancelled)
            return
        if error is not None:
            p.future.set_exception(error)
        else:
            p.future.set_result(result)

    try:
        p.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's loop is closed; nobody is waiting
        pass
