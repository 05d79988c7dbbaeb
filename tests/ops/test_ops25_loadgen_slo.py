"""`tidegate loadgen` without --slo-ms judges each request by its model's slo_ms, as the gateway's
metadata states it (``parameters.slo_ms``), as `simulate` (the profile's) and `report` (the
repository's) judge. It judged every request by 300 ms: an mlp at 50 ms showed 100 % in loadgen
beside the simulator's misses, and sim_vs_real had to pass --slo-ms itself."""

from __future__ import annotations

import json

from aiohttp import web

from ops.cli import main
from tests.support.loopback import serve_aiohttp

SLO_MS = {"tight": 0.001, "loose": 600_000.0, "unstated": None}


def _gateway():
    async def metadata(request):
        name = request.match_info["model"]
        params = {"max_batch_size": 8} | ({"slo_ms": SLO_MS[name]} if SLO_MS[name] else {})
        return web.json_response(
            {
                "name": name,
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}],
                "parameters": params,
            }
        )

    async def infer(request):
        await request.read()
        return web.json_response({"outputs": []}, headers={"x-tidegate-path": "vm"})

    app = web.Application()
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_post("/v2/models/{model}/infer", infer)
    return serve_aiohttp(app)


def _replay(tmp_path, capsys, models: list[str], *extra: str) -> dict:
    trace = tmp_path / "t.csv"
    rows = "".join(f"{i * 0.01:.2f},{m}\n" for i, m in enumerate(models))
    trace.write_text("timestamp_s,model\n" + rows)
    out = tmp_path / "live.json"
    url, stop = _gateway()
    try:
        argv = ["loadgen", "--trace", str(trace), "--url", url, "--no-progress"]
        assert main([*argv, "--json", str(out), *extra]) == 0, capsys.readouterr().err
    finally:
        stop()
    return json.loads(out.read_text())


def test_each_request_is_judged_by_its_models_slo(tmp_path, capsys):
    summary = _replay(tmp_path, capsys, ["tight", "loose"] * 3)
    assert summary["slo_attainment"] == 0.5  # tight's 1 us missed, loose's 10 min met
    assert summary["slo_ms_by_model"] == {"loose": 600_000.0, "tight": 0.001}
    assert summary["slo_ms"] is None  # (two SLOs: no one figure)
    assert summary["tenants"]["default"]["slo_attainment"] == 0.5


def test_one_model_names_its_slo_and_none_stated_is_300(tmp_path, capsys):
    assert _replay(tmp_path, capsys, ["tight"] * 3)["slo_ms"] == 0.001
    summary = _replay(tmp_path, capsys, ["unstated"] * 3)
    assert summary["slo_ms"] == 300.0 and summary["slo_attainment"] == 1.0


def test_slo_ms_given_judges_every_request(tmp_path, capsys):
    summary = _replay(tmp_path, capsys, ["tight", "loose"] * 3, "--slo-ms", "600000")
    assert summary["slo_attainment"] == 1.0 and summary["slo_ms"] == 600000.0
    assert "slo_ms_by_model" not in summary
