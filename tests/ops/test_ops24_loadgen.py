"""`tidegate loadgen` with a trace whose model names are not URL-safe: each name is one path
segment, so the gateway judges the name the trace gave (before, 'mlp?x' asked for model mlp's
metadata, and every request then went to POST /v2/models/mlp, not to an infer endpoint)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from aiohttp import web

from ops.cli import main
from tests.support.loopback import serve_aiohttp

METADATA = {
    "name": "mlp",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}],
}


def _gateway(seen: list[tuple[str, str]]):
    """Serves model mlp only; records (method, raw path) of every request."""

    @web.middleware
    async def record(request, handler):
        seen.append((request.method, request.raw_path))
        return await handler(request)

    async def metadata(request):
        name = request.match_info["model"]
        if name != "mlp":
            return web.json_response({"error": f"unknown model {name!r}"}, status=404)
        return web.json_response(METADATA)

    async def infer(request):
        await request.read()
        return web.json_response({"outputs": []}, headers={"x-tidegate-path": "vm"})

    app = web.Application(middlewares=[record])
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_post("/v2/models/{model}/infer", infer)
    return serve_aiohttp(app)


@pytest.mark.parametrize("model", ["mlp?x", "mlp#x", "mlp/x", "mlp x", "mlp%3Fx"])
def test_a_model_name_that_is_not_url_safe_is_judged_as_written(tmp_path, capsys, model):
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp_s,model\n" + "".join(f"{i * 0.01:.2f},{model}\n" for i in range(5)))
    seen: list[tuple[str, str]] = []
    url, stop = _gateway(seen)
    try:
        argv = ["loadgen", "--trace", str(trace), "--url", url, "--no-progress"]
        rc = main(argv)
    finally:
        stop()
    err = capsys.readouterr().err
    assert rc == 2 and f"does not serve model {model!r}" in err, err
    assert ("GET", "/v2/models/" + quote(model, safe="")) in seen
    assert [path for method, path in seen if method == "POST"] == []  # nowhere else either


def test_a_served_model_is_still_replayed(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp_s,model\n" + "".join(f"{i * 0.01:.2f},mlp\n" for i in range(5)))
    seen: list[tuple[str, str]] = []
    url, stop = _gateway(seen)
    try:
        rc = main(["loadgen", "--trace", str(trace), "--url", url, "--no-progress"])
    finally:
        stop()
    assert rc == 0, capsys.readouterr().err
    assert seen.count(("POST", "/v2/models/mlp/infer")) == 5
