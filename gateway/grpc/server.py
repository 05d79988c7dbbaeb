"""Start and stop the gateway's gRPC server (grpc.aio, on the gateway's own event loop)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc

from ..routes import unsupported_message
from . import inference_pb2 as pb
from .messages import Malformed, TooLarge, core_cap_bytes, lenient
from .servicer import SERVICE, GatewayView, InferenceServicer
from .stream import STOPPED_DETAILS

log = logging.getLogger("tidegate.grpc")

# method -> (request type, response type); the path is /inference.GRPCInferenceService/<method>
_METHODS = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelConfig": (pb.ModelConfigRequest, pb.ModelConfigResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "ModelStatistics": (pb.ModelStatisticsRequest, pb.ModelStatisticsResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    host: str
    port: int
    servicer: InferenceServicer
    _stopping: asyncio.Future | None = field(default=None, init=False, repr=False)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self, grace_s: float = 30.0) -> None:
        """Refuse new calls (UNAVAILABLE), let calls in flight finish for up to ``grace_s`` (as
        HTTP's graceful shutdown), then close. Requests that come on open streams meanwhile are
        answered an error at once, and each stream ends once it has answered what it read
        (``stream.py``). A second call waits for the first: ``tidegate serve`` starts this at
        SIGTERM, beside HTTP's drain, and the lifespan's stop then waits for it."""
        if self._stopping is None:
            self.servicer.stopping = True
            self.servicer.stopped.set()
            self._stopping = asyncio.ensure_future(self.server.stop(grace_s))
        await asyncio.shield(self._stopping)


def _guarded(method, servicer: InferenceServicer, refused=None):
    """``method``, or INVALID_ARGUMENT for a message that did not parse (``refused()`` first:
    ModelInfer's is counted and logged as HTTP's malformed JSON is), RESOURCE_EXHAUSTED for one
    past the size limit (counted as HTTP's 413), or UNAVAILABLE once the gateway stops (a call
    gRPC's core took in the moment before its own stop began)."""

    async def call(request, context):
        if servicer.stopping:
            await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPED_DETAILS)
        if isinstance(request, TooLarge):
            servicer.too_large()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, request.message)
        if isinstance(request, Malformed):
            if refused is not None:
                refused()
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"malformed request message: {request.error}"
            )
        return await method(request, context)

    return call


# Triton's methods of extensions not served: UNIMPLEMENTED naming the extension (gRPC's own
# answer for them was "Method not found!"), as HTTP's 501 (gateway/routes.py UNSUPPORTED)
_UNSUPPORTED = {
    "SystemSharedMemoryStatus": "system shared memory",
    "SystemSharedMemoryRegister": "system shared memory",
    "SystemSharedMemoryUnregister": "system shared memory",
    "CudaSharedMemoryStatus": "CUDA shared memory",
    "CudaSharedMemoryRegister": "CUDA shared memory",
    "CudaSharedMemoryUnregister": "CUDA shared memory",
    "TraceSetting": "trace",
    "LogSettings": "logging",
}


def _unsupported(extension: str):
    async def call(request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, unsupported_message(extension))

    return call


def _first_message(call, servicer: InferenceServicer):
    """ModelInfer's handler as a client-streaming one (the same bytes on the wire as a unary
    call). gRPC's core refuses a message past ``max_receive_message_length`` (twice the limit:
    ``messages.py``) with RESOURCE_EXHAUSTED before any of our code runs: a unary handler is
    never called, so the refusal went uncounted and unlogged. This one is called, finds no
    message, and counts and logs the call as HTTP's 413 (the core has answered it already)."""

    async def first(requests, context):
        async for request in requests:
            return await call(request, context)
        servicer.too_large(cancelled=context.cancelled())
        return pb.ModelInferResponse()  # (never sent)

    return first


def _handler(servicer: InferenceServicer, limit_bytes: int) -> grpc.GenericRpcHandler:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, name), servicer),
            request_deserializer=lenient(req),
            response_serializer=resp.SerializeToString,
        )
        for name, (req, resp) in _METHODS.items()
        if name != "ModelInfer"
    }
    handlers["ModelInfer"] = grpc.stream_unary_rpc_method_handler(
        _first_message(_guarded(servicer.ModelInfer, servicer, servicer.malformed), servicer),
        request_deserializer=lenient(pb.ModelInferRequest, limit_bytes),
        response_serializer=pb.ModelInferResponse.SerializeToString,
    )
    for name, extension in _UNSUPPORTED.items():
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            _unsupported(extension), request_deserializer=bytes, response_serializer=bytes
        )
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInfer,
        request_deserializer=lenient(pb.ModelInferRequest, limit_bytes),
        response_serializer=pb.ModelStreamInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


async def start_grpc_server(
    gateway: GatewayView, *, host: str, port: int, max_message_mb: float
) -> GrpcServer:
    """Serve ``inference.GRPCInferenceService`` on ``host:port`` (0: a free port).

    ``max_message_mb`` caps a request message as ``max_body_mb`` caps an HTTP body
    (RESOURCE_EXHAUSTED past it, counted: ``messages.py``; gRPC's own default of 4 MB is smaller
    than one batch of eight 224x224 images)."""
    limit_bytes = int(max_message_mb * 1024 * 1024)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", core_cap_bytes(limit_bytes)),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not a second silent listener
        ]
    )
    servicer = InferenceServicer(gateway)
    server.add_generic_rpc_handlers((_handler(servicer, limit_bytes),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port} (in use?)")
    await server.start()
    log.info("gRPC (Open Inference Protocol) on %s:%d", host, bound)
    return GrpcServer(server=server, host=host, port=bound, servicer=servicer)


async def start_for_gateway(gateway) -> GrpcServer | None:
    """The gRPC server a gateway's settings ask for (``grpc_port``; -1: none).

    A port that cannot be bound is logged and HTTP goes on serving: ``tidegate serve`` refuses
    a busy port in one line before starting, and apps built in-process (tests, embedding) should
    not fail because something else holds the default 8001."""
    settings = gateway.settings
    if settings.grpc_port < 0:
        return None
    try:
        return await start_grpc_server(
            gateway,
            host=settings.host,
            port=settings.grpc_port,
            max_message_mb=settings.max_body_mb,
        )
    except (OSError, RuntimeError) as exc:
        log.error("gRPC not served: %s", exc)
        return None
