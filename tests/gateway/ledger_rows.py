"""Reading a running gateway's ledger from another process, as a user's script would.

The gateway writes each row to its journal before the answer and folds the rows into the SQLite
file every ``[ledger] journal_fold_ms`` (gateway.ledger.journal): a reader in another process
sees a row within that interval, so it waits for the rows it expects (up to ``timeout_s``)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path


def ledger_rows(
    data: Path, sql: str, params: tuple = (), *, at_least: int = 1, timeout_s: float = 30.0
) -> list[tuple]:
    """``sql``'s rows from ``data/ledger.sqlite`` once there are ``at_least`` of them (or the
    rows there are when ``timeout_s`` runs out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with sqlite3.connect(Path(data) / "ledger.sqlite") as db:
            rows = db.execute(sql, params).fetchall()
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


@contextmanager
def reporting_gateway(model_server: str, repo: Path, data: Path, tenants: list, calls: dict):
    """A VM-only gateway with ``tenants`` and admin key "adm" whose ledger already holds
    ``calls`` (api key -> answered mlp requests); yields its base URL."""
    import httpx

    from gateway.app import create_app
    from gateway.settings import Settings

    from .conftest import serve_app

    settings = Settings.load(
        None,
        data_dir=data,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy="vm-only",
        tenants=tenants,
        admin_api_key="adm",
    )
    body = {
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]
    }
    with serve_app(create_app(settings)) as url:
        with httpx.Client(base_url=url, timeout=60) as c:
            for key, n in calls.items():
                for _ in range(n):
                    r = c.post("/v2/models/mlp/infer", json=body, headers={"x-api-key": key})
                    assert r.status_code == 200, r.text
        ledger_rows(data, "SELECT id FROM requests", at_least=sum(calls.values()))
        yield url
