"""``tidegate report`` and ``GET /admin/reports/tenants/{tenant}`` judge a tenant without its
own SLO by the same rule: the model's ``slo_ms`` in the repository. Before, the CLI judged
every model by 500 ms: on the walkthrough's ledger it said 17 % attained where the gateway's
endpoint said 12 % (ResNet-18's SLO is 300 ms)."""

from __future__ import annotations

import json
from dataclasses import astuple

from gateway.ledger import LedgerRow, make_backend
from ops.cli import main
from vmpool.export import export_zoo

T0 = 1_780_000_000.0


def _ledger(data_dir, latencies_ms: list[float], model: str) -> None:
    backend = make_backend(str(data_dir / "ledger.sqlite"))
    backend.migrate()
    rows = [
        LedgerRow(
            id=f"r{i}",
            ts=T0 + i,
            tenant="default",
            model=model,
            path="vm",
            status=200,
            latency_ms=ms,
            workers=0,
            vm_cost_usd=1e-6,
            function_cost_usd=0.0,
            store_cost_usd=0.0,
            cost_usd=1e-6,
        )
        for i, ms in enumerate(latencies_ms)
    ]
    backend.write([astuple(r) for r in rows])


def _attainment(capsys, *argv: str) -> float:
    assert main(["report", "--format", "json", *argv]) == 0
    return json.loads(capsys.readouterr().out)["tenants"]["default"]["slo_attainment"]


def test_a_tenant_without_an_slo_is_judged_by_its_models_slo(tmp_path, capsys):
    export_zoo("mlp", tmp_path / "models", slo_ms=300.0)
    _ledger(tmp_path, [100.0, 250.0, 400.0, 450.0], "mlp")  # 2 of 4 within 300 ms
    assert _attainment(capsys, "--data-dir", str(tmp_path)) == 0.5
    assert _attainment(capsys, "--data-dir", str(tmp_path), "--slo-ms", "500") == 1.0
    config = tmp_path / "serve.toml"  # the serve config's repo is the one its gateway reads
    other = tmp_path / "other"
    export_zoo("mlp", other, slo_ms=200.0)
    config.write_text(f'repo = "{other}"\n')
    assert _attainment(capsys, "--data-dir", str(tmp_path), "--config", str(config)) == 0.25


def test_a_model_no_repository_holds_is_judged_by_500_ms(tmp_path, capsys):
    _ledger(tmp_path, [100.0, 450.0, 600.0], "gone")
    assert _attainment(capsys, "--data-dir", str(tmp_path)) == 2 / 3
