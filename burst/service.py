"""The burst path as the gateway sees it: plans, prepared weights, and one master invocation.

``BurstService.infer`` makes (once) the plan for a model and worker count, prepares its weight
slices in the object store (once per plan), and invokes the master function, which forks the
workers. With the embedded ``local`` platform it also runs the local function runtime as a
subprocess and registers the master and worker functions there (``burst.local_functions``).
Requests pause while the platform fails (``burst.platform_circuit``)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import numpy as np

from burst import tensor_roots
from burst.backend import BurstStats
from burst.detach import Detached
from burst.exchange import BurstAnswer, BurstUnavailable, plan_unavailable, refusal_kinds
from burst.input_bounds import check_ids
from burst.exchange import run_request
from burst.faas.admission import default_memory_budget_mb
from burst.instance_gate import Busy, InstanceGate, observed_cold
from burst.local_functions import function_bodies, memory_tensor_root
from burst.plan_refusals import PlanRefusals
from burst.platform_circuit import PlatformCircuit
from burst.service_plans import ModelReplaced, load_graph, model_files_stamp, plan_and_predict
from burst.service_plans import drop_stale, forget_unstored, prepare_in_thread
from burst.service_plans import service_plan_request
from burst.supervisor import LocalRuntimeSupervisor, RuntimeDown, register_functions

log = logging.getLogger("tidegate.burst")


class BurstService:
    def __init__(
        self,
        repo: str | Path,
        *,
        platform: dict,
        store: dict,
        memory_mb: int = 1024,
        master_memory_mb: int | None = None,
        concurrency: int = 16,
        keep_alive_s: float = 300.0,
        instance_idle_s: float | None = None,
        function_timeout_s: float = 120.0,
        log_dir: str | Path | None = None,
        split: str = "auto",
        max_workers: int = 16,
        transport: str = "auto",
        memory_budget_mb: int | None = None,
        max_waiting: int = 64,
        max_wait_s: float | None = None,
    ):
        self.repo = Path(repo)
        self.platform = dict(platform)
        self.store_cfg = dict(store)
        self.memory_mb = memory_mb
        self.master_memory_mb = master_memory_mb or memory_mb
        self.concurrency = concurrency
        self.keep_alive_s = keep_alive_s
        self.function_timeout_s = function_timeout_s
        self.log_dir = Path(log_dir) if log_dir else None
        self.split = split
        self.max_workers = max_workers
        self.transport = transport
        self.master_function = f"tidegate-master-{self.master_memory_mb}mb"
        self.worker_function = f"tidegate-worker-{self.memory_mb}mb"
        self.memory_budget_mb = memory_budget_mb or default_memory_budget_mb()
        # instances that fit both the concurrency cap and (local) the memory budget
        local_fit = self.memory_budget_mb // max(memory_mb, self.master_memory_mb)
        capacity = min(concurrency, local_fit) if self._local else concurrency
        # a queued request waits at most as long as a request may take
        self._gate = InstanceGate(  # waits for started instances (policies/routing/instance_wait)
            max(1, capacity),
            max_waiting=max_waiting,
            max_wait_s=max_wait_s or function_timeout_s,
            keep_alive_s=instance_idle_s or (keep_alive_s if self._local else None),
        )
        self._circuit = PlatformCircuit(failure_threshold=3, open_s=5.0)
        self._detached = Detached()  # invocations whose caller left; the orphan-queue sweep
        self.supervisor: LocalRuntimeSupervisor | None = None
        self._tensor_root: str | None = None
        self._started = False
        self._invoker = self._store = None
        self._graphs: dict[str, object] = {}
        self._configs: dict[str, object] = {}
        self._graph_stamps: dict[str, tuple] = {}
        self._plans: dict[tuple, object] = {}
        self._refused = PlanRefusals()  # plans that could not be made: not made again
        self._locks: dict[tuple, asyncio.Lock] = {}
        self._predicted_ms: dict[str, float] = {}  # per model: its plan's p99 and $ (live_stats)
        self._predicted_usd: dict[str, float] = {}
        self._workers: dict[str, int] = {}  # per model: its default plan's workers (live_stats)

    @classmethod
    def from_settings(cls, settings) -> "BurstService":
        from burst.store.factory import with_default_roots

        b = settings.burst
        store = b.store.as_config() if hasattr(b.store, "as_config") else dict(b.store)
        store = with_default_roots(store, settings.data_dir / "objects") | b.weights.store_keys()
        platform = b.platform.as_config() if hasattr(b.platform, "as_config") else b.platform
        return cls(
            settings.repo_path,
            platform=platform,
            store=store,
            memory_mb=b.memory_mb,
            concurrency=b.concurrency,
            keep_alive_s=b.keep_alive_s,
            instance_idle_s=b.instance_idle_s,
            function_timeout_s=b.timeout_s,
            log_dir=settings.data_dir / "logs",
            max_workers=b.max_workers,
            transport=b.transport,
        )

    # lifecycle -------------------------------------------------------------------------------

    @property
    def _local(self) -> bool:
        return self.platform.get("kind", "local") == "local"

    async def start(self) -> None:
        from burst.faas.factory import make_invoker
        from burst.store.factory import make_store

        self._use_memory_tensor_root()
        self._store = make_store(self.store_cfg)
        self._detached.sweep_orphan_queues(self._store, self.store_cfg, 2 * self.function_timeout_s)
        try:
            if self._local and not self.platform.get("endpoint"):
                self.supervisor = LocalRuntimeSupervisor(
                    functions=self.function_bodies,
                    on_change=self._runtime_changed,
                    concurrency=self.concurrency,
                    keep_alive_s=self.keep_alive_s,
                    memory_budget_mb=self.memory_budget_mb,
                    log_dir=self.log_dir,
                )
                self.platform = {**self.platform, "endpoint": await self.supervisor.start()}
            elif self._local:
                await register_functions(
                    self.platform["endpoint"], self.function_bodies(self.platform["endpoint"])
                )
        except RuntimeDown as exc:
            raise BurstUnavailable(str(exc)) from None
        self._invoker = make_invoker(self.platform)
        self._started = True

    def _use_memory_tensor_root(self) -> None:
        """Embedded runtime and directory store: tensors in flight go to /dev/shm (memory)."""
        root = memory_tensor_root(self.store_cfg) if self._local else None
        if root is not None:
            tensor_roots.claim(root)  # and those of gateways that died without removing theirs:
            tensor_roots.sweep(Path(root).parent, keep=root)  # gone (burst/tensor_roots.py)
            self._tensor_root = root
            self.store_cfg = {**self.store_cfg, "tensor_root": root}

    def function_bodies(self, endpoint: str) -> list[dict]:
        """CreateFunction bodies for the master and workers (``burst.local_functions``)."""
        return function_bodies(
            endpoint,
            self.store_cfg,
            master=(self.master_function, self.master_memory_mb),
            worker=(self.worker_function, self.memory_mb),
            workers=self.max_workers,
            timeout_s=self.function_timeout_s,
        )

    async def _runtime_changed(self, endpoint: str | None) -> None:
        """The supervisor lost the runtime (None) or brought a new one up."""
        from burst.faas.factory import make_invoker

        old, self._invoker = self._invoker, None
        if old is not None:
            await old.close()
        if endpoint is not None:
            self.platform = {**self.platform, "endpoint": endpoint}
            self._invoker = make_invoker(self.platform)
            self._circuit.forget()

    def ready(self) -> bool:
        """Started, the runtime (if embedded) alive, and the circuit not open."""
        if not self._started or self._invoker is None:
            return False
        supervised = self.supervisor is None or self.supervisor.healthy
        return supervised and self._circuit.usable()

    healthy = ready

    def free_concurrency(self) -> int:
        """Function instances free for new requests (0 when not ready)."""
        return self._gate.free() if self.ready() else 0

    def live_stats(self) -> BurstStats:  # (copies: a snapshot stays as it was read)
        ms, usd, workers = dict(self._predicted_ms), dict(self._predicted_usd), dict(self._workers)
        return BurstStats(None, self.free_concurrency(), ms, usd, workers)

    async def prewarm(self, instances: int) -> bool:
        """Keep at least ``instances`` master-function instances warm where the platform can (the
        local runtime), and say whether it could (gateway.control.Prewarmer, the warm pool)."""
        from burst.faas.local import LocalInvoker

        local = instances > 0 and isinstance(self._invoker, LocalInvoker)
        if local:
            await self._invoker.prewarm(self.master_function, instances)
        return local

    async def close(self) -> None:
        self._started = False
        await self._detached.close()
        if self.supervisor is not None:
            await self.supervisor.close()
        if self._invoker is not None:
            await self._invoker.close()
            self._invoker = None
        if self._store is not None:
            await self._store.close()
        if self._tensor_root:
            import shutil

            shutil.rmtree(self._tensor_root, ignore_errors=True)

    # plans -----------------------------------------------------------------------------------

    async def plan_for(self, model: str, workers: int, batch: int, split: str | None = None):
        """The prepared plan for ``model`` at ``workers`` and ``batch`` (made and stored once);
        ``split`` defaults to the service's ("none": the whole model in the master function)."""
        # and the files it is made from: a profile written (or a model replaced) means a new plan
        key = (model, workers, batch, split or self.split, model_files_stamp(self.repo, model))
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        drop_stale(model, key[-1], self._plans, self._locks)  # an old export's plans: gone
        self._refused.check(key)  # refused before: the same error, not seconds of CPU again
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._plans:
                return self._plans[key]
            self._refused.check(key)  # (while this caller waited)
            try:
                plan, graph = await asyncio.to_thread(self._make_plan, *key)
                # loading the program and slicing weights: seconds of CPU, off the event loop
                await asyncio.to_thread(self._prepare_blocking, model, plan, graph, key[-1])
            except ModelReplaced:  # since its graph was read: a plan from the new file
                return await self.plan_for(model, workers, batch, split)
            except refusal_kinds() as exc:
                self._refused.remember(key, exc)
                self._locks.pop(key, None)  # settled: later callers meet the refusal
                raise
            self._plans[key] = plan
            self._locks.pop(key, None)  # settled: later callers find the plan, lock-free
            return plan

    def _prepare_blocking(self, model: str, plan, graph=None, when=None) -> None:
        graph = graph or self._graphs[model]  # (``when``: the files' stamp it was read at)
        prepare_in_thread(self.repo, self.store_cfg, model, plan, graph, when)

    async def prepare(self, models: list[str], workers: int, batch: int = 1) -> None:
        """Make and store the default plans ahead of traffic (seconds the first burst request
        should not wait). Failures are logged: such a model's burst requests report them."""
        for model in models:
            try:
                await self.plan_for(model, workers, batch)
            except Exception as exc:  # noqa: BLE001 - a model that cannot be planned still serves on VMs
                log.warning("no burst plan for %s at %d workers: %s", model, workers, exc)

    def _make_plan(self, model: str, workers: int, batch: int, split: str, stamp: tuple):
        if self._graph_stamps.get(model) != stamp[:2]:  # the program and config it was read from
            self._graphs[model], self._configs[model] = load_graph(self.repo, model)
            self._graph_stamps[model] = stamp[:2]
        # the same function `tidegate plan` calls: the gateway runs the plan it prints
        graph, config = self._graphs[model], self._configs[model]
        request = self.plan_request(workers, batch, split)
        plan, ms, usd = plan_and_predict(self.repo, model, graph, config, request)
        if batch == 1 and ms is not None:  # routing's estimate and the scaler's price of one
            self._predicted_ms[model], self._predicted_usd[model] = ms, usd
            self._workers[model] = plan.workers
        return plan, graph

    def plan_request(self, workers: int, batch: int = 1, split: str | None = None):
        """What a plan depends on in this service's config (objective: latency)."""
        return service_plan_request(self, workers, batch, split)

    # requests --------------------------------------------------------------------------------

    async def infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        workers: int,
        request_id: str | None = None,
        split: str | None = None,
    ) -> BurstAnswer:
        self._check_routable()
        if not 1 <= workers <= self.max_workers:
            raise BurstUnavailable(f"workers must be between 1 and {self.max_workers}")
        request_id = request_id or uuid.uuid4().hex
        batch = int(next(iter(inputs.values())).shape[0])
        t0 = time.perf_counter()
        try:
            plan = await self.plan_for(model, workers, batch, split)
        except Exception as exc:  # a model that cannot be planned, a store that is down: 503s
            if (unavailable := plan_unavailable(model, exc)) is None:
                raise
            raise unavailable from exc
        if (graph := self._graphs.get(model)) is not None:  # ids past a table: a 400, unpaid
            check_ids(graph, plan.inputs, inputs, model)
        try:
            # n instances for n workers (the master runs a leg), held until the invocation ends
            hold = self._gate.hold(max(1, plan.workers))
            return await self._detached.run(
                hold, lambda: self._run(model, plan, inputs, request_id, t0)
            )
        except Busy as exc:
            raise BurstUnavailable(str(exc), retry_after_s=exc.retry_after_s) from None

    def _check_routable(self) -> None:
        if not self._started:
            raise BurstUnavailable("the burst path is not started")
        if self._invoker is None or (self.supervisor is not None and not self.supervisor.healthy):
            raise BurstUnavailable(
                "the local function runtime is down; it is being restarted", retry_after_s=2.0
            )
        if not self._circuit.allows():
            raise BurstUnavailable(
                "the function platform is failing; burst requests are paused",
                retry_after_s=self._circuit.open_s,
            )

    async def _run(
        self, model: str, plan, inputs: dict[str, np.ndarray], request_id: str, t0: float
    ) -> BurstAnswer:
        self._check_routable()  # the runtime may have gone while we waited for slots
        invoker, cfg = self._invoker, self._configs[model]
        call = lambda name, payload: self._circuit.invoke(invoker, name, payload)  # noqa: E731
        try:
            answer = await run_request(call, self._store, cfg, plan, inputs, request_id, t0)
        except Exception as exc:
            forget_unstored(self._plans, plan, exc)  # its objects gone: prepared again next
            raise
        if answer.invocations and answer.invocations[0][0] > 0:  # billed: the platform's REPORT
            observed_cold(answer.cold_starts > 0)  # (what the gate learns from, not its guess)
        return answer
