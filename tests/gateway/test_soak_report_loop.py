"""An admin report is built off the gateway's event loop. Its cost grows with the ledger (all of
the tenant's rows in the window, no window by default): measured for the soak, 219k rows took
1.2 s to aggregate, and that ran on the event loop, so every request to the gateway waited
behind a report. Here the aggregation is held until an infer call has been answered: on the
loop, that call could not be answered and the report would never finish."""

from __future__ import annotations

import threading

import httpx
import pytest

import gateway.reports
from gateway.app import create_app
from gateway.settings import Settings

from .conftest import serve_app

BODY = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}]}


def test_a_slow_report_does_not_hold_up_the_gateways_requests(
    model_server, small_repo, tmp_path, monkeypatch
):
    settings = Settings.load(
        None,
        data_dir=tmp_path,
        repo=small_repo,
        vm={"provisioner": "static", "urls": [model_server]},
        burst={"enabled": False},
        routing_policy="vm-only",
        tenants=[{"name": "acme", "api_keys": ["ka"]}],
        admin_api_key="adm",
    )
    building, answered = threading.Event(), threading.Event()
    real = gateway.reports.build_report

    def slow_build(*args, **kwargs):  # a report over a large ledger, held until an answer
        building.set()
        answered.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(gateway.reports, "build_report", slow_build)
    with serve_app(create_app(settings)) as url:
        report: dict = {}

        def read_report():
            report["r"] = httpx.get(
                url + "/admin/reports/tenants/acme", headers={"x-api-key": "adm"}, timeout=60
            )

        reader = threading.Thread(target=read_report)
        reader.start()
        assert building.wait(30)
        try:
            r = httpx.post(
                url + "/v2/models/mlp/infer", json=BODY, headers={"x-api-key": "ka"}, timeout=10
            )
        except httpx.TimeoutException:
            pytest.fail("an infer call waited behind the report (built on the event loop)")
        finally:
            answered.set()
            reader.join(60)
        assert r.status_code == 200, r.text
        assert report["r"].status_code == 200, report["r"].text
