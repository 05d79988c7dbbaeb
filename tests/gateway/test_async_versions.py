"""An async job names its model version as the synchronous path reads it (Triton's reading:
``/versions/01`` is version 1), both with ``Prefer: respond-async`` and for an async-class
tenant whose request the router queues."""

from __future__ import annotations

import httpx
import numpy as np

from .test_async import ASYNC, KEY_A, KEY_BATCH, _binary, gateway, reference, wait_done  # noqa: F401


def _answered(url, location, key, repo, x):
    done = wait_done(url, location, {"x-api-key": key})
    assert done.status_code == 200, done.text
    assert done.headers["x-tidegate-request-state"] == "done"
    from vmpool.codec import decode_response

    answer = decode_response(done.content, int(done.headers["inference-header-content-length"]))
    assert np.abs(answer.outputs["output"] - reference(repo, "mlp", x)).max() <= 1e-5


def test_a_zero_padded_version_is_served_as_its_number_by_an_async_job(gateway, small_repo):
    x = np.random.default_rng(5).standard_normal((1, 784)).astype(np.float32)
    body, headers = _binary(x)
    sync = httpx.post(
        gateway + "/v2/models/mlp/versions/01/infer",
        content=body,
        headers={**headers, "x-api-key": KEY_A},
    )
    assert sync.status_code == 200, sync.text  # the synchronous path finds version 1
    for key, extra in ((KEY_A, ASYNC), (KEY_BATCH, {})):
        resp = httpx.post(
            gateway + "/v2/models/mlp/versions/01/infer",
            content=body,
            headers={**headers, "x-api-key": key, **extra},
        )
        assert resp.status_code == 202, resp.text
        _answered(gateway, resp.headers["location"], key, small_repo, x)


def test_an_unknown_version_is_refused_before_queueing(gateway):
    x = np.zeros((1, 784), np.float32)
    body, headers = _binary(x)
    resp = httpx.post(
        gateway + "/v2/models/mlp/versions/7/infer",
        content=body,
        headers={**headers, "x-api-key": KEY_A, **ASYNC},
    )
    assert resp.status_code == 404 and "error" in resp.json()
