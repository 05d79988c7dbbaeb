"""Changes to the model repository while a gateway serves (session 21's concurrency audit).

A real gateway on its local provisioner (model servers as child processes), real clients.
"""

from __future__ import annotations

import asyncio
import os
import signal
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.vmpool.test_artifact_verify import _flip_a_weight_byte
from vmpool.export import export_zoo

from .conftest import gateway_on, running_model_server, serve_app

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
    others = _model_servers()  # (a session's model server, in the same test process)
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

        (old,) = _model_servers() - others
        os.kill(old, signal.SIGKILL)
        _until(lambda: c.post("/v2/models/mlp/infer", json=MLP).status_code == 200, what="mlp")
        assert _model_servers() - others - {old}, "no replacement replica"
        index = {e["name"]: e["state"] for e in c.post("/v2/repository/index").json()}
        assert index == {"mlp": "READY", "broken": "UNAVAILABLE"}


async def _concurrent_infers(url: str, model: str, n: int, width: int) -> list[tuple[int, str]]:
    import aiohttp

    body = {"inputs": [{"name": "input", "shape": [1, width], "datatype": "FP32",
                        "data": [0.5] * width}]}  # fmt: skip

    async with aiohttp.ClientSession() as s:

        async def one():
            async with s.post(f"{url}/v2/models/{model}/infer", json=body) as r:
                return r.status, await r.text()

        return await asyncio.gather(*(one() for _ in range(n)))


def _replica_calls(replica: str, code: str) -> float:
    """Infer calls of the delay model the replica answered with ``code`` (its own metrics)."""
    prefix = f'tidegate_model_requests_total{{code="{code}",model="delay"}} '
    lines = httpx.get(f"{replica}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))


@pytest.mark.parametrize("served_at_start", [True, False])
def test_a_model_loaded_while_serving_has_its_requests_merged_to_its_max_batch(
    tmp_path, served_at_start
):
    """The delay model (500 ms a batch), served from start or loaded later, then re-exported
    with max batch 2 and loaded again while the gateway serves. The gateway merges concurrent
    requests into calls of at most the model's max batch (vm.coalesce). Before: a model loaded
    after start was never merged (16 requests, 16 calls), and a reload kept the old limit (8),
    so merged calls were refused by the replica (400 'exceeds max_batch_size 2') and sent
    again one by one."""
    repo = tmp_path / "models"
    export_zoo("delay", repo, options={"delay_ms": 500.0, "per_item_ms": 0.0})
    if not served_at_start:
        shutil.move(repo / "delay", tmp_path / "delay")
        export_zoo("mlp", repo)
    with running_model_server(repo, tmp_path / "ms.log") as replica:
        with gateway_on(replica, repo, tmp_path / "data") as (url, _):
            if not served_at_start:
                shutil.move(tmp_path / "delay", repo / "delay")
                assert httpx.post(f"{url}/v2/repository/models/delay/load").status_code == 200
            answers = asyncio.run(_concurrent_infers(url, "delay", 16, 16))
            assert {s for s, _ in answers} == {200}, answers[:3]
            assert _replica_calls(replica, "200") < 16  # merged
            export_zoo("delay", repo, max_batch_size=2, options={"delay_ms": 500.0})
            r = httpx.post(f"{url}/v2/repository/models/delay/load")
            assert r.status_code == 200, r.text
            meta = httpx.get(f"{url}/v2/models/delay").json()
            assert meta["parameters"]["max_batch_size"] == 2
            answers = asyncio.run(_concurrent_infers(url, "delay", 16, 16))
            assert [a for a in answers if a[0] != 200] == []
            assert _replica_calls(replica, "400") == 0


def test_loading_broken_models_while_another_serves_says_what_is_wrong(tmp_path):
    """Models put in the repository broken, loaded while mlp serves: a config that does not
    parse or a program that is not one is a 400 naming the fault (a config that did not parse
    was a 404, as if the model were not there), a model with a file missing a 404; none is
    served, and mlp answers throughout. The damaged program was in the repository when the
    gateway started: it was served (READY, routed to replicas that could not load it)."""
    repo = tmp_path / "models"
    export_zoo("mlp", repo)
    mlp_config = (repo / "mlp" / "config.toml").read_text()
    for name in ("badcfg", "nocfg", "garbage"):
        (repo / name).mkdir()
    shutil.copy(repo / "mlp" / "model.pt2", repo / "badcfg")
    (repo / "badcfg" / "config.toml").write_text('name = "badcfg"\nthis is not toml [\n')
    shutil.copy(repo / "mlp" / "model.pt2", repo / "nocfg")
    (repo / "garbage" / "config.toml").write_text(mlp_config.replace('"mlp"', '"garbage"', 1))
    (repo / "garbage" / "model.pt2").write_bytes(os.urandom(5000))
    with running_model_server(repo, tmp_path / "ms.log", "mlp") as replica:
        with gateway_on(replica, repo, tmp_path / "data") as (url, _):
            with httpx.Client(base_url=url, timeout=60) as c:
                expected = {"badcfg": (400, "config.toml"), "nocfg": (404, "not found"),
                            "garbage": (400, "damaged")}  # fmt: skip
                for name, (status, says) in expected.items():
                    r = c.post(f"/v2/repository/models/{name}/load")
                    assert (r.status_code, says in r.json()["error"]) == (status, True), r.text
                    assert str(repo) not in r.text
                    assert c.post("/v2/models/mlp/infer", json=MLP).status_code == 200
                index = {e["name"]: e["state"] for e in c.post("/v2/repository/index").json()}
                assert index == {
                    "mlp": "READY", "badcfg": "UNAVAILABLE", "garbage": "UNAVAILABLE",
                }  # fmt: skip
