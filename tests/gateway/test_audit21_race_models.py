"""Changes to the model repository while a gateway serves (session 21's concurrency audit).

A real gateway on its local provisioner (model servers as child processes), real clients.
"""

from __future__ import annotations

import os
import signal
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.vmpool.test_artifact_verify import _flip_a_weight_byte
from vmpool.export import export_zoo

from .conftest import serve_app

MLP = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.5] * 784}]}


def _model_servers() -> set[int]:
    """The pids of this process's model-server children."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and b"model-server" in cmd and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


def _until(check, timeout_s: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_damaged_model_in_the_repository_does_not_take_the_vm_pool_down(tmp_path):
    """A damaged model put in the repository (a weight byte flipped) while mlp serves: loading
    it is refused (400, not 503 and the repository's path), mlp serves on, and a replica that dies is replaced by one that serves mlp.
    Before, every replacement replica exited at boot on the damaged model ('model broken: ...
    is damaged'), the pool retried with backoff for ever and mlp was 503 until someone removed
    the model from the repository."""
    from gateway.app import create_app
    from gateway.settings import Settings

    repo = tmp_path / "models"
    export_zoo("mlp", repo)
    settings = Settings.load(
        None,
        data_dir=tmp_path / "data",
        repo=repo,
        grpc_port=-1,
        burst={"enabled": False},
        vm={"threads": 1, "health_interval_s": 0.2},
    )
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        _until(lambda: c.get("/v2/health/ready").status_code == 200, what="ready")
        assert c.post("/v2/models/mlp/infer", json=MLP).status_code == 200
        shutil.copytree(repo / "mlp", repo / "broken")
        config = repo / "broken" / "config.toml"
        config.write_text(config.read_text().replace('name = "mlp"', 'name = "broken"', 1))
        _flip_a_weight_byte(repo / "broken" / "model.pt2")

        r = c.post("/v2/repository/models/broken/load")
        # the model's fault, not the replicas': 400, not a 503 to retry; the repository's
        # place on disk is not the caller's to know
        assert r.status_code == 400 and "is damaged" in r.json()["error"], r.text
        assert str(repo) not in r.text
        assert c.post("/v2/models/mlp/infer", json=MLP).status_code == 200

        (old,) = _model_servers()
        os.kill(old, signal.SIGKILL)
        _until(lambda: c.post("/v2/models/mlp/infer", json=MLP).status_code == 200, what="mlp")
        assert _model_servers() - {old}, "no replacement replica"
        index = {e["name"]: e["state"] for e in c.post("/v2/repository/index").json()}
        assert index == {"mlp": "READY", "broken": "UNAVAILABLE"}
