"""Two gateways on one data directory and one PostgreSQL ledger. The database stops, one gateway
stops with a request held for its row (its row goes to the spill file), the database starts
again: the gateway still running writes the spill file into the ledger, with no restart. Every
request answered 200 has its row once, and `tidegate report` adds up to the cost the answers
carried (x-tidegate-cost-usd), to the cent."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import httpx
import pytest

from gateway.app import create_app
from gateway.ledger import make_backend
from gateway.settings import Settings
from tests.support.postgres import pg_bin_dir, start_postgres

from .conftest import serve_app
from .test_ops25_spill_drain import _halt, _resume, report_tenants

pytestmark = pytest.mark.skipif(pg_bin_dir() is None, reason="PostgreSQL is not installed")
BODY = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}


def _gateway(url: str, data_dir, repo, model_server):
    settings = Settings.load(
        None,
        data_dir=data_dir,
        repo=repo,
        grpc_port=0,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        ledger={"url": url, "shutdown_timeout_s": 1.0},
    )
    return create_app(settings)


def _until(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


class _Held(threading.Thread):
    """One request sent while the database is down: admitted (no write has failed yet), then
    held for its row."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.answer = url, None
        self.start()

    def run(self) -> None:
        self.answer = httpx.post(self.url + "/v2/models/mlp/infer", json=BODY, timeout=120)


def _rows(url: str) -> tuple[int, int, Decimal]:
    backend = make_backend(url)
    try:
        n, ids, cost = backend.query(
            "SELECT COUNT(*), COUNT(DISTINCT id), SUM(cost_usd) FROM requests"
        )[0]
        return int(n), int(ids), Decimal(str(cost or 0))
    finally:
        backend.close()


def test_the_running_gateway_drains_the_stopped_ones_rows(model_server, small_repo, tmp_path):
    server = start_postgres()
    try:
        url = server.create_database()
        running = _gateway(url, tmp_path, small_repo, model_server)
        stopping = _gateway(url, tmp_path, small_repo, model_server)
        answers: list[httpx.Response] = []
        with serve_app(running) as a_url:
            with serve_app(stopping) as b_url:
                for base in (a_url, b_url) * 3:
                    answers.append(httpx.post(base + "/v2/models/mlp/infer", json=BODY, timeout=60))
                _halt(server)
                held_b = _Held(b_url)
                ledger_b = stopping.state.gateway.ledger
                _until(lambda: ledger_b.failing() is not None, "B never saw the outage")
                assert held_b.is_alive()  # held: no answer without its row
                ledger_b.release()  # B's stop begins (SIGTERM: gateway.lifespan.drain)
                held_b.join(30)  # answered: its row is in the spill file
            assert held_b.answer is not None and held_b.answer.status_code == 200
            answers.append(held_b.answer)
            assert list(tmp_path.glob("ledger-spill-*.jsonl"))

            held_a = _Held(a_url)
            _until(lambda: running.state.gateway.ledger.failing() is not None, "A: no outage")
            _resume(server)  # A is not restarted
            held_a.join(60)
            assert held_a.answer is not None and held_a.answer.status_code == 200
            answers.append(held_a.answer)
            assert all(r.status_code == 200 for r in answers)
            _until(lambda: _rows(url)[0] == len(answers), "B's spilled row never reached the db")
            _until(lambda: not list(tmp_path.glob("ledger-spill-*")), "the spill file stayed")
        n, ids, cost = _rows(url)
        assert n == ids == len(answers)  # each answer's row once

        charged = sum(Decimal(r.headers["x-tidegate-cost-usd"]) for r in answers)
        tenants = report_tenants(url)
        assert sum(t["requests"] for t in tenants.values()) == len(answers)
        total = sum(Decimal(repr(t["cost_usd"])) for t in tenants.values())
        cent = Decimal("0.01")
        assert total.quantize(cent) == cost.quantize(cent) == charged.quantize(cent)
    finally:
        server.stop()
