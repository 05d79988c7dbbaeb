"""A real gateway in front of a real model server: clients that send a batch-64 request and
close before reading its answer (1x1000 floats x 64, 256 KB binary) leave none of those answers
behind in the gateway. Its replica client's idle connections kept each one's last answer until
their next request (32 idle connections: 8 MiB for as long as no burst came again)."""

from __future__ import annotations

import asyncio
import gc
import re
import time
import tracemalloc

import httpx
import numpy as np
import pytest

from vmpool import http1
from vmpool.codec import encode_request
from vmpool.export import export_zoo

from .conftest import gateway_on, running_model_server

CLIENTS = 32


@pytest.fixture(scope="module")
def batch_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("mem23-repo")
    export_zoo("resnet18", repo, size=(32, 32), max_batch_size=64)
    return repo


async def _send_and_close(port: int, body: bytes, header_length: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v2/models/resnet18/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Inference-Header-Content-Length: %d\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" % (len(body), header_length) + body
    )
    await writer.drain()
    writer.close()  # gone before the answer


def _answered(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    found = re.findall(r'^tidegate_requests_total\{[^}]*model="resnet18"[^}]*\} (\S+)$', text, re.M)
    return sum(float(v) for v in found)


def test_answers_to_clients_that_left_are_not_kept(batch_repo, tmp_path):
    x = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    body, header_length = encode_request({"input": x})
    with running_model_server(batch_repo, tmp_path / "ms.log") as replica:
        with gateway_on(replica, batch_repo, tmp_path / "data") as (url, _):
            port = int(url.rsplit(":", 1)[1])
            tracemalloc.start()
            try:

                async def flood():
                    await asyncio.gather(
                        *(_send_and_close(port, body, header_length) for _ in range(CLIENTS))
                    )

                asyncio.run(flood())
                deadline = time.monotonic() + 120
                while _answered(url) < CLIENTS:  # every request went to the replica and back
                    assert time.monotonic() < deadline, "the gateway did not answer them all"
                    time.sleep(0.1)
                gc.collect()
                snapshot = tracemalloc.take_snapshot()
            finally:
                tracemalloc.stop()
    kept = snapshot.filter_traces([tracemalloc.Filter(True, http1.__file__)])
    held_mb = sum(stat.size for stat in kept.statistics("filename")) / 2**20
    # before: 32 x 256 KB answers on the idle connections (8 MiB)
    assert held_mb < 2, f"{held_mb:.1f} MiB of answers held after their clients left"
