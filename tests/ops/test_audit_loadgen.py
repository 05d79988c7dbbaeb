"""``tidegate loadgen`` on a trace of several models, mapped by a config's [trace] rules (an
Azure trace's functions): each request goes to its own model with its tenant's key (every
request went to the first model, and loadgen took no mapping: every tenant was 'default')."""

from __future__ import annotations

import json

from aiohttp import web

from tests.support.loopback import serve_aiohttp

from ops.cli import main

METADATA = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}],
}


def _serve(hits: list[tuple[str, str]]):
    async def metadata(request):
        return web.json_response({"name": request.match_info["model"], **METADATA})

    async def infer(request):
        await request.read()
        hits.append((request.match_info["model"], request.headers.get("authorization", "")))
        return web.json_response({"outputs": []}, headers={"x-tidegate-path": "vm"})

    app = web.Application()
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_post("/v2/models/{model}/infer", infer)

    async def metrics(request):
        return web.Response(text="")

    app.router.add_get("/metrics", metrics)
    return serve_aiohttp(app)


def test_each_request_goes_to_its_mapped_model_with_its_tenants_key(tmp_path):
    trace = tmp_path / "az21.csv"
    trace.write_text(
        "app,func,end_timestamp,duration\n"
        + "".join(
            f"{'big' if i % 3 == 0 else 'small'},f,{0.05 * i + 1:.2f},0.5\n" for i in range(9)
        )
    )
    config = tmp_path / "map.toml"
    config.write_text(
        '[trace]\ndefault_model = "m"\ndefault_tenant = "a"\n'
        '[[trace.map]]\nmatch = "big/*"\nmodel = "n"\ntenant = "b"\n'
    )
    hits: list[tuple[str, str]] = []
    url, stop = _serve(hits)
    out = tmp_path / "lg.json"
    try:
        argv = ["loadgen", "--trace", str(trace), "--url", url, "--no-progress"]
        keys = ["--key", "a=ka", "--key", "b=kb", "--json", str(out)]
        rc = main([*argv, "--config", str(config), *keys])
    finally:
        stop()
    assert rc == 0
    assert sorted(hits) == sorted([("n", "Bearer kb")] * 3 + [("m", "Bearer ka")] * 6)
    summary = json.loads(out.read_text())
    assert summary["requests"] == 9 and summary["model"] == "m,n"
    assert summary["tenants"]["b"]["requests"] == 3
