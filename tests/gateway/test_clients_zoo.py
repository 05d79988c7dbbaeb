"""Every zoo model through tritonclient.http (binary and JSON) and tritonclient.grpc against a
gateway: the answer equals the exported program run in-process (to float rounding: the model
server folds batch norms into convs, ``vmpool/graph_opt.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from vmpool.artifact import load_artifact
from vmpool.export import export_zoo
from vmpool.zoo import MIN_IMAGE_SIZE, MODELS

from .conftest import gateway_before_replica

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Every zoo model (images at the smallest size they take), one model server, a gateway:
    yields (repo, http host:port, grpc target)."""
    root = tmp_path_factory.mktemp("zoo-clients")
    repo = root / "repo"
    for name, entry in MODELS.items():
        size = (MIN_IMAGE_SIZE, MIN_IMAGE_SIZE) if entry.is_image else None
        export_zoo(name, repo, size=size, max_batch_size=2)
    with gateway_before_replica(repo, root) as (url, target):
        yield repo, url.removeprefix("http://"), target


def close_enough(got: np.ndarray, want: np.ndarray) -> bool:
    # float rounding of a rewritten graph: about 1e-6 of the output's scale
    return got.shape == want.shape and np.abs(got - want).max() <= 1e-5 * max(
        1.0, float(np.abs(want).max())
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_model_through_both_clients_equals_the_exported_program(zoo, name):
    repo, host, target = zoo
    http = thttp.InferenceServerClient(host, network_timeout=300)
    meta = http.get_model_metadata(name)
    spec, out = meta["inputs"][0], meta["outputs"][0]["name"]
    shape = [2, *(int(d) for d in spec["shape"][1:])]
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    with torch.inference_mode():
        want = load_artifact(repo, name).load_module()(torch.from_numpy(x)).numpy()
    for binary in (True, False):
        inp = thttp.InferInput(spec["name"], shape, spec["datatype"])
        inp.set_data_from_numpy(x, binary_data=binary)
        asked = [thttp.InferRequestedOutput(out, binary_data=binary)]
        got = http.infer(name, [inp], outputs=asked).as_numpy(out)
        assert close_enough(got, want), (name, binary, got.shape, np.abs(got - want).max())
    inp = tgrpc.InferInput(spec["name"], shape, spec["datatype"])
    inp.set_data_from_numpy(x)
    got = tgrpc.InferenceServerClient(target).infer(name, [inp]).as_numpy(out)
    assert close_enough(got, want), (name, "grpc", got.shape, np.abs(got - want).max())
