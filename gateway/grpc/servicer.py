"""``inference.GRPCInferenceService`` handlers: translate protobuf to calls on the dispatcher.

Every ModelInfer goes through ``Dispatcher.infer`` exactly as the HTTP infer endpoint does, so
tenants (``authorization: Bearer`` or ``x-api-key`` metadata), routing, the ledger and metrics
apply alike. Errors keep their meaning: the HTTP status a TidegateError carries becomes the
matching gRPC status code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import metadata as _metadata
from collections.abc import AsyncIterator

from google.protobuf import json_format

from vmpool.artifact import ModelConfig
from vmpool.classify import batched_outputs
from vmpool.wire import EXTENSIONS
from vmpool.codec import CodecError

from ..access_log import MODEL_KEY, AccessLog
from ..call import CallContext
from ..errors import BadRequest, PayloadTooLarge, TidegateError
from ..infer_endpoint import count_answer, route_header, workers_header
from ..repository import (
    index_rows,
    load_model,
    check_unload_parameters,
    refuse_load_overrides,
    require_admin,
    unload_model,
)
from ..model_version import find_model
from ..state import GatewayState
from ..tenants import refuse_repeated_keys
from . import inference_pb2 as pb
from .call_metadata import metadata_of, request_id_of, text_metadata
from .status import guard as _guard
from .deadline import within_deadline
from .messages import TooLarge
from .stream import answer_in_order, final_answer
from .model_config import model_config
from .tensors import decode_off_loop, encode_infer_response

log = logging.getLogger("tidegate.grpc")
SERVICE = "inference.GRPCInferenceService"

try:
    VERSION = _metadata.version("tidegate")
except _metadata.PackageNotFoundError:  # a source checkout that was never installed
    VERSION = "0.0.0"


GatewayView = GatewayState  # what the servicer serves (repository calls need all of it)


class InferenceServicer:
    def __init__(self, gateway: GatewayView):
        self.gateway = gateway
        # each infer call's line and counts, as the HTTP infer endpoint's (the same sink)
        self.access = AccessLog(None, state=gateway, fmt=gateway.settings.access_log)
        # shutting down: requests on open streams are answered an error at once (below), and
        # the streams end once they have answered what they read (stream.py)
        self.stopping = False
        self.stopped = asyncio.Event()

    async def ServerLive(self, request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.gateway.ready())

    async def ServerMetadata(self, request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name="tidegate", version=VERSION, extensions=list(EXTENSIONS)
        )

    async def ModelReady(self, request, context) -> pb.ModelReadyResponse:
        # An unknown (or unloaded) model or version is NOT_FOUND, as Triton's ModelReady answers
        # (its GetModel's error: tritonclient.grpc's is_model_ready raises) and as HTTP's 404.
        # A gateway not ready yet answers ready=false, where Triton says UNAVAILABLE (docs/grpc.md)
        await _guard(context, self._model, request)
        return pb.ModelReadyResponse(ready=self.gateway.ready())

    async def ModelMetadata(self, request, context) -> pb.ModelMetadataResponse:
        cfg = await _guard(context, self._model, request)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=cfg.name,
            versions=[cfg.version],
            platform=cfg.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in cfg.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in cfg.outputs],
        )

    async def ModelConfig(self, request, context) -> pb.ModelConfigResponse:
        cfg = await _guard(context, self._model, request)
        return pb.ModelConfigResponse(config=model_config(cfg))

    async def ModelStatistics(self, request, context) -> pb.ModelStatisticsResponse:
        return await _guard(context, self._statistics, request)

    def _statistics(self, request) -> pb.ModelStatisticsResponse:
        dispatcher = self.gateway.require_dispatcher()
        if request.name:
            cfgs = [find_model(dispatcher, request.name, request.version or None, grpc=True)]
        else:
            cfgs = list(dispatcher.models.values())
        document = self.gateway.stats.document([(c.name, c.version) for c in cfgs])
        return json_format.ParseDict(document, pb.ModelStatisticsResponse())

    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        return await _guard(context, self._infer_call, request, context)

    async def _infer_call(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        response, trailing = await self._infer(request, text_metadata(context), context)
        context.set_trailing_metadata(trailing)
        return response

    async def ModelStreamInfer(
        self, requests: AsyncIterator, context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Every request on the stream answered, in the order they came, while they run at once
        (``stream.answer_in_order``); a failed one answers its error and the stream goes on."""
        meta = text_metadata(context)

        async def answer(request) -> pb.ModelStreamInferResponse:
            return final_answer(await self._stream_answer(request, meta, context), request)

        async for response in answer_in_order(requests, answer, self.stopped, context):
            yield response

    async def _stream_answer(self, request, meta, context) -> pb.ModelStreamInferResponse:
        if self.stopping:
            # not run: the stream ends once its answers in flight are out (stream.py)
            return pb.ModelStreamInferResponse(
                error_message="the gateway is shutting down: send it to another instance",
                infer_response=pb.ModelInferResponse(id=getattr(request, "id", "")),
            )
        try:
            if isinstance(request, TooLarge):  # (that request's error: the stream goes on)
                self.too_large(method="ModelStreamInfer")
                raise PayloadTooLarge(request.message)
            if not isinstance(request, pb.ModelInferRequest):  # (messages.Malformed)
                self.malformed("ModelStreamInfer")
                raise BadRequest(f"malformed request message: {request.error}")
            response, _ = await self._infer(request, meta, context, "ModelStreamInfer")
        except TidegateError as exc:
            return pb.ModelStreamInferResponse(
                error_message=exc.message,
                infer_response=pb.ModelInferResponse(id=getattr(request, "id", "")),
            )
        except CodecError as exc:
            return pb.ModelStreamInferResponse(error_message=exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not the caller's: log it, answer, go on
            log.exception("unhandled error on a gRPC stream")
            return pb.ModelStreamInferResponse(
                error_message=f"internal error: {type(exc).__name__}"
            )
        return pb.ModelStreamInferResponse(infer_response=response)

    async def RepositoryIndex(self, request, context) -> pb.RepositoryIndexResponse:
        return await _guard(context, self._index, request, context)

    async def _index(self, request, context) -> pb.RepositoryIndexResponse:
        require_admin(self.gateway, metadata_of(context))
        rows = await index_rows(self.gateway)
        if request.ready:
            rows = [r for r in rows if r["state"] == "READY"]
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(models=[index(**r) for r in rows])

    async def RepositoryModelLoad(self, request, context) -> pb.RepositoryModelLoadResponse:
        return await _guard(context, self._load, request, context)

    async def _load(self, request, context) -> pb.RepositoryModelLoadResponse:
        require_admin(self.gateway, metadata_of(context))
        refuse_load_overrides(request.parameters)
        await load_model(self.gateway, request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context) -> pb.RepositoryModelUnloadResponse:
        return await _guard(context, self._unload, request, context)

    async def _unload(self, request, context) -> pb.RepositoryModelUnloadResponse:
        require_admin(self.gateway, metadata_of(context))
        check_unload_parameters({k: _value(v) for k, v in request.parameters.items()})
        await unload_model(self.gateway, request.model_name)
        return pb.RepositoryModelUnloadResponse()

    def _model(self, request) -> ModelConfig:
        dispatcher = self.gateway.require_dispatcher()
        return find_model(dispatcher, request.name, request.version or None, grpc=True)

    async def _infer(
        self, request: pb.ModelInferRequest, meta: dict[str, str], context, method="ModelInfer"
    ) -> tuple[pb.ModelInferResponse, tuple]:
        """``_answer``, with the call's access-log line and counts as over HTTP (the code: the
        HTTP status the gRPC status maps from; ``method``: the line's path)."""
        seen: dict = {"t0": time.perf_counter(), "method": method}
        # the call's id from its start: a refusal (401, 404) answers it and logs it too
        seen["request_id"] = rid = request_id_of(request.id, meta)
        context.set_trailing_metadata((("x-request-id", rid),))
        status = 500  # (an unexpected error: guard answers INTERNAL)
        try:
            response = await self._answer(request, meta, context, seen)
            status = 200
            return response
        except (TidegateError, CodecError) as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            # (a call whose deadline passed is logged when its dispatch ends: _dispatch_ended)
            if not seen.get("late"):
                self._logged(request.model_name, seen, status)

    def malformed(self, method: str = "ModelInfer") -> None:
        """A message that is not a ModelInferRequest: its line and count, a 400 (as HTTP's
        malformed JSON)."""
        self._logged("", {"t0": time.perf_counter(), "method": method}, 400)

    def too_large(self, cancelled: bool = False, method: str = "ModelInfer") -> None:
        """A message past the size limit (messages.TooLarge, or a ModelInfer call whose message
        gRPC's core refused), counted and logged as HTTP's 413; or the client cancelled it
        before sending one (499)."""
        self._logged("", {"t0": time.perf_counter(), "method": method}, 499 if cancelled else 413)

    def _logged(self, model: str, seen: dict, status: int) -> None:
        """The call's access-log line, and its counts as an HTTP infer's: a refusal before
        routing in ``tidegate_requests_total`` (a routed call counted itself, with its ledger
        row), an answer in the tenant's SLO series."""
        ctx = seen.get("ctx")
        note = {
            "tenant": seen.get("tenant", ""),
            "ctx": ctx,
            "status": status,
            "route": getattr(ctx, "route", ""),
            "request_id": getattr(ctx, "request_id", "") or seen.get("request_id", ""),
        }
        path = f"/{SERVICE}/{seen['method']}"
        scope = {"type": "grpc", "method": "POST", "path": path, MODEL_KEY: model}
        self.access.done(scope, note, (time.perf_counter() - seen["t0"]) * 1000.0)

    def _dispatch_ended(self, task: asyncio.Task, lease, seen: dict, model: str) -> None:
        """A dispatch that ran on past its call's deadline (or the client's cancel) ended: its
        body's bytes leave the budget now, and the call gets its line and counts, with the
        status the dispatch ended with (as an HTTP request whose client went away)."""
        lease.release()
        if task.cancelled():
            return self._logged(model, seen, 499)
        exc = task.exception()
        if exc is not None and not isinstance(exc, (TidegateError, CodecError)):
            log.error("a gRPC dispatch past its deadline failed", exc_info=exc)
        self._logged(model, seen, 200 if exc is None else getattr(exc, "status", 500))

    async def _answer(
        self, request: pb.ModelInferRequest, meta: dict[str, str], context, seen: dict
    ) -> tuple[pb.ModelInferResponse, tuple]:
        """The answer to one infer request and its trailing metadata."""
        dispatcher = self.gateway.require_dispatcher()
        refuse_repeated_keys(key for key, _ in context.invocation_metadata() or ())  # (HTTP's)
        tenant = dispatcher.tenants.authenticate(meta.get("authorization"), meta.get("x-api-key"))
        seen["tenant"] = tenant.name
        version = request.model_version or None
        dispatcher.tenants.check_model(tenant, request.model_name)  # before the lookup (HTTP's)
        cfg = find_model(dispatcher, request.model_name, version, grpc=True)
        version = version and cfg.version  # as found ("01" finds "1")
        # the message's bytes count against the process-wide budget of bodies in flight, as an
        # HTTP body does (503 UNAVAILABLE past it), and the call lands in the model's statistics
        lease = self.gateway.body_budget.lease()
        stats = self.gateway.stats.model(cfg.name, cfg.version)
        t0 = time.perf_counter_ns()
        try:
            lease.take(request.ByteSize())
            try:
                req = await decode_off_loop(request)
            except CodecError as exc:
                raise BadRequest(exc.message) from None
            seen["ctx"] = ctx = _call_context(tenant, cfg.name, version, meta, seen["request_id"])
            ended = lambda task: self._dispatch_ended(task, lease, seen, cfg.name)  # noqa: E731
            result = await within_deadline(
                dispatcher.infer(ctx, req), context.time_remaining(), seen, ended
            )
        except (TidegateError, CodecError):
            stats.request_done(False, time.perf_counter_ns() - t0)
            raise
        finally:
            if not seen.get("late"):  # (else released when the dispatch ends)
                lease.release()
        first = next(iter(req.inputs.values()))
        rows = int(first.shape[0]) if first.ndim else 1
        service_ms = sum(result.timings_ms.values()) if result.timings_ms else 0.0
        count_answer(stats, time.perf_counter_ns() - t0, rows, service_ms)  # as over HTTP
        trailing = (
            ("x-request-id", ctx.request_id),
            ("x-tidegate-path", result.path),
            ("x-tidegate-cost-usd", f"{result.cost_usd:.10f}"),
            ("x-tidegate-workers", str(result.workers)),
        )
        response = encode_infer_response(
            model_name=cfg.name,
            model_version=cfg.version,
            request_id=req.id,
            outputs=result.outputs,
            requested=req.outputs,
            batched=batched_outputs(cfg),
        )
        return response, trailing


def _call_context(tenant, model: str, version, meta: dict[str, str], request_id) -> CallContext:
    return CallContext(
        tenant=tenant,
        model=model,
        version=version,
        forced_route=route_header(meta.get("x-tidegate-route")),
        workers=workers_header(meta.get("x-tidegate-workers")),
        request_id=request_id,
    )


def _value(param: pb.ModelRepositoryParameter):
    """A repository parameter's value, whichever of its kinds it holds (None: none)."""
    kind = param.WhichOneof("parameter_choice")
    return getattr(param, kind) if kind else None
