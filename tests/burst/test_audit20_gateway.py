"""Session 20's models end to end, as a user runs them: saved with ``torch.export.save``,
``tidegate export``-ed, served by a gateway with a local VM replica and the local function
runtime, and asked on the VM path and the burst path at 1, 2 and 4 workers: the burst answer is
the VM answer, under the model's own output names.

Before: a dict-output model's every VM answer was a 500 (and its outputs were named
``output__0``/``output__1``); a wide model with a positional embedding failed every burst request
in the spatial split its plan chose.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import audit20_models as am  # noqa: E402
from perfgen_slow_profile import write_slow_profile  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from ops.cli import main as cli  # noqa: E402
from tests.gateway.conftest import serve_app, wait_ready  # noqa: E402

pytestmark = pytest.mark.slow
torch.set_num_threads(1)

WIDE = [(3, 97, 131)]
# artifact -> (model, width, one sample's input shapes, must the 4-worker plan split?)
CASES = {
    "dictout": ("dictout", {}, None, False),
    "half": ("half", {}, None, False),
    "posembed": ("posembed", {"c": 48, "hw": (97, 131)}, WIDE, True),
    "hugemlp": ("hugemlp", {}, None, True),
}
DT = {torch.float32: "FP32", torch.float16: "FP16", torch.int64: "INT64"}


def _repo(tmp_path: Path) -> tuple[Path, dict]:
    repo, modules = tmp_path / "models", {}
    for art, (name, width, shapes, _) in CASES.items():
        modules[art] = am.build(name, **width)
        path = tmp_path / f"{art}.pt2"
        torch.export.save(am.export(modules[art], am.example(name, shapes=shapes)), str(path))
        assert cli(["export", str(path), "--name", art, "--out", str(repo)]) == 0
    torch.manual_seed(0)
    modules["branches"] = am.Branches().eval()
    x = torch.randn(2, 3, 8, 8)
    program = am.export(modules["branches"], [x])
    torch.export.save(program, str(tmp_path / "branches.pt2"))
    assert (
        cli(["export", str(tmp_path / "branches.pt2"), "--name", "branches", "--out", str(repo)])
        == 0
    )
    write_slow_profile(repo, "hugemlp")  # split it: a test of what a split answers
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


def _arrays(response: httpx.Response) -> dict[str, np.ndarray]:
    return {
        o["name"]: np.array(o["data"], dtype=np.float64).reshape(o["shape"])
        for o in response.json()["outputs"]
    }


def test_users_models_answer_alike_on_both_paths_at_any_worker_count(tmp_path):
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
        assert [o["name"] for o in c.get("/v2/models/dictout").json()["outputs"]] == [
            "mask",
            "logits",
        ]
        for art, (name, _, shapes, splits) in CASES.items():
            meta = c.get(f"/v2/models/{art}").json()
            xs = am.example(name, batch=2, seed=17, shapes=shapes)
            with torch.no_grad():
                want = [
                    w.double().numpy() for w in torch.utils._pytree.tree_leaves(modules[art](*xs))
                ]
            r = c.post(
                f"/v2/models/{art}/infer", json=_body(meta, xs), headers={"X-Tidegate-Route": "vm"}
            )
            assert r.status_code == 200 and r.headers["x-tidegate-path"] == "vm", (art, r.text)
            vm = _arrays(r)
            assert list(vm) == [o["name"] for o in meta["outputs"]]
            for got, w in zip(vm.values(), want, strict=True):
                assert np.allclose(got, w, rtol=1e-4, atol=1e-5), art
            for workers in (1, 2, 4):
                headers = {"X-Tidegate-Route": "burst", "X-Tidegate-Workers": str(workers)}
                r = c.post(f"/v2/models/{art}/infer", json=_body(meta, xs), headers=headers)
                assert r.status_code == 200 and r.headers["x-tidegate-path"] == "burst", (
                    art,
                    workers,
                    r.text,
                )
                burst = _arrays(r)
                assert list(burst) == list(vm), (art, workers)
                for name_out, got in burst.items():
                    assert np.allclose(got, vm[name_out], rtol=1e-4, atol=1e-5), (art, workers)
                if workers == 4 and splits:  # really split, not the whole model in one function
                    assert int(r.headers["x-tidegate-workers"]) >= 2, art
        # control flow: the VM path answers, the burst path says why not, by name
        x = torch.randn(1, 3, 8, 8)
        meta = c.get("/v2/models/branches").json()
        r = c.post("/v2/models/branches/infer", json=_body(meta, [x]))
        assert r.status_code == 200 and r.headers["x-tidegate-path"] == "vm", r.text
        with torch.no_grad():
            want = modules["branches"](x).double().numpy()
        assert np.allclose(_arrays(r)["output"], want, rtol=1e-4, atol=1e-5)
        r = c.post(
            "/v2/models/branches/infer",
            json=_body(meta, [x]),
            headers={"X-Tidegate-Route": "burst", "X-Tidegate-Workers": "2"},
        )
        assert r.status_code == 400 and "control flow (torch.cond)" in r.json()["error"], r.text
