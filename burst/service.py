"""The burst path as the gateway sees it: plans, prepared weights, and one master invocation.

``BurstService.infer`` makes (once) the plan for a model and worker count, prepares its weight
slices in the object store (once per plan), and invokes the master function, which forks the
workers. With the embedded ``local`` platform it also runs the local function runtime as a
subprocess and registers the master and worker functions there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from vmpool.artifact import ArtifactError, load_artifact

log = logging.getLogger("tidegate.burst")

MASTER_HANDLER = "burst.runtime:master"
WORKER_HANDLER = "burst.runtime:worker"


class BurstUnavailable(Exception):
    """The burst path cannot take requests (platform down, plan impossible)."""


@dataclass
class BurstAnswer:
    outputs: dict[str, np.ndarray]
    workers: int
    invocations: list[tuple[int, int]]  # (billed_ms, memory_mb) of the master and each worker
    cold_starts: int
    total_ms: float
    comm_ms: float
    max_memory_used_mb: int = 0  # the largest peak of any invocation (master or worker)
    store_puts: int = 0
    store_gets: int = 0
    report: dict = field(default_factory=dict)


class BurstService:
    def __init__(self, repo: str | Path, *, platform: dict, store: dict, memory_mb: int = 1024,
                 master_memory_mb: int | None = None, concurrency: int = 16,
                 keep_alive_s: float = 300.0, function_timeout_s: float = 120.0,
                 log_dir: str | Path | None = None, split: str = "auto", max_workers: int = 16,
                 transport: str = "auto"):
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
        self._runtime: asyncio.subprocess.Process | None = None
        self._invoker = None
        self._store = None
        self._graphs: dict[str, object] = {}
        self._configs: dict[str, object] = {}
        self._plans: dict[tuple, object] = {}
        self._locks: dict[tuple, asyncio.Lock] = {}

    @classmethod
    def from_settings(cls, settings) -> "BurstService":
        b = settings.burst
        store = dict(b.store)
        if store.get("kind", "dir") == "dir":
            store.setdefault("kind", "dir")
            store.setdefault("root", str((settings.data_dir / "objects").resolve()))
        return cls(settings.repo_path, platform=b.platform, store=store, memory_mb=b.memory_mb,
                   concurrency=b.concurrency, keep_alive_s=b.keep_alive_s,
                   function_timeout_s=b.timeout_s, log_dir=settings.data_dir / "logs",
                   max_workers=b.max_workers, transport=b.transport)

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        from burst.faas.factory import make_invoker
        from burst.store.factory import make_store

        self._store = make_store(self.store_cfg)
        if self.platform.get("kind", "local") == "local" and not self.platform.get("endpoint"):
            self.platform = {"kind": "local", "endpoint": await self._start_local_runtime()}
        if self.platform.get("kind", "local") == "local":
            await self._register_local_functions()
        self._invoker = make_invoker(self.platform)

    async def _start_local_runtime(self) -> str:
        from vmpool.procs import SpawnError, free_port, spawn, wait_healthy

        port = free_port()
        root = Path(__file__).resolve().parents[1]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
        self._runtime = await spawn(  # dies with the gateway, however the gateway dies
            [sys.executable, "-m", "ops", "function-runtime", "--port", str(port),
             "--concurrency", str(self.concurrency), "--keep-alive-s", str(self.keep_alive_s)],
            env=env, log_path=self.log_dir / "function-runtime.log" if self.log_dir else None)
        endpoint = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(self._runtime, endpoint + "/health", timeout_s=60)
        except SpawnError as exc:
            raise BurstUnavailable(f"the local function runtime did not start: {exc}") from None
        return endpoint

    async def _register_local_functions(self) -> None:
        endpoint = self.platform["endpoint"]
        functions = [(self.master_function, MASTER_HANDLER, self.master_memory_mb)]
        functions += [(f"{self.worker_function}-{j}", WORKER_HANDLER, self.memory_mb)
                      for j in range(self.max_workers)]
        async with aiohttp.ClientSession() as session:
            for name, handler, memory_mb in functions:
                body = {"FunctionName": name, "Handler": handler, "MemorySize": memory_mb,
                        "Timeout": int(self.function_timeout_s),
                        "Environment": {"Variables": {"TIDEGATE_FUNCTION_THREADS": "1"}}}
                async with session.post(f"{endpoint}/2015-03-31/functions", json=body) as resp:
                    if resp.status not in (200, 201, 409):  # 409: registered by an earlier start
                        raise BurstUnavailable(f"cannot register function {name}: "
                                               f"HTTP {resp.status} {await resp.text()}")

    async def close(self) -> None:
        if self._invoker is not None:
            await self._invoker.close()
        if self._store is not None:
            await self._store.close()
        proc = self._runtime
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()

    # plans -----------------------------------------------------------------------------------

    async def plan_for(self, model: str, workers: int, batch: int, split: str | None = None):
        """The prepared plan for ``model`` at ``workers`` and ``batch`` (made and stored once).

        ``split`` defaults to the service's; "none" runs the whole model in the master function.
        """
        split = split or self.split
        key = (model, workers, batch, split)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._plans:
                return self._plans[key]
            plan = await asyncio.to_thread(self._make_plan, model, workers, batch, split)
            # loading the program and slicing weights takes seconds of CPU: off the event loop
            await asyncio.to_thread(self._prepare_blocking, model, plan)
            self._plans[key] = plan
            return plan

    def _prepare_blocking(self, model: str, plan) -> None:
        from burst.store.factory import make_store
        from burst.weights import prepare_plan

        async def go():
            store = make_store(self.store_cfg)  # clients are loop-bound: one for this thread
            try:
                await prepare_plan(load_artifact(self.repo, model), plan, store,
                                   graph=self._graphs[model])
            finally:
                await store.close()
        asyncio.run(go())

    async def prepare(self, models: list[str], workers: int, batch: int = 1) -> None:
        """Make and store the default plans ahead of traffic (graph building and weight slicing
        take seconds that the first burst request should not wait for). Failures are logged:
        such a model's burst requests will report them."""
        for model in models:
            try:
                await self.plan_for(model, workers, batch)
            except Exception as exc:  # noqa: BLE001 - a model that cannot be planned still serves on VMs
                log.warning("no burst plan for %s at %d workers: %s", model, workers, exc)

    def _make_plan(self, model: str, workers: int, batch: int, split: str):
        from burst.graph import build_graph
        from burst.plan import content_hash, make_plan

        graph = self._graphs.get(model)
        if graph is None:
            artifact = load_artifact(self.repo, model)
            graph = build_graph(artifact.load_program(), model)
            self._graphs[model], self._configs[model] = graph, artifact.config
        plan = make_plan(graph, workers=workers, split=split, memory_mb=self.memory_mb,
                         batch=batch, transport=self.transport,
                         inline_limit_bytes=self._inline_limit_bytes())
        plan.master_function, plan.worker_function = self.master_function, self.worker_function
        plan.plan_id = content_hash(plan.content())
        return plan

    def _inline_limit_bytes(self) -> int:
        """Largest tensor message sent inline (base64 in the invocation JSON) under "auto".

        With a local directory store a file round trip beats base64 through three hops from
        ~64 KB on (ResNet-18, 1 worker, warm: 145 ms inline vs 112 ms through the store);
        remote stores cost a request and tens of ms, so there inline wins up to the platform's
        payload limit (6 MB on Lambda's synchronous invoke)."""
        from burst.plan import DEFAULT_INLINE_LIMIT_BYTES

        if self.store_cfg.get("kind", "dir") in ("dir", "memory"):
            return 64 * 1024
        return DEFAULT_INLINE_LIMIT_BYTES

    # requests --------------------------------------------------------------------------------

    async def infer(self, model: str, inputs: dict[str, np.ndarray], *, workers: int,
                    request_id: str | None = None, split: str | None = None) -> BurstAnswer:
        import torch

        from burst.faas.base import InvokeError
        from burst.graph import GraphError
        from burst.plan import PlanError
        from burst.store.base import StoreError
        from burst.store.counting import CountingStore
        from burst.tensors import TransportError, receive, send

        if self._invoker is None:
            raise BurstUnavailable("the burst path is not started")
        if not 1 <= workers <= self.max_workers:
            raise BurstUnavailable(f"workers must be between 1 and {self.max_workers}")
        request_id = request_id or uuid.uuid4().hex
        batch = int(next(iter(inputs.values())).shape[0])
        t0 = time.perf_counter()
        try:
            plan = await self.plan_for(model, workers, batch, split)
        except (PlanError, GraphError, ArtifactError) as exc:
            raise BurstUnavailable(f"model {model} cannot run on the burst path: {exc}") from exc
        cfg = self._configs[model]
        store = CountingStore(self._store)  # this request's store requests, for its bill
        refs = []
        # the program's inputs and outputs come in the order of the model config's
        for i, spec in enumerate(cfg.inputs):
            tensor = torch.from_numpy(np.require(inputs[spec.name], requirements=["C", "W"]))
            refs.append(await send(tensor, store, f"req/{request_id}/input{i}",
                                   limit_bytes=plan.inline_limit_bytes))
        event = {"plan_id": plan.plan_id, "request_id": request_id, "inputs": refs,
                 "platform": self.platform, "store": self.store_cfg}
        try:
            result = await self._invoker.invoke(plan.master_function, json.dumps(event).encode())
        except InvokeError as exc:
            raise BurstUnavailable(f"burst master failed ({exc.kind}): {exc}") from exc
        finally:
            await store.delete_prefix(f"req/{request_id}/")
        outs = {}
        try:
            body = json.loads(result.payload)
            report = body.get("report", {})
            for spec, ref in zip(cfg.outputs, body["outputs"]):
                outs[spec.name] = (await receive(ref, store)).numpy()
        except (ValueError, KeyError, TypeError, TransportError, StoreError) as exc:
            raise BurstUnavailable(f"burst master returned a malformed result: {exc}") from exc
        finally:
            await store.delete_prefix(f"resp/{request_id}/")
        billing = [(result.billing.billed_ms, result.billing.memory_mb)]
        cold = int(result.billing.cold_start)
        peak_mb = result.billing.max_memory_used_mb
        for stage in report.get("stages", []):
            for b in stage.get("billing", []):
                billing.append((int(b["billed_ms"]), int(b["memory_mb"])))
                cold += int(bool(b.get("cold_start")))
                peak_mb = max(peak_mb, int(b.get("max_memory_used_mb", 0)))
        return BurstAnswer(outputs=outs, workers=plan.workers, invocations=billing,
                           cold_starts=cold, max_memory_used_mb=peak_mb, total_ms=(time.perf_counter() - t0) * 1000.0,
                           comm_ms=float(report.get("comm_ms", 0.0)),
                           store_puts=int(report.get("store_puts", 0)) + store.puts,
                           store_gets=int(report.get("store_gets", 0)) + store.gets,
                           report=report)
