"""Real processes on loopback: a model repository, a model server, gateways built by create_app."""

from __future__ import annotations

import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch
import uvicorn

from vmpool.codec import decode_response, encode_request
from vmpool.export import export_zoo
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures
from tests.support.model_server import spawn_model_server
from tests.support.redis import redis_server, redis_url  # noqa: F401 - fixtures
from vmpool.procs import free_port, wait_healthy_sync

ROOT = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)


__all__ = ["free_port", "post_routed", "running_model_server", "serve_app", "wait_ready"]


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 120.0) -> None:
    wait_healthy_sync(proc, url, timeout_s=timeout_s)


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory) -> Path:
    """resnet18 at 64x64 (fast on 2 cores, same graph as 224) and the mlp."""
    repo = tmp_path_factory.mktemp("gw-repo")
    export_zoo("resnet18", repo, size=(64, 64), max_batch_size=4)
    export_zoo("mlp", repo)
    return repo


@contextmanager
def running_model_server(repo: Path, log_path: Path, *models: str):
    """A real model server process serving ``repo`` (only ``models``, if named), one thread;
    yields its base URL once it is ready, and stops it after. It listens on port 0 (the
    kernel's pick at bind; a port found free earlier may be taken by then) and says which."""
    proc, url = spawn_model_server(repo, log_path, models=models)
    try:
        wait_ready(url + "/v2/health/ready", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="session")
def model_server(small_repo, tmp_path_factory):
    """One real model server process serving ``small_repo``; yields its base URL."""
    with running_model_server(small_repo, tmp_path_factory.mktemp("ms-log") / "ms.log") as url:
        yield url


def send_routed(
    url: str, x, route: str, workers: int = 2, model: str = "resnet18"
) -> httpx.Response:
    """One binary-tensor infer POST of ``x`` as "input", sent down ``route`` ("vm" or "burst")
    with at most ``workers`` functions: the response as it came."""
    body, header_length = encode_request({"input": x})
    return httpx.post(
        f"{url}/v2/models/{model}/infer",
        content=body,
        timeout=300,
        headers={
            "Inference-Header-Content-Length": str(header_length),
            "X-Tidegate-Route": route,
            "X-Tidegate-Workers": str(workers),
        },
    )


def post_routed(url: str, x, route: str, workers: int = 2, model: str = "resnet18"):
    """``send_routed``, asserting it answered 200 on that path: the "output" tensor."""
    resp = send_routed(url, x, route, workers, model)
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-tidegate-path"] == route
    header_length = int(resp.headers["inference-header-content-length"])
    return decode_response(resp.content, header_length).outputs["output"]


@contextmanager
def serve_app(app, protocol=None):
    """Run an ASGI app with uvicorn (httptools, and the gateway's fast lane for infer POSTs when
    the app has one, or ``protocol``) on a free loopback port in a thread; yield its base URL."""
    from gateway.fast_lane import FastLaneProtocol  # as `tidegate serve` runs the gateway

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,  # the kernel's pick at bind: a port found free earlier may be taken by then
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=protocol or FastLaneProtocol,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def gateway_before_replica(repo: Path, root: Path):
    """A model server for ``repo`` and a gateway in front of it, with HTTP and gRPC on free
    ports (as the real clients reach it): yields (HTTP base URL, gRPC target)."""
    with running_model_server(repo, root / "ms.log") as replica:
        with gateway_on(replica, repo, root / "data") as urls:
            yield urls


@contextmanager
def gateway_on(replica: str, repo: Path, data_dir: Path):
    """A gateway (VM path only) in front of the model server at ``replica``, with HTTP and gRPC
    on free ports: yields (HTTP base URL, gRPC target)."""
    from gateway.app import create_app
    from gateway.settings import Settings

    settings = Settings.load(
        None,
        data_dir=data_dir,
        repo=repo,
        grpc_port=0,
        vm={"provisioner": "static", "urls": [replica]},
        burst={"enabled": False},
    )
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, f"127.0.0.1:{app.state.gateway.grpc.port}"
