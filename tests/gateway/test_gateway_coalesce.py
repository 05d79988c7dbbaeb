"""``[vm] coalesce`` through a real gateway and model server: concurrent small requests ride in
one replica call when it is on (the default) and each goes alone when it is off; every client
gets the answer its own rows would get alone."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from vmpool.codec import decode_response, encode_request

from .conftest import serve_app

MLP = "/v2/models/mlp/infer"


def _request(seed: int) -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(seed).standard_normal((1, 784)).astype(np.float32)
    body, header_length = encode_request({"input": x}, binary_output=True)
    return body, {"Inference-Header-Content-Length": str(header_length)}


def _output(resp: httpx.Response) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    length = int(resp.headers["inference-header-content-length"])
    return decode_response(resp.content, length).outputs["output"]


async def _concurrent(url: str, seeds: range) -> list[np.ndarray]:
    async with httpx.AsyncClient(timeout=60) as client:
        requests = [_request(seed) for seed in seeds]
        answers = await asyncio.gather(
            *(client.post(url + MLP, content=body, headers=h) for body, h in requests)
        )
    return [_output(resp) for resp in answers]


@pytest.mark.parametrize("coalesce", [True, False])
def test_concurrent_requests_merge_only_when_coalescing_is_on(
    coalesce, model_server, small_repo, tmp_path
):
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server], "coalesce": coalesce},
        burst={"enabled": False},
    )
    app = create_app(settings)
    with serve_app(app) as url:
        alone = [
            _output(httpx.post(url + MLP, content=b, headers=h))
            for b, h in map(_request, range(12))
        ]
        coalescer = app.state.gateway.pool.client.coalescer
        assert coalescer.calls_merged == 0  # one at a time: nothing to merge
        together = asyncio.run(_concurrent(url, range(12)))
    for mine, solo in zip(together, alone, strict=True):
        np.testing.assert_allclose(mine, solo, rtol=1e-5, atol=1e-6)
    if coalesce:
        assert coalescer.calls_merged > 0, "12 concurrent requests never shared a replica call"
        assert coalescer.requests_sent < 12
    else:
        assert coalescer.calls_merged == 0
