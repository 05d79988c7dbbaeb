"""Faults an operator causes on a running `tidegate serve` (real processes): what clients get.

Before: while the local function runtime was being restarted after a kill -9, requests sent
with ``X-Tidegate-Route: burst`` were answered 400 "the burst path is disabled on this gateway
(burst.enabled is false)": a client error for an outage, no Retry-After, and a lie about the
configuration (12 of 300 in a 20 req/s burst load).
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.gateway.test_crash_no_loss import BODY, _cmdline, _descendants, _serve
from vmpool.procs import kill_group


def _burst(client: httpx.Client, url: str) -> httpx.Response:
    return client.post(
        f"{url}/v2/models/mlp/infer", content=BODY, headers={"x-tidegate-route": "burst"}
    )


@pytest.mark.slow
def test_forced_burst_while_the_function_runtime_restarts_is_a_503_to_retry(tmp_path):
    proc, url = _serve(tmp_path / "data", {}, tmp_path / "serve.log")
    try:
        with httpx.Client(timeout=120) as client:
            assert _burst(client, url).status_code == 200
            runtime = [p for p in _descendants(proc.pid) if "function-runtime" in _cmdline(p)]
            assert len(runtime) == 1, runtime
            os.kill(runtime[0], signal.SIGKILL)
            # one request at a time until the restarted runtime answers: the ones between
            # are refusals, fast, so many of them fall in the restart's window
            refusals: list[httpx.Response] = []
            deadline = time.monotonic() + 120
            while (resp := _burst(client, url)).status_code != 200:
                refusals.append(resp)
                assert time.monotonic() < deadline, refusals[-1].text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            kill_group(proc.pid)
    assert refusals, "the restart was not seen: no request fell in it"
    wrong = [(r.status_code, r.text) for r in refusals if r.status_code != 503]
    assert not wrong, f"{len(wrong)} of {len(refusals)} refusals were not 503: {wrong[:3]}"
    for resp in refusals:
        assert "error" in resp.json(), resp.text
        assert int(resp.headers["retry-after"]) >= 1, resp.headers
