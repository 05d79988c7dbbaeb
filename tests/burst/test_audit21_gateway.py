"""Session 21's models end to end, as a user runs them: saved with ``torch.export.save``,
``tidegate export``-ed, served by a gateway with a local VM replica and the local function
runtime, and asked on the VM path and the burst path at 1, 2 and 4 workers, batch 1 and 3: the
burst answer is the VM answer and eager torch's. A batch over the model's max and a token id
past the vocabulary are 400s on both paths; a text encoder with a dynamic sequence length is
served by the VM path, concurrent requests of different lengths included, and refused by name
on the burst path.

Before 45fc969, concurrent requests of different lengths were batched together and failed
(503: "all the input array dimensions except for the concatenation axis must match exactly"): 4 of
18 here on a VM-only gateway; with the burst path on, this test's requests did not meet in a batch.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import audit21_models as am  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from ops.cli import main as cli  # noqa: E402
from tests.gateway.conftest import serve_app, wait_ready  # noqa: E402

pytestmark = pytest.mark.slow
torch.set_num_threads(1)

CASES = ["vit", "vitmatmul", "textmask", "torchenc", "detector", "patchmha", "unet", "lstm"]
DT = {torch.float32: "FP32", torch.int64: "INT64"}


def _repo(tmp_path: Path) -> tuple[Path, dict]:
    repo, modules = tmp_path / "models", {}
    for art in [*CASES, "textdyn"]:
        name = "textmask" if art == "textdyn" else art
        modules[art] = am.build(name)
        program = am.export(modules[art], am.example(name), seq=art == "textdyn")
        path = tmp_path / f"{art}.pt2"
        torch.export.save(program, str(path))
        assert cli(["export", str(path), "--name", art, "--out", str(repo)]) == 0
    return repo, modules


def _body(meta: dict, xs: list[torch.Tensor]) -> dict:
    return {
        "inputs": [
            {
                "name": spec["name"],
                "shape": list(x.shape),
                "datatype": DT[x.dtype],
                "data": x.flatten().tolist(),
            }
            for spec, x in zip(meta["inputs"], xs)
        ]
    }


def _arrays(response: httpx.Response) -> list[np.ndarray]:
    outs = response.json()["outputs"]
    return [np.array(o["data"], dtype=np.float64).reshape(o["shape"]) for o in outs]


def _close(got: list[np.ndarray], want: list[np.ndarray], what) -> None:
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        assert g.shape == w.shape and np.allclose(g, w, rtol=1e-4, atol=1e-5), what


def _ask(c: httpx.Client, art: str, meta: dict, xs, modules) -> None:
    with torch.no_grad():
        want = [w.double().numpy() for w in torch.utils._pytree.tree_leaves(modules[art](*xs))]
    r = c.post(f"/v2/models/{art}/infer", json=_body(meta, xs), headers={"X-Tidegate-Route": "vm"})
    assert r.status_code == 200 and r.headers["x-tidegate-path"] == "vm", (art, r.text)
    vm = _arrays(r)
    _close(vm, want, art)
    for workers in (1, 2, 4):
        headers = {"X-Tidegate-Route": "burst", "X-Tidegate-Workers": str(workers)}
        r = c.post(f"/v2/models/{art}/infer", json=_body(meta, xs), headers=headers)
        assert r.status_code == 200 and r.headers["x-tidegate-path"] == "burst", (art, r.text)
        _close(_arrays(r), vm, (art, workers))


def _lengths(url: str, meta: dict, module) -> None:
    """Rounds of six concurrent requests (a client each) of lengths 5, 12, 20, 12, 33, 5 to the
    dynamic-length model (before the fix, 2-4 of each round failed)."""
    lengths = [5, 12, 20, 12, 33, 5]

    def ask(xs):
        with httpx.Client(base_url=url, timeout=120) as c:
            return c.post("/v2/models/textdyn/infer", json=_body(meta, xs))

    with ThreadPoolExecutor(len(lengths)) as pool:
        for round_ in range(3):
            xss = [
                am.example("textmask", 1, round_ * 10 + i, [(n,), (n,)])
                for i, n in enumerate(lengths)
            ]
            for xs, r in zip(xss, pool.map(ask, xss)):
                assert r.status_code == 200, r.text
                with torch.no_grad():
                    _close(_arrays(r), [module(*xs).double().numpy()], xs[0].shape)


def test_new_model_families_answer_alike_on_both_paths(tmp_path):
    repo, modules = _repo(tmp_path)
    settings = Settings.load(
        None,
        data_dir=tmp_path / "data",
        repo=repo,
        grpc_port=-1,
        vm={"replicas": 1, "threads": 1},
        burst={"enabled": True, "max_workers": 4, "concurrency": 8},
    )
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=300) as c:
        wait_ready(url + "/v2/health/ready", timeout_s=240)
        for art in CASES:
            meta = c.get(f"/v2/models/{art}").json()
            for batch in (1, 3):
                _ask(c, art, meta, am.example(art, batch=batch, seed=17 + batch), modules)
        meta = c.get("/v2/models/vit").json()
        for route in ("vm", "burst"):
            r = c.post(
                "/v2/models/vit/infer",
                json=_body(meta, am.example("vit", batch=9)),
                headers={"X-Tidegate-Route": route},
            )
            assert r.status_code == 400 and "exceeds max_batch_size 8" in r.json()["error"]
        meta = c.get("/v2/models/textmask").json()
        ids, mask = am.example("textmask", batch=1)
        ids[0, 2] = am.VOCAB  # past the embedding table: a 400 on both paths, before any function
        for route in ("vm", "burst"):
            r = c.post(
                "/v2/models/textmask/infer",
                json=_body(meta, [ids, mask]),
                headers={"X-Tidegate-Route": route},
            )
            assert r.status_code == 400 and "value 50 is outside 0..49" in r.json()["error"], r.text
        meta = c.get("/v2/models/textdyn").json()
        r = c.post(
            "/v2/models/textdyn/infer",
            json=_body(meta, am.example("textmask", batch=2)),
            headers={"X-Tidegate-Route": "burst", "X-Tidegate-Workers": "2"},
        )
        assert r.status_code == 400 and "dynamic dimension 1" in r.json()["error"], r.text
    # on a VM-only gateway (the burst path's preparation aside) concurrent lengths meet in a batch
    settings = Settings.load(
        None,
        data_dir=tmp_path / "data-vm",
        repo=repo,
        grpc_port=-1,
        vm={"replicas": 1, "threads": 1},
        burst={"enabled": False},
    )
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=300) as c:
        wait_ready(url + "/v2/health/ready", timeout_s=240)
        _lengths(url, meta, modules["textdyn"])
