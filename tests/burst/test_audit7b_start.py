"""Burst requests at once on a gateway that has just started (issue 7's found bug, generalised;
audit s13): different models and ``X-Tidegate-Workers`` 1..8 at the same instant while the
background preparation of the default plans runs, and again while ``model.pt2`` is exported
anew (the plan cache follows the file). No 500s, and every answer equals the VM path's."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.burst.test_audit7b_store import split_paying_profile
from tests.gateway.conftest import running_model_server, serve_app
from vmpool.codec import decode_response, encode_request
from vmpool.export import export_zoo

pytestmark = pytest.mark.slow

SHAPES = {"resnet18": (1, 3, 64, 64), "mlp": (1, 784)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("a7b-start")
    export_zoo("resnet18", root, size=(64, 64), max_batch_size=4)
    export_zoo("mlp", root)
    # splits pay: each worker count asked is a plan of its own to make and prepare
    (root / "resnet18" / "profile.json").write_text(json.dumps(split_paying_profile()))
    return root


@pytest.fixture(scope="module")
def vm(repo, tmp_path_factory):
    with running_model_server(repo, tmp_path_factory.mktemp("a7b-start-ms") / "ms.log") as url:
        yield url


def _post(url: str, model: str, x: np.ndarray, headers: dict):
    body, header_length = encode_request({"input": x})
    resp = httpx.post(
        f"{url}/v2/models/{model}/infer",
        content=body,
        timeout=300,
        headers={"Inference-Header-Content-Length": str(header_length), **headers},
    )
    if resp.status_code != 200:
        return resp.status_code, resp.text
    length = int(resp.headers["inference-header-content-length"])
    return 200, decode_response(resp.content, length).outputs["output"]


def _at_once(url: str, cases: list[tuple[str, int, np.ndarray]], during=None):
    """Every case ``(model, workers, x)`` sent on the burst route at the same instant (and
    ``during()`` with them); their (status, output) in order."""
    barrier = threading.Barrier(len(cases) + (during is not None))

    def send(case):
        model, workers, x = case
        barrier.wait()
        return _post(
            url, model, x, {"X-Tidegate-Route": "burst", "X-Tidegate-Workers": str(workers)}
        )

    def run_during():
        barrier.wait()
        during()

    with ThreadPoolExecutor(len(cases) + 1) as pool:
        side = pool.submit(run_during) if during is not None else None
        answers = list(pool.map(send, cases))
        if side is not None:
            side.result()
    return answers


def _cases(seed: int) -> list[tuple[str, int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (model, workers, rng.standard_normal(SHAPES[model]).astype(np.float32))
        for workers in range(1, 9)
        for model in ("resnet18", "mlp")
    ]


def _check(url: str, cases, answers) -> None:
    for (model, workers, x), (status, got) in zip(cases, answers):
        assert status == 200, (model, workers, got)
        _, expected = _post(url, model, x, {"X-Tidegate-Route": "vm"})
        assert got.shape == expected.shape, (model, workers)
        assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


def test_burst_requests_at_once_on_a_fresh_gateway_and_while_a_model_is_exported(
    repo, vm, tmp_path
):
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [vm]},
        burst={
            "enabled": True,
            "memory_mb": 512,
            "concurrency": 16,
            "default_workers": 4,  # prepared in the background from the start
            "max_workers": 8,
        },
    )
    with serve_app(create_app(settings)) as url:
        cases = _cases(1)
        _check(url, cases, _at_once(url, cases))
        # the same weights exported again: a new model.pt2 (new plans), the same answers
        cases = _cases(2)
        again = _at_once(
            url, cases, lambda: export_zoo("resnet18", repo, size=(64, 64), max_batch_size=4)
        )
        _check(url, cases, again)
