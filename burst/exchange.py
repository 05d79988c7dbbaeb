"""One burst request at the service: its inputs handed over, the master invoked, its outputs and
the master's report taken back, its tensors cleaned up, and the answer the gateway bills from;
or why the burst path cannot take it (``BurstUnavailable``: an outage, or a refusal)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from burst.report import MasterReport
from burst.store.routed import REQUEST_PREFIXES

log = logging.getLogger("tidegate.burst")


class BurstUnavailable(Exception):
    """The burst path cannot take this request (platform down or busy, plan impossible, a
    function failed). ``retry_after_s`` is set when trying again later may succeed;
    ``refused`` when the burst path refuses the model as asked (its graph, its plan or its
    artifact: ``plan_unavailable``), which no retry changes, unlike an outage. ``model_wide``
    when that holds for every request of the model (its graph or artifact), not only for this
    request's plan (a worker count or batch that fits no function's memory). ``bad_input``
    when the request's own values cannot run (token ids past an embedding table): a client
    error on any path."""

    def __init__(
        self,
        message: str,
        retry_after_s: float | None = None,
        *,
        refused: bool = False,
        model_wide: bool = False,
        bad_input: bool = False,
    ):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.refused = refused
        self.model_wide = refused and model_wide
        self.bad_input = bad_input


@dataclass
class BurstAnswer:
    outputs: dict[str, np.ndarray]
    workers: int
    invocations: list[tuple[int, int]]  # (billed_ms, memory_mb) of the master and each worker
    cold_starts: int
    total_ms: float
    comm_ms: float
    max_memory_used_mb: int = 0  # the largest peak of any invocation (master or worker)
    store_puts: int = 0  # object-store requests (PUT/LIST class, GET class)
    store_gets: int = 0
    queue_requests: int = 0  # billed SQS requests (the sqs transport), priced as such
    report: MasterReport | None = None  # the master's per-stage timings and bills


def refusal_kinds() -> tuple[type[Exception], ...]:
    """The errors by which the burst path refuses a model as asked: its graph (``GraphError``),
    its plan (``PlanError``) or its artifact (``ArtifactError``). No retry changes them; a new
    export, config or profile may."""
    from burst.graph import GraphError
    from burst.plan import PlanError
    from vmpool.artifact import ArtifactError

    return (PlanError, GraphError, ArtifactError)


def plan_unavailable(model: str, exc: BaseException) -> BurstUnavailable | None:
    """What a request gets when its plan could not be made or stored: the model cannot run on
    the burst path (``refused``), or the store failed while the plan's weights were put there
    (a 503 to try again, not a 500 "internal error"); None for anything else."""
    from burst.store.base import StoreError

    if isinstance(exc, refusal_kinds()):
        from burst.plan import PlanError

        return BurstUnavailable(
            f"model {model} cannot run on the burst path: {exc}",
            refused=True,
            model_wide=not isinstance(exc, PlanError),
        )
    if isinstance(exc, (StoreError, OSError)):
        return BurstUnavailable(
            f"cannot put the burst plan's weights in the store: {exc}", retry_after_s=1.0
        )
    return None


async def upload_inputs(cfg, inputs, store, request_id: str, plan) -> list[dict]:
    """The request's input tensors as references (inline, or put in the store); a store or
    transport failure is a clean 503."""
    from burst.store.base import StoreError
    from burst.tensors import TransportError, send
    from vmpool.codec_torch import to_torch

    refs = []
    try:
        # the program's inputs come in the order of the model config's
        for i, spec in enumerate(cfg.inputs):
            tensor = to_torch(np.require(inputs[spec.name], requirements=["C", "W"]))
            refs.append(
                await send(
                    tensor, store, f"req/{request_id}/input{i}", limit_bytes=plan.inline_limit_bytes
                )
            )
    except (StoreError, TransportError, OSError) as exc:
        raise BurstUnavailable(
            f"cannot hand the inputs to the burst path: {exc}", retry_after_s=1.0
        ) from exc
    return refs


async def download_outputs(cfg, result, store, request_id: str) -> tuple[dict, MasterReport]:
    """The master's outputs (by the model config's names) and its report; the outputs it put
    in the store are deleted once read (a LIST only then: the master deleted ``req/``)."""
    from burst.store.base import StoreError
    from burst.tensors import TransportError, receive
    from vmpool.codec_torch import to_numpy

    outs = {}
    try:
        body = json.loads(result.payload)
        report = MasterReport.from_json(body["report"])
        for spec, ref in zip(cfg.outputs, body["outputs"], strict=True):
            outs[spec.name] = to_numpy(await receive(ref, store))
    except (ValueError, KeyError, TypeError, TransportError, StoreError) as exc:
        raise BurstUnavailable(f"burst master returned a malformed result: {exc}") from exc
    if any("key" in ref for ref in body["outputs"]):
        await cleanup(store, request_id, ("resp/",))
    return outs, report


async def cleanup(store, request_id: str, prefixes: tuple[str, ...] = REQUEST_PREFIXES) -> None:
    """Delete the request's tensors under ``prefixes``; a failure is logged, never raised over
    the answer or the error the request already has (the keys are per request: nothing reads
    them). Each prefix is a LIST, billed as a PUT: an answered request whose tensors all
    travelled inline lists none (3 LISTs were $15e-6 a request on S3, 4x a ResNet-18
    function's time)."""
    for prefix in (f"{p}{request_id}/" for p in prefixes):
        try:
            await store.delete_prefix(prefix)
        except Exception:  # noqa: BLE001 - cleanup must not hide the request's outcome
            log.warning("could not delete %s from the burst store", prefix, exc_info=True)


async def run_request(
    invoke, base_store, cfg, plan, inputs: dict[str, np.ndarray], request_id: str, t0: float
) -> BurstAnswer:
    """One request on the burst path: its inputs handed over, the master invoked (``invoke``:
    function name, payload -> result), its outputs and report taken back, its tensors cleaned
    up on any failure (answered: the master deleted ``req/``, ``download_outputs`` ``resp/``)."""
    from burst.store.counting import CountingStore
    from burst.store.encrypted import EVENT_FIELD, EncryptedStore, encode_key, new_request_key

    # remote stores: tensors sealed under a key that travels only in the invocation payload
    tensor_key = new_request_key() if isinstance(base_store, EncryptedStore) else None
    store = CountingStore(base_store.for_request(tensor_key) if tensor_key else base_store)
    try:
        refs = await upload_inputs(cfg, inputs, store, request_id, plan)
        # names and tensors only: functions resolve their platform and store themselves
        event = {
            "plan_id": plan.plan_id,
            "request_id": request_id,
            "inputs": refs,
            **({EVENT_FIELD: encode_key(tensor_key)} if tensor_key else {}),
        }
        result = await invoke(plan.master_function, json.dumps(event).encode())
        outs, report = await download_outputs(cfg, result, store, request_id)
    except BaseException:
        await cleanup(store, request_id)
        raise
    return make_answer(plan, result, report, outs, store, t0)


def make_answer(plan, result, report: MasterReport, outs: dict, store, t0: float) -> BurstAnswer:
    bills = [(result.billing.billed_ms, result.billing.memory_mb)]
    bills += [(b.billed_ms, b.memory_mb) for b in report.billing]
    peak_mb = max(
        [result.billing.max_memory_used_mb] + [b.max_memory_used_mb for b in report.billing]
    )
    return BurstAnswer(
        outputs=outs,
        workers=plan.workers,
        invocations=bills,
        cold_starts=int(result.billing.cold_start) + report.cold_starts,
        max_memory_used_mb=peak_mb,
        total_ms=(time.perf_counter() - t0) * 1000.0,
        comm_ms=report.comm_ms,
        store_puts=report.store_puts + store.puts,
        store_gets=report.store_gets + store.gets,
        queue_requests=report.queue_requests + store.queue_requests,
        report=report,
    )
