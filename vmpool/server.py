"""The VM model server: Open Inference Protocol v2 over HTTP for the models of one repository.

``ModelServer`` is the core (models, batchers, drain state) and never sees HTTP types;
``create_model_server_app`` puts the protocol's REST endpoints in front of it, and
``run_model_server`` runs the app under uvicorn with a graceful drain on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from vmpool.artifact import DATATYPES, ArtifactError, ModelConfig, list_models, load_artifact
from vmpool.batching import Batcher, BatcherClosed, InferenceError
from vmpool.codec import (HEADER_LENGTH, CodecError, decode_request, encode_error,
                          encode_response, parse_header_length, validate_inputs)
from vmpool.metrics import ModelServerMetrics

SERVER_NAME = "tidegate-model-server"
log = logging.getLogger("tidegate.model_server")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tidegate")
    except Exception:  # running from a source tree that is not installed
        return "0.1.0"


class ModelServerError(Exception):
    """An error with the HTTP status it is answered with."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class _Model:
    config: ModelConfig
    batcher: Batcher
    metadata: bytes  # pre-rendered JSON


class ModelServer:
    """Loaded models with their batchers, plus the ready/draining state."""

    def __init__(self, repo: str | Path, models: list[str] | None = None, *, threads: int = 1,
                 max_batch_size: int | None = None, max_queue_delay_ms: float | None = None,
                 metrics: ModelServerMetrics | None = None):
        names = list(dict.fromkeys(models)) if models else list_models(repo)
        if not names:
            raise ArtifactError(f"no models in repository {repo}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queue_delay_ms is not None and max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must not be negative, got {max_queue_delay_ms}")
        self.metrics = metrics or ModelServerMetrics()
        self.models: dict[str, _Model] = {}
        self.draining = False
        self.in_flight = 0  # infer requests inside the HTTP handler
        try:
            for name in names:
                self._load(repo, name, threads, max_batch_size, max_queue_delay_ms)
        except BaseException:
            self.close()
            raise

    def _load(self, repo, name: str, threads: int, max_batch_size, max_queue_delay_ms) -> None:
        import torch

        artifact = load_artifact(repo, name)
        cfg = artifact.config
        if max_batch_size is not None:
            cfg = dataclasses.replace(cfg, max_batch_size=max_batch_size)
        if max_queue_delay_ms is not None:
            cfg = dataclasses.replace(cfg, max_queue_delay_ms=max_queue_delay_ms)
        try:
            module = artifact.load_module()
        except Exception as exc:
            raise ArtifactError(
                f"model {name}: cannot load {artifact.program_path}: {exc}") from exc
        _warm_up(module, cfg, torch)
        holder: dict[str, Batcher] = {}
        on_batch = self.metrics.track_model(
            cfg.name, lambda: holder["b"].queue_depth, lambda: holder["b"].in_flight)
        batcher = Batcher(module, input_names=[t.name for t in cfg.inputs],
                          output_names=[t.name for t in cfg.outputs],
                          max_batch_size=cfg.max_batch_size,
                          max_queue_delay_ms=cfg.max_queue_delay_ms, threads=threads,
                          name=cfg.name, on_batch=on_batch)
        holder["b"] = batcher
        metadata = orjson.dumps({
            "name": cfg.name, "versions": [cfg.version], "platform": cfg.platform,
            "inputs": [t.to_dict() for t in cfg.inputs],
            "outputs": [t.to_dict() for t in cfg.outputs],
            "parameters": {"max_batch_size": cfg.max_batch_size,
                           "max_queue_delay_ms": cfg.max_queue_delay_ms, "slo_ms": cfg.slo_ms},
        })
        self.models[cfg.name] = _Model(cfg, batcher, metadata)

    @property
    def ready(self) -> bool:
        return not self.draining and bool(self.models)

    def model(self, name: str, version: str | None = None) -> _Model:
        model = self.models.get(name)
        if model is None:
            raise ModelServerError(f"unknown model {name!r}", 404)
        if version is not None and version != model.config.version:
            raise ModelServerError(f"model {name!r} has no version {version!r} "
                                   f"(versions: {model.config.version})", 404)
        return model

    async def infer(self, model: _Model, body: bytes,
                    header_length: int | None) -> tuple[bytes, int | None]:
        """Decode, validate, run (batched) and encode one request."""
        req = decode_request(body, header_length)
        validate_inputs(req, model.config)
        try:
            outputs = await model.batcher.infer(req.inputs)
        except BatcherClosed as exc:
            raise ModelServerError(str(exc), 503) from None
        except InferenceError as exc:
            raise ModelServerError(str(exc), 500) from None
        cfg = model.config
        return encode_response(model_name=cfg.name, model_version=cfg.version,
                               request_id=req.id, outputs=outputs, requested=req.outputs,
                               binary_output=req.binary_output)

    def start_drain(self) -> None:
        """Stop being ready; new infer requests get 503, accepted ones finish."""
        self.draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight or any(m.batcher.in_flight for m in self.models.values()):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def close(self, timeout_s: float | None = 30.0) -> None:
        for m in self.models.values():
            m.batcher.close(timeout_s)


def _warm_up(module, cfg: ModelConfig, torch) -> None:
    """One batch-1 call so the first request does not pay for lazy initialisation."""
    args = []
    for spec in cfg.inputs:
        shape = [1 if d == -1 else d for d in spec.shape]
        dtype = getattr(torch, DATATYPES[spec.datatype])
        args.append(torch.zeros(shape, dtype=dtype))
    try:
        with torch.inference_mode():
            module(*args)
    except Exception as exc:  # zeros may be invalid input for some models; not fatal
        log.warning("model %s: warm-up call failed: %s", cfg.name, exc)


# ---------------------------------------------------------------- HTTP

def _json(obj, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    # After a 413 the rest of the oversized body may still be in flight: drop the connection.
    headers = {"Connection": "close"} if status == 413 else None
    return Response(encode_error(message), status_code=status, media_type="application/json",
                    headers=headers)


async def _read_body(request: Request, limit_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ModelServerError(f"bad Content-Length {declared!r}", 400) from None
        if length > limit_bytes:
            raise ModelServerError(f"request body of {length} bytes exceeds the limit of "
                                   f"{limit_bytes} bytes", 413)
        return await request.body()  # the HTTP parser reads exactly Content-Length bytes
    chunks, total = [], 0  # chunked upload: enforce the limit while reading
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit_bytes:
            raise ModelServerError(f"request body exceeds the limit of {limit_bytes} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_model_server_app(repo: str | Path, models: list[str] | None = None, *,
                            threads: int = 1, max_body_mb: float = 64,
                            max_batch_size: int | None = None,
                            max_queue_delay_ms: float | None = None) -> FastAPI:
    """A FastAPI app serving ``models`` (None: all) of ``repo``; overrides replace config values."""
    if max_body_mb <= 0:
        raise ValueError(f"max_body_mb must be positive, got {max_body_mb}")
    core = ModelServer(repo, models, threads=threads, max_batch_size=max_batch_size,
                       max_queue_delay_ms=max_queue_delay_ms)
    limit_bytes = int(max_body_mb * 1024 * 1024)
    metrics = core.metrics
    server_metadata = orjson.dumps({"name": SERVER_NAME, "version": _version(),
                                    "extensions": ["binary_tensor_data"]})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(core.close)

    app = FastAPI(title=SERVER_NAME, lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None)
    app.state.model_server = core

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(str(exc.detail), exc.status_code)

    @app.get("/v2")
    async def server_metadata_endpoint() -> Response:
        return Response(server_metadata, media_type="application/json")

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if not core.ready:
            return _error("server is draining", 503)
        return _json({"ready": True})

    async def model_metadata(request: Request) -> Response:
        p = request.path_params
        try:
            model = core.model(p["model"], p.get("version"))
        except ModelServerError as exc:
            return _error(exc.message, exc.status)
        return Response(model.metadata, media_type="application/json")

    async def model_ready(request: Request) -> Response:
        p = request.path_params
        try:
            model = core.model(p["model"], p.get("version"))
        except ModelServerError as exc:
            return _error(exc.message, exc.status)
        if not core.ready or model.batcher.closed:
            return _error(f"model {model.config.name} is not ready (server draining)", 503)
        return _json({"name": model.config.name, "ready": True})

    async def infer(request: Request) -> Response:
        # A plain Starlette route: no FastAPI parameter parsing on the hot path.
        started = time.perf_counter()
        p = request.path_params
        name = p["model"]
        try:
            model = core.model(name, p.get("version"))
        except ModelServerError as exc:
            return _error(exc.message, exc.status)
        if core.draining:
            metrics.request_done(name, 503)
            return _error("server is draining; retry on another replica", 503)
        core.in_flight += 1
        try:
            body = await _read_body(request, limit_bytes)
            header_length = parse_header_length(request.headers.get(HEADER_LENGTH))
            out, out_header_length = await core.infer(model, body, header_length)
        except (CodecError, ModelServerError) as exc:
            metrics.request_done(name, exc.status)
            return _error(exc.message, exc.status)
        except ClientDisconnect:  # nobody is left to answer
            return Response(status_code=400)
        except Exception as exc:  # a bug, not bad input: say so, keep serving
            log.exception("model %s: infer failed", name)
            metrics.request_done(name, 500)
            return _error(f"internal error: {type(exc).__name__}: {exc}", 500)
        finally:
            core.in_flight -= 1
        metrics.request_done(name, 200, time.perf_counter() - started)
        if out_header_length is None:
            return Response(out, media_type="application/json")
        return Response(out, media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(out_header_length)})

    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        app.add_route(prefix, model_metadata, methods=["GET"])
        app.add_route(prefix + "/ready", model_ready, methods=["GET"])
        app.add_route(prefix + "/infer", infer, methods=["POST"])

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


# ---------------------------------------------------------------- running

def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_model_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8001, *,
                     drain_timeout_s: float = 30.0,
                     on_ready: Callable[[str, int], None] | None = None) -> int:
    """Serve ``app`` until SIGTERM/SIGINT, then drain and return 0 (1 if the drain timed out).

    ``on_ready(host, port)`` runs once the socket accepts requests (port 0 picks a free port).
    A second signal skips the drain.
    """
    import uvicorn
    import uvloop

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # our own handlers drain first; uvicorn's would re-raise
            yield

    async def main() -> int:
        config = uvicorn.Config(app, loop="uvloop", http="httptools", access_log=False,
                                log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=drain_timeout_s)
        server = _Server(config)
        core: ModelServer = app.state.model_server
        try:
            sock = _bind(host, port)
        except OSError:
            await asyncio.to_thread(core.close)
            raise
        drained = {"ok": True}
        drain_task: list[asyncio.Task] = []

        async def drain() -> None:
            core.start_drain()
            drained["ok"] = await core.wait_idle(drain_timeout_s)
            if not drained["ok"]:
                log.error("drain timed out after %.1f s with %d requests in flight",
                          drain_timeout_s, core.in_flight)
            server.should_exit = True

        def on_signal() -> None:
            if drain_task:
                server.force_exit = server.should_exit = True
                return
            drain_task.append(asyncio.ensure_future(drain()))

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started and on_ready is not None:
            on_ready(host, sock.getsockname()[1])
        await serving
        return 0 if drained["ok"] else 1

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())
