"""Start-up and shutdown of a gateway app: models, ledger, replica pool, burst backend, dispatcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from policies.costs import PriceTable
from policies.routing import make_policy
from vmpool.artifact import ArtifactError, ModelConfig, list_models, load_artifact
from vmpool.pool import ReplicaPool
from vmpool.provisioners.local import LocalProvisioner
from vmpool.provisioners.static import StaticProvisioner

from .dispatch import Dispatcher
from .ledger import Ledger
from .memory import trim_after
from .settings import Settings
from .state import GatewayState

log = logging.getLogger("tidegate.gateway")


def load_models(settings: Settings) -> dict[str, ModelConfig]:
    """The repository's models the gateway serves: a damaged one (its program not a whole zip,
    as the replicas check at load) is skipped, not routed to replicas that cannot load it."""
    models = {}
    for name in list_models(settings.repo_path):
        try:
            artifact = load_artifact(settings.repo_path, name)
            artifact.verify()
            models[name] = artifact.config
        except ArtifactError as exc:
            log.warning("skipping model %s: %s", name, exc)
    return models


def make_lifespan(
    state: GatewayState, *, provisioner=None, burst=None, prices: PriceTable | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: ``start`` everything on enter, ``stop`` it all on exit."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await start(state, provisioner=provisioner, burst=burst, prices=prices)
            yield
        finally:
            await stop(state)

    return lifespan


async def start(
    state: GatewayState, *, provisioner=None, burst=None, prices: PriceTable | None = None
) -> None:
    settings = state.settings
    models = load_models(settings)
    ledger = Ledger.from_settings(settings.ledger, settings.data_dir)
    # per-process counters (quotas, daily budget) go on from what the ledger holds
    await state.tenants.restore(ledger.usage_by_tenant(state.tenants.clock()))
    await ledger.start()
    state.ledger = ledger
    prov = provisioner or make_provisioner(settings)
    pool = ReplicaPool(prov, health_interval_s=settings.vm.health_interval_s)
    state.pool = pool
    _coalesce(pool, models, settings.vm)  # (each model described to the pool, merged or not)
    await pool.start(settings.vm.replicas if models else 0)
    burst_backend, prepare = burst, None
    if burst_backend is None and settings.burst.enabled and models:
        from burst.service import BurstService

        burst_backend = BurstService.from_settings(settings)
    if burst_backend is not None:
        await burst_backend.start()
        state.burst = burst_backend
        if hasattr(burst_backend, "prepare"):
            prepare = asyncio.get_running_loop().create_task(
                burst_backend.prepare(list(models), settings.burst.default_workers)
            )
            state.tasks.append(prepare)
    policy = make_policy(
        settings.routing_policy,
        **(
            {"spill_outstanding_per_replica": settings.spill_outstanding_per_replica}
            if settings.routing_policy == "threshold"
            else {}
        ),
    )
    state.dispatcher = Dispatcher(
        models=models,
        tenants=state.tenants,
        pool=pool,
        burst=burst_backend,
        policy=policy,
        ledger=ledger,
        metrics=state.metrics,
        prices=prices or PriceTable(),
        vm_timeout_s=settings.vm.request_timeout_s,
        burst_timeout_s=settings.burst.timeout_s,
        default_workers=settings.burst.default_workers,
        max_workers=settings.burst.max_workers,
    )
    from .control import start_policy_engine  # live view, routing policy, autoscaler loop

    engine = start_policy_engine(state, prepare_task=prepare)
    state.tasks.append(asyncio.create_task(trim_after(engine.prepare_task)))  # freed heap back
    from .asyncq.service import start_for_gateway as start_async
    from .grpc.server import start_for_gateway

    state.grpc = await start_for_gateway(state)
    state.asyncq = await start_async(state)


def _coalesce(pool: ReplicaPool, models: dict, vm) -> None:
    """Concurrent small requests for one replica ride in one call, up to each model's largest
    batch (vmpool.coalesce): the per-call work on both sides is paid once per batch."""
    coalescer = pool.client.coalescer  # (its settings matter only with vm.coalesce)
    coalescer.max_in_flight = vm.coalesce_max_in_flight
    coalescer.max_hold_s = vm.coalesce_max_hold_ms / 1000.0
    for cfg in models.values():
        coalesce_model(pool, cfg, vm)


def coalesce_model(pool: ReplicaPool, cfg: ModelConfig, vm) -> None:
    """``cfg``'s calls merged up to its largest batch, when the gateway merges (``vm.coalesce``):
    at start, and again when the repository extension loads the model (its batch may change).
    The pool's replica choice learns its largest batch and whether it computes too."""
    computes = cfg.extra.get("source") != "zoo:delay"  # (the delay model's batches only wait)
    pool.describe_model(cfg.name, min(cfg.max_batch_size, vm.max_batch_size or 1 << 30), computes)
    if vm.coalesce:
        limit = min(cfg.max_batch_size, vm.max_batch_size or 1 << 30)
        pool.client.coalescer.set_max_rows(cfg.name, limit)


async def drain(state: GatewayState) -> None:
    """The stop has begun (SIGTERM): gRPC refuses new calls from now, as HTTP stops accepting,
    and finishes those in flight (``drain_timeout_s``, as HTTP's). ``tidegate serve`` runs it
    beside uvicorn's drain; before, gRPC took new calls until HTTP's drain ended."""
    if state.ledger is not None:  # rows the database refuses from now on are spilled, not
        state.ledger.release()  # waited for: a stop in an outage is not held 30 s by them
    if state.grpc is not None:
        await state.grpc.stop(state.settings.drain_timeout_s)


async def stop(state: GatewayState) -> None:
    """Undo ``start`` in reverse order; safe after a partial start."""
    if state.asyncq is not None:  # consumers stop; jobs they held are retried at next start
        await state.asyncq.stop()
        state.asyncq = None
    if state.grpc is not None:  # first: calls in flight still need the dispatcher
        await state.grpc.stop(state.settings.drain_timeout_s)  # (or waits for ``drain``'s)
        state.grpc = None
    state.dispatcher = None
    for task in state.tasks:
        task.cancel()
    for task in state.tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("background task failed")
    state.tasks.clear()
    if state.burst is not None:
        await state.burst.close()
        state.burst = None
    if state.pool is not None:
        await state.pool.close()
        state.pool = None
    await state.tenants.close()
    if state.ledger is not None:
        await state.ledger.close()
        state.ledger = None


def make_provisioner(settings: Settings):
    if settings.vm.provisioner == "static":
        return StaticProvisioner(settings.vm.urls)
    if settings.vm.provisioner == "ec2":
        return settings.vm.ec2.build()
    if settings.vm.provisioner == "kubernetes":
        return settings.vm.kubernetes.build()
    # threads 0: cores / replicas wanted at each boot, so autoscaled replicas do not oversubscribe
    return LocalProvisioner(
        settings.repo_path,
        threads=settings.vm.threads,
        boot_delay_s=settings.vm.boot_delay_s,
        log_dir=settings.data_dir / "logs",
        # a replica stopped (scale-in, the gateway's stop) finishes its requests within the
        # gateway's drain, then is killed: its own drain was a fixed 30 s on top of HTTP's
        drain_timeout_s=settings.drain_timeout_s,
        extra_args=[*_batching_args(settings), "--drain-timeout-s", str(settings.drain_timeout_s)],
    )


def _batching_args(settings: Settings) -> list[str]:
    args = []
    if settings.vm.max_batch_size:
        args += ["--max-batch-size", str(settings.vm.max_batch_size)]
    if settings.vm.max_queue_delay_ms is not None:
        args += ["--max-queue-delay-ms", str(settings.vm.max_queue_delay_ms)]
    return args
