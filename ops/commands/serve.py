"""``tidegate serve``: the gateway on embedded defaults (local VM pool, local functions)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from ops.cli import CliError

HELP = "Run the gateway: Open Inference Protocol v2 over HTTP, VM pool plus burst functions."
log = logging.getLogger("tidegate.serve")


def add_arguments(p) -> None:
    p.add_argument(
        "--config",
        type=Path,
        help="TOML settings file (every key: docs/configuration.md; default: none, the built-in defaults, then TIDEGATE_* variables)",
    )
    p.add_argument(
        "--repo",
        type=Path,
        help="model repository (default: DATA_DIR/models, "
        "where the demo model is exported on first run)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="repository, ledger, objects and logs (default: ./.tidegate; survives restarts)",
    )
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8000)")
    p.add_argument(
        "--grpc-port",
        type=int,
        help="gRPC (Open Inference Protocol) port (default 8001, or a free one with --port 0; "
        "0 = a free port; -1 = no gRPC)",
    )
    p.add_argument("--replicas", type=int, help="VM replicas to keep (default 1)")
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="what reaches stderr (default warning); the access log goes to stdout whatever "
        "this says (access_log in the config turns it off)",
    )


def _banner(settings, models: list[str]) -> str:
    from vmpool.artifact import load_artifact

    url = f"http://{settings.host}:{settings.port}"
    cfg = load_artifact(settings.repo_path, models[0]).config
    spec = cfg.inputs[0]
    shape = [1 if d < 0 else d for d in spec.shape]
    count = 1
    for d in shape:
        count *= d
    # with tenants every request needs a key: the examples show where it goes (never a key)
    keyed = bool(settings.tenants)
    curl_key = " -H 'Authorization: Bearer KEY'" if keyed else ""
    py_key = ",headers={'Authorization':'Bearer KEY'}" if keyed else ""
    return "\n".join(
        [
            f"Tidegate gateway on {url}  (models: {', '.join(models)}; data: {settings.data_dir})",
            f"  VM replicas: {settings.vm.replicas}; burst path: "
            f"{'on (' + settings.burst.platform.kind + ')' if settings.burst.enabled else 'off'}",
            "  Try" + (" (KEY: one of a tenant's api_keys):" if keyed else ":"),
            f"    curl -s{curl_key} {url}/v2/models/{cfg.name}",
            f"    python -c \"import json,sys,urllib.request as u; b=json.dumps({{'inputs':[{{'name':"
            f"'{spec.name}','shape':{shape},'datatype':'{spec.datatype}','data':[0.5]*{count}}}]}}).encode(); "
            f"r=json.load(u.urlopen(u.Request('{url}/v2/models/{cfg.name}/infer',b{py_key}))); "
            f"print(r['outputs'][0]['shape'])\"",
            f"  gRPC (tritonclient.grpc): {_grpc_address(settings)}",
            f"  Metrics: {url}/metrics   Stop: Ctrl-C",
        ]
    )


def _grpc_address(settings) -> str:
    if settings.grpc_port < 0:
        return "off"
    if settings.grpc_port == 0:
        return f"{settings.host}, a free port (logged at start)"
    return f"{settings.host}:{settings.grpc_port}"


def _with_grpc_port(settings, server):
    """``--grpc-port 0``: the settings with the port the gRPC server really listens on (once
    the app is up), so the banner names it; the same settings if gRPC is off or not served."""
    if settings.grpc_port != 0:
        return settings
    state = getattr(getattr(server.config.app, "state", None), "gateway", None)
    grpc = getattr(state, "grpc", None)
    if grpc is None:
        return settings.model_copy(update={"grpc_port": -1})
    return settings.model_copy(update={"grpc_port": grpc.port})


async def _bound_port(server) -> int:
    """The port the server listens on, once it does (``--port 0`` asks the kernel for one)."""
    while True:
        for srv in getattr(server, "servers", None) or ():
            for sock in srv.sockets:
                return sock.getsockname()[1]
        await asyncio.sleep(0.05)


async def _announce_ready(
    server, settings, models: list[str], failed=lambda: None, on_ready=lambda: None
) -> None:
    """Print the banner and "ready" only once the gateway answers ready (start-up succeeded),
    with the port it really listens on. If ``failed()`` names a failure first, that is the
    gateway's end: ``server.failure`` holds it and the server stops."""
    import aiohttp

    if settings.port == 0:
        settings = settings.model_copy(update={"port": await _bound_port(server)})
    url = f"http://{settings.host}:{settings.port}"
    said_waiting = asyncio.get_running_loop().time() + NOT_READY_NOTICE_S
    async with aiohttp.ClientSession() as session:
        while True:
            await asyncio.sleep(0.25)
            if said_waiting and asyncio.get_running_loop().time() >= said_waiting:
                said_waiting = 0.0  # once: a remote fleet may come up later; the server waits
                print(f"listening: {url} (not ready yet: {_waiting_for(settings)})", flush=True)
            try:
                async with session.get(url + "/v2/health/ready") as resp:
                    if resp.status == 200:
                        print(_banner(_with_grpc_port(settings, server), models), flush=True)
                        print(f"ready: {url}", flush=True)
                        on_ready()
                        return
            except aiohttp.ClientError:
                pass
            message = failed()
            if message:
                server.failure = message
                server.should_exit = True
                return


# An idle client connection stays open this long. uvicorn's 5 s is shorter than clients keep
# theirs (aiohttp 15 s, load balancers 60 s): a client that reuses one as the server closes it
# loses the request unanswered. tidegate loadgen, ResNet-18 overloaded (speedup 10, 1 replica,
# 2026-12-01, load 3-16): 34-63 of 600 "connection lost" at 5 s, 179 idle closes in one run;
# none at 60 s. Past the LB's 60 s, as its docs ask of a backend; slowloris heads still get
# 408 (vmpool/http_protocol.py).
KEEP_ALIVE_S = 75
NOT_READY_NOTICE_S = 15.0  # a start slower than this says what it waits for


def _waiting_for(settings) -> str:
    if settings.vm.provisioner == "static":
        return f"no VM replica answers at {', '.join(settings.vm.urls)}"
    return f"no {settings.vm.provisioner} VM replica has become ready"


def _server_class():
    import contextlib
    import signal

    import uvicorn

    class GatewayServer(uvicorn.Server):
        """SIGINT/SIGTERM: stop accepting, finish in-flight requests, close the pool, exit 0.

        (uvicorn's own handlers re-raise the signal after shutdown, which turns a clean stop into
        exit status 130 / -15.)"""

        failure: str | None = None  # why start-up failed after the server began listening

        @contextlib.contextmanager
        def capture_signals(self):
            def handle(sig, frame):
                if self.should_exit:
                    self.force_exit = True
                self.should_exit = True

            previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)

        async def shutdown(self, sockets=None):
            # gRPC refuses new calls from the start of HTTP's drain (gateway.lifespan.drain)
            from gateway.lifespan import drain

            grpc_drain = asyncio.ensure_future(drain(self.config.app.state.gateway))
            try:
                await super().shutdown(sockets)
            finally:
                await grpc_drain

    return GatewayServer


def _replica_failure(settings, server, since: float) -> str | None:
    """A local model server that exited with a user error (its last log line is the one-line
    error) before any replica was ready: what to say instead of retrying it for ever."""
    state = getattr(server.config.app.state, "gateway", None)
    pool = getattr(state, "pool", None)
    if settings.vm.provisioner != "local" or pool is None or pool.ready():
        return None
    if not getattr(pool.provisioner, "boot_failures", 0):
        return None
    prefix = "tidegate model-server: error: "
    for log_path in (settings.data_dir / "logs").glob("*.log"):
        if log_path.stat().st_mtime < since:
            continue  # a previous run's
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line]
        if lines and lines[-1].startswith(prefix):
            return f"a model server cannot start: {lines[-1][len(prefix) :]} (log: {log_path})"
    return None


class _HoldBootWarnings(logging.Filter):
    """Replica boot warnings before the gateway is ready are held back: a start that fails
    prints its one line (naming the replica's log) instead; otherwise they are let through."""

    LOGGERS = ("tidegate.provisioner", "tidegate.pool")

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []
        self.holding = True

    def filter(self, record: logging.LogRecord) -> bool:
        if self.holding and record.name in self.LOGGERS:
            self.held.append(record)
            return False
        return True

    def release(self, keep: bool = True) -> None:
        self.holding = False
        for record in self.held if keep else ():
            logging.getLogger(record.name).handle(record)
        self.held.clear()


class _Failed(Exception):
    """Start-up failed: its message is the one line to print."""


def run(args) -> int:
    # size: the start-up sequence in order (checks, app, server, loop, the exit paths)
    import time

    import uvicorn

    from ops.process_tuning import tune_allocator, tune_gc

    from . import serve_checks as checks

    since = time.time()
    tune_allocator(arena_max=1)  # (one heap that malloc_trim can give back: process_tuning)
    settings = checks.load_settings(args)
    settings = checks.check_ports(settings)
    checks.prepare_data_dir(settings)
    models = checks.ensure_models(settings)
    # after the checks: a mistake is one line at once, not after seconds of importing torch
    from gateway.app import create_app
    from gateway.fast_lane import FastLaneProtocol

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    from gateway.access_log import log_to_stream

    log_to_stream(settings.access_log)  # access lines whatever --log-level says
    held = _HoldBootWarnings()
    for handler in logging.getLogger().handlers:
        handler.addFilter(held)
    print(f"starting: {len(models)} model(s), {settings.vm.replicas} VM replica(s) ...", flush=True)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=FastLaneProtocol,  # httptools; infer POSTs answered without the ASGI cycle
        access_log=False,
        log_level=args.log_level,
        timeout_graceful_shutdown=settings.drain_timeout_s,  # (gRPC's: lifespan.drain)
        timeout_keep_alive=KEEP_ALIVE_S,
        lifespan="off",  # started below: a start-up error is one line, not uvicorn's traceback
    )
    server = _server_class()(config)

    async def main() -> None:
        tune_gc()
        loop = asyncio.get_running_loop()
        # SIGTERM while starting: stop what started (the server handles it from then on)
        loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        try:
            async with app.router.lifespan_context(app):  # start-up, and shutdown on the way out
                loop.remove_signal_handler(signal.SIGTERM)
                ready = asyncio.create_task(
                    _announce_ready(
                        server,
                        settings,
                        models,
                        failed=lambda: _replica_failure(settings, server, since),
                        on_ready=held.release,
                    )
                )
                try:
                    await server.serve()
                finally:
                    ready.cancel()
        except Exception as exc:
            if server.started:
                raise
            log.debug("start-up failed", exc_info=True)
            raise _Failed(_one_line(exc)) from None

    import uvloop

    from vmpool.procs import kill_spawned

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    except _Failed as exc:
        raise CliError(f"the gateway did not start: {exc}") from None
    except asyncio.CancelledError:  # SIGTERM before start-up finished
        print("stopped: before start-up finished", flush=True)
        return 0
    except OSError as exc:
        raise CliError(str(exc)) from None
    finally:  # whatever ended the loop, no replica or function runtime outlives the gateway
        kill_spawned()
    held.release(keep=not server.failure)
    if server.failure:
        raise CliError(f"the gateway did not start: {server.failure}")
    if server.started:
        print("stopped: in-flight requests answered, replicas and functions shut down", flush=True)
        return 0
    raise CliError(f"the gateway did not start (see the log above; data: {settings.data_dir})")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
