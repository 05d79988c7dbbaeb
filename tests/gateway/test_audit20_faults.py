"""Faults an operator causes on a running `tidegate serve` (real processes): what clients get.

Before: while the local function runtime was being restarted after a kill -9, requests sent
with ``X-Tidegate-Route: burst`` were answered 400 "the burst path is disabled on this gateway
(burst.enabled is false)": a client error for an outage, no Retry-After, and a lie about the
configuration (12 of 300 in a 20 req/s burst load).

Before: with the ledger's PostgreSQL stopped, every request was run and then held unanswered
until the database came back (as long as it took: 98 rows waited 6 s in a 20 req/s load, and
more each second), while /v2/health/ready kept answering 200, so a load balancer kept sending
more. Now, while its writes fail, requests are refused at once (503, Retry-After), nothing run
or charged, and readiness says so; the held ones are answered once the rows are in. Also when
the database hangs (SIGSTOP: no write fails, each waits) once a write has waited 5 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import httpx
import pytest

from gateway.ledger import Ledger
from tests.gateway.test_crash_no_loss import BODY, _cmdline, _descendants, _serve
from tests.support.postgres import PostgresServer, _wait_accepting, pg_bin_dir, start_postgres
from vmpool.procs import kill_group, spawn_sync


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


def _infer(client: httpx.Client, url: str, rid: str) -> httpx.Response:
    return client.post(f"{url}/v2/models/mlp/infer", content=BODY, headers={"x-request-id": rid})


def _wait_ready_status(client: httpx.Client, url: str, status: int, bound_s: float = 60.0):
    deadline = time.monotonic() + bound_s
    while (got := client.get(f"{url}/v2/health/ready").status_code) != status:
        assert time.monotonic() < deadline, f"/v2/health/ready stayed {got}, not {status}"
        time.sleep(0.05)


def _restart(server: PostgresServer) -> None:
    """postgres again on the same data directory and port (what an operator's restart does)."""
    user = "postgres" if os.geteuid() == 0 else None
    args = [str(pg_bin_dir() / "postgres"), "-D", str(server.base / "data")]
    args += ["-p", str(server.port), "-k", str(server.base / "sock")]
    args += ["-c", "listen_addresses=127.0.0.1"]
    server.proc = spawn_sync(
        args, log_path=server.base / "postgres.log", user=user, cwd=server.base
    )
    _wait_accepting(server)


def _stop(pg: PostgresServer) -> None:
    pg.proc.send_signal(signal.SIGINT)  # "fast" shutdown: the gateway's link is cut
    pg.proc.wait(30)


def _hang(pg: PostgresServer, sig: int = signal.SIGSTOP) -> None:
    """Every process of the server stopped (a hung host): a write waits, failing nothing."""
    for pid in [pg.proc.pid, *_descendants(pg.proc.pid)]:
        os.kill(pid, sig)


OUTAGES = {"stopped": (_stop, _restart), "hung": (_hang, lambda pg: _hang(pg, signal.SIGCONT))}


def _wait_job_left_pending(client: httpx.Client, location: str) -> None:
    deadline = time.monotonic() + 60
    while (got := client.get(location)).status_code == 202 and got.json()["state"] == "pending":
        assert time.monotonic() < deadline, got.text
        time.sleep(0.05)


def _through_outage(url: str, pg: PostgresServer, outage: str) -> list[str]:
    """Requests before, during and after the outage: the ids answered 200."""
    answered, held = [], {}
    with httpx.Client(timeout=120) as client:
        for i in range(5):
            assert _infer(client, url, f"before-{i}").status_code == 200
            answered.append(f"before-{i}")
        begin, end = OUTAGES[outage]
        begin(pg)
        # this one is run and its row waits for the database: it is answered later
        holder = threading.Thread(
            target=lambda: held.update(resp=_infer(httpx.Client(timeout=120), url, "held"))
        )
        holder.start()
        _wait_ready_status(client, url, 503)
        refused = _infer(client, url, "refused")
        assert refused.status_code == 503, refused.text
        assert "ledger" in refused.json()["error"], refused.text
        assert int(refused.headers["retry-after"]) >= 1
        # an async job accepted meanwhile runs and waits (no client waits on it): not failed
        # by 503s that use up its attempts in seconds
        job = client.post(
            f"{url}/v2/models/mlp/infer", content=BODY, headers={"prefer": "respond-async"}
        )
        assert job.status_code == 202, job.text
        _wait_job_left_pending(client, url + job.headers["location"])
        end(pg)
        _wait_ready_status(client, url, 200)
        holder.join(60)
        assert held["resp"].status_code == 200, held["resp"].text
        answered.append("held")
        deadline = time.monotonic() + 60
        while (done := client.get(url + job.headers["location"])).status_code == 202:
            assert time.monotonic() < deadline, done.text
            time.sleep(0.05)
        assert done.status_code == 200, done.text
        for i in range(5):
            assert _infer(client, url, f"after-{i}").status_code == 200
            answered.append(f"after-{i}")
    return answered


@pytest.mark.slow
@pytest.mark.parametrize("outage", sorted(OUTAGES))
def test_postgres_ledger_down_refuses_at_once_and_recovers_without_a_restart(outage, tmp_path):
    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed")
    pg = start_postgres()
    try:
        ledger_url = pg.create_database()
        env = {"TIDEGATE_LEDGER__URL": ledger_url, "TIDEGATE_BURST__ENABLED": "false"}
        env["TIDEGATE_ASYNC_QUEUE__MAX_ATTEMPTS"] = "1"  # a 503 would fail the job at once
        proc, url = _serve(tmp_path / "data", env, tmp_path / "serve.log")
        try:
            answered = _through_outage(url, pg, outage)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            finally:
                kill_group(proc.pid)
        reader = Ledger(ledger_url)
        ids = reader.ids(200, 599)
        reader.backend.close()
        assert set(answered) <= ids, set(answered) - ids
        assert "refused" not in ids  # refused before it ran: nothing charged
    finally:
        with contextlib.suppress(ProcessLookupError):
            _hang(pg, signal.SIGCONT)  # (a failed "hung" run left it stopped)
        pg.stop()
