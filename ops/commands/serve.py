"""``tidegate serve``: the gateway on embedded defaults (local VM pool, local functions)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pydantic import ValidationError

from ops.cli import CliError

HELP = "Run the gateway: Open Inference Protocol v2 over HTTP, VM pool plus burst functions."


def add_arguments(p) -> None:
    p.add_argument("--config", type=Path, help="TOML settings file (see README: Configuration)")
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
        help="gRPC (Open Inference Protocol) port (default 8001; 0 = a free port; -1 = no gRPC)",
    )
    p.add_argument("--replicas", type=int, help="VM replicas to keep (default 1)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])


def _settings(args):
    from gateway.settings import Settings, UnknownSetting, describe_error

    overrides = {
        "host": args.host,
        "port": args.port,
        "grpc_port": args.grpc_port,
        "data_dir": args.data_dir,
        "repo": args.repo,
    }
    if args.replicas is not None:  # validated with the rest, not patched in afterwards
        overrides["vm"] = {"replicas": args.replicas}
    try:
        return Settings.load(args.config, **overrides)
    except FileNotFoundError:
        raise CliError(f"config file not found: {args.config}") from None
    except (ValidationError, UnknownSetting) as exc:
        raise CliError(describe_error(exc)) from None
    except Exception as exc:  # TOML syntax errors and the like
        raise CliError(f"cannot read settings {args.config}: {exc}") from None


def _prepare_data_dir(settings) -> None:
    """Create the data directory, or say in one line why it cannot be used."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CliError(
            f"cannot use data directory {settings.data_dir}: {exc.strerror or exc}"
        ) from None
    if settings.ledger.kind != "postgresql":
        from gateway.ledger.journal import holder

        database = Path(settings.ledger.target(settings.data_dir))
        pid = holder(database)
        if pid is not None:
            raise CliError(
                f"ledger {database} is in use by another gateway (pid {pid}): "
                "give each gateway its own --data-dir"
            )


def _ensure_models(settings) -> list[str]:
    from vmpool.artifact import list_models

    repo = settings.repo_path
    models = list_models(repo)
    if models:
        return models
    if settings.repo is not None:
        raise CliError(
            f"no models in repository {repo} (export one: tidegate export resnet18 --out {repo})"
        )
    if not settings.demo_model:
        raise CliError(f"no models in {repo} and no demo model configured")
    from vmpool.export import export_zoo

    print(f"first run: exporting demo model {settings.demo_model} into {repo} ...", flush=True)
    export_zoo(settings.demo_model, repo)
    return list_models(repo)


def _banner(settings, models: list[str]) -> str:
    from vmpool.artifact import load_artifact

    url = f"http://{settings.host}:{settings.port}"
    cfg = load_artifact(settings.repo_path, models[0]).config
    spec = cfg.inputs[0]
    shape = [1 if d < 0 else d for d in spec.shape]
    count = 1
    for d in shape:
        count *= d
    return "\n".join(
        [
            f"Tidegate gateway on {url}  (models: {', '.join(models)}; data: {settings.data_dir})",
            f"  VM replicas: {settings.vm.replicas}; burst path: "
            f"{'on (' + settings.burst.platform.kind + ')' if settings.burst.enabled else 'off'}",
            "  Try:",
            f"    curl -s {url}/v2/models/{cfg.name}",
            f"    python -c \"import json,sys,urllib.request as u; b=json.dumps({{'inputs':[{{'name':"
            f"'{spec.name}','shape':{shape},'datatype':'{spec.datatype}','data':[0.5]*{count}}}]}}).encode(); "
            f"r=json.load(u.urlopen(u.Request('{url}/v2/models/{cfg.name}/infer',b))); "
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


async def _announce_ready(server, settings, models: list[str]) -> None:
    """Print the banner and "ready" only once the gateway answers ready (start-up succeeded),
    with the port it really listens on."""
    import aiohttp

    if settings.port == 0:
        settings = settings.model_copy(update={"port": await _bound_port(server)})
    url = f"http://{settings.host}:{settings.port}"
    async with aiohttp.ClientSession() as session:
        while True:
            await asyncio.sleep(0.25)
            try:
                async with session.get(url + "/v2/health/ready") as resp:
                    if resp.status == 200:
                        print(_banner(_with_grpc_port(settings, server), models), flush=True)
                        print(f"ready: {url}", flush=True)
                        return
            except aiohttp.ClientError:
                pass


def _check_port_free(host: str, port: int) -> None:
    """Fail in one line before exporting models or booting replicas for nothing."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _server_class():
    import contextlib
    import signal

    import uvicorn

    class GatewayServer(uvicorn.Server):
        """SIGINT/SIGTERM: stop accepting, finish in-flight requests, close the pool, exit 0.

        (uvicorn's own handlers re-raise the signal after shutdown, which turns a clean stop into
        exit status 130 / -15.)"""

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

    return GatewayServer


def run(args) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.fast_lane import FastLaneProtocol

    from ops.process_tuning import tune_allocator, tune_gc

    tune_allocator()
    _GatewayServer = _server_class()
    settings = _settings(args)
    _check_port_free(settings.host, settings.port)
    if settings.grpc_port > 0 and "grpc_port" in settings.model_fields_set:
        # asked for explicitly: a busy port is an error; the default 8001 when busy is logged
        # and HTTP serves alone (another local server often holds Triton's port)
        _check_port_free(settings.host, settings.grpc_port)
    _prepare_data_dir(settings)
    models = _ensure_models(settings)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
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
        timeout_graceful_shutdown=30,
    )
    server = _GatewayServer(config)

    async def main() -> None:
        tune_gc()
        ready = asyncio.create_task(_announce_ready(server, settings, models))
        try:
            await server.serve()
        finally:
            ready.cancel()

    import uvloop

    from vmpool.procs import kill_spawned

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    except OSError as exc:
        raise CliError(str(exc)) from None
    finally:  # whatever ended the loop, no replica or function runtime outlives the gateway
        kill_spawned()
    if server.started:
        print("stopped: in-flight requests answered, replicas and functions shut down", flush=True)
        return 0
    raise CliError(f"the gateway did not start (see the log above; data: {settings.data_dir})")
