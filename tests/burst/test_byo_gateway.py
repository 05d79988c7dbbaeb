"""Users' models end to end (``byo_models``): exported as the README says, served by a gateway
with a local VM replica and the local function runtime, asked on the VM path and the burst path
(``X-Tidegate-Route``, ``X-Tidegate-Workers``) in JSON, binary and with ``tritonclient``. The
burst answer is the VM answer; a model the burst path cannot split says why, in a 400's error."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton

sys.path.insert(0, str(Path(__file__).parent))
import byo_models as bm  # noqa: E402
from perfgen_slow_profile import write_slow_profile  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from ops.cli import main as cli  # noqa: E402
from tests.gateway.conftest import serve_app  # noqa: E402

pytestmark = pytest.mark.slow

# split across functions under a slow profile (perfgen_slow_profile: the bundled one keeps it whole)
ENCODER = {"d": 256, "depth": 1}
ENCODER_SHAPE = (64, 256)


def _save(tmp_path: Path, name: str, program, repo: Path) -> None:
    torch.export.save(program, str(tmp_path / f"{name}.pt2"))
    assert cli(["export", str(tmp_path / f"{name}.pt2"), "--name", name, "--out", str(repo)]) == 0


def _repo(tmp_path: Path) -> tuple[Path, dict]:
    """encoder (splits), twoheads (two inputs, an int64 output), textseq (a dynamic length),
    unet2 (a fixed batch of 2)."""
    repo, modules = tmp_path / "models", {}
    modules["encoder"] = bm.build("encoder", **ENCODER)
    _save(
        tmp_path,
        "encoder",
        bm.export(modules["encoder"], bm.example("encoder", shapes=[ENCODER_SHAPE])),
        repo,
    )
    modules["twoheads"] = bm.build("twoheads")
    _save(tmp_path, "twoheads", bm.export(modules["twoheads"], bm.example("twoheads")), repo)
    modules["textseq"] = bm.build("textcls")
    batch, seq = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=4, max=64)
    program = torch.export.export(
        modules["textseq"], tuple(bm.example("textcls")), dynamic_shapes=({0: batch, 1: seq},)
    )
    _save(tmp_path, "textseq", program, repo)
    # no torch.export.Dim, traced at a batch of 2: every request is 2 rows ("internal error:
    # batch of 2 exceeds max_batch_size 1" on the VM path, a 400 on the burst path, before)
    modules["unet2"] = bm.build("unet")
    _save(tmp_path, "unet2", torch.export.export(modules["unet2"], tuple(bm.example("unet"))), repo)
    write_slow_profile(repo, "encoder")  # split it: a test of what a split answers
    return repo, modules


def _infer(client, name: str, xs: list[np.ndarray], headers: dict, binary: bool):
    meta = client.get_model_metadata(name)
    inputs = []
    for spec, x in zip(meta["inputs"], xs):
        inp = triton.InferInput(spec["name"], list(x.shape), spec["datatype"])
        inp.set_data_from_numpy(x, binary_data=binary)
        inputs.append(inp)
    outs = [triton.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]]
    result = client.infer(name, inputs, outputs=outs, headers=headers)
    response = result.get_response()
    return [result.as_numpy(o["name"]) for o in meta["outputs"]], response


def test_users_models_answer_alike_on_both_paths_or_say_why_not(tmp_path):
    repo, modules = _repo(tmp_path)
    settings = Settings.load(
        None,
        data_dir=tmp_path / "data",
        repo=repo,
        vm={"replicas": 1, "threads": 1},
        burst={"enabled": True, "max_workers": 4, "concurrency": 8},
    )
    with serve_app(create_app(settings)) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=300)
        deadline = time.monotonic() + 240
        while not client.is_server_ready():
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.2)
        cases = {
            "encoder": bm.example("encoder", batch=2, seed=9, shapes=[ENCODER_SHAPE]),
            "twoheads": bm.example("twoheads", batch=3, seed=9),
            "unet2": bm.example("unet", batch=2, seed=9),
        }
        for name, xs in cases.items():
            with torch.no_grad():
                want = modules[name](*xs)
            want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
            arrays = [x.numpy() for x in xs]
            for binary in (True, False):
                answers = {}
                for route, workers in (("vm", None), ("burst", 1), ("burst", 4)):
                    headers = {"X-Tidegate-Route": route}
                    if workers:
                        headers["X-Tidegate-Workers"] = str(workers)
                    got, _ = _infer(client, name, arrays, headers, binary)
                    answers[(route, workers)] = got
                    for g, w in zip(got, want):
                        assert g.shape == w.shape and g.dtype == w.dtype, (name, route, workers)
                        assert np.allclose(g, w, rtol=1e-4, atol=1e-5), (name, route, workers)
                for g, v in zip(answers[("burst", 4)], answers[("vm", None)]):
                    assert np.allclose(g, v, rtol=1e-4, atol=1e-5), name
        # the encoder's batch of 2 really ran split (not the whole model in one function)
        body = {
            "inputs": [
                {
                    "name": client.get_model_metadata("encoder")["inputs"][0]["name"],
                    "shape": [2, *ENCODER_SHAPE],
                    "datatype": "FP32",
                    "data": cases["encoder"][0].flatten().tolist(),
                }
            ]
        }
        r = httpx.post(
            f"{url}/v2/models/encoder/infer",
            json=body,
            headers={"X-Tidegate-Route": "burst", "X-Tidegate-Workers": "4"},
            timeout=300,
        )
        assert r.status_code == 200 and r.headers["x-tidegate-path"] == "burst"
        assert int(r.headers["x-tidegate-workers"]) >= 2
        # a sequence-length model: the VM path answers, the burst path says why it cannot
        ids = bm.example("textcls", batch=2, seed=9, shapes=[(23,)])[0]
        body = {"inputs": [{"name": "ids", "shape": [2, 23], "datatype": "INT64"}]}
        body["inputs"][0]["data"] = ids.flatten().tolist()
        r = httpx.post(f"{url}/v2/models/textseq/infer", json=body, timeout=300)
        assert r.status_code == 200 and r.headers["x-tidegate-path"] == "vm"
        with torch.no_grad():
            want_seq = modules["textseq"](ids).numpy()
        assert np.allclose(r.json()["outputs"][0]["data"], want_seq.flatten(), atol=1e-5)
        r = httpx.post(
            f"{url}/v2/models/textseq/infer",
            json=body,
            headers={"X-Tidegate-Route": "burst"},
            timeout=300,
        )
        assert r.status_code == 400 and "dynamic dimension 1" in r.json()["error"]
