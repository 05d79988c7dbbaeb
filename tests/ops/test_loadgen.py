"""``tidegate loadgen`` against a loopback gateway stand-in that checks the wire: open-loop timing,
binary tensors, per-tenant keys, and a summary in the simulator's shape."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from tests.support.loopback import serve_aiohttp

from ops.cli import main
from vmpool.codec import decode_request

METADATA = {
    "name": "m",
    "versions": ["1"],
    "platform": "pytorch_torch_export",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 16]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 16]}],
}
SIM_KEYS = (
    "requests",
    "slo_attainment",
    "p50_ms",
    "p99_ms",
    "cost_usd",
    "vm_hours",
    "function_gb_s",
    "cold_starts",
    "tenants",
)


class FakeGateway:
    """Answers like the gateway: VM for even request numbers, burst for odd (cold the first
    time), 401 for an unknown key; records when each request arrived and what it carried.
    The first answer is held until ``expect`` requests have arrived (then 1.5 s after it came):
    a closed-loop client would never send them, and the hold runs out (``held_for_all`` False)."""

    def __init__(self, expect: int = 0):
        self.arrived: list[tuple[float, str, tuple]] = []
        self.t0 = None
        self.expect = expect
        self.all_in: asyncio.Event | None = None  # made on the server's loop
        self.held_for_all = False

    async def metadata(self, request):
        return web.json_response(METADATA)

    async def infer(self, request):
        body = await request.read()
        now = time.perf_counter()
        self.t0 = self.t0 or now
        key = request.headers.get("authorization", "")
        if key not in ("Bearer ka", "Bearer kb"):
            return web.json_response({"error": "unknown API key"}, status=401)
        req = decode_request(body, int(request.headers["Inference-Header-Content-Length"]))
        self.arrived.append((now - self.t0, key, req.inputs["input"].shape))
        n = len(self.arrived)
        self.all_in = self.all_in or asyncio.Event()
        if n == self.expect:
            self.all_in.set()
        burst = n % 2 == 1
        headers = {
            "x-tidegate-path": "burst" if burst else "vm",
            "x-tidegate-cost-usd": "0.0000100000" if burst else "0.0000001000",
        }
        if n == 1:
            headers["x-tidegate-cold-starts"] = "2"
        if n == 1 and self.expect:
            try:  # (a bound, not a timing: the others come within about a second)
                await asyncio.wait_for(self.all_in.wait(), 60)
                self.held_for_all = True
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(max(0.0, 1.5 - (time.perf_counter() - now)))
        else:
            await asyncio.sleep(1.5 if n == 1 else 0.005)
        return web.json_response({"outputs": []}, headers=headers)

    async def metrics(self, request):
        return web.Response(
            text='tidegate_vm_replicas{state="ready"} 2.0\n'
            'tidegate_vm_replicas{state="booting"} 0.0\n'
        )


def _serve(gw: FakeGateway):
    app = web.Application()
    app.router.add_get("/v2/models/m", gw.metadata)
    app.router.add_post("/v2/models/m/infer", gw.infer)
    app.router.add_get("/metrics", gw.metrics)
    return serve_aiohttp(app)


def test_replay_is_open_loop_binary_per_tenant_and_shaped_like_the_simulator(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    times = [0.0, 0.05, 0.1, 0.15, 0.2, 1.0, 1.5, 2.0]
    trace.write_text(
        "timestamp_s,model,tenant\n"
        + "".join(f"{t},m,{'a' if i % 2 else 'b'}\n" for i, t in enumerate(times))
    )
    gw = FakeGateway(expect=len(times))
    url, stop = _serve(gw)
    out = tmp_path / "lg.json"
    try:
        rc = main(
            [
                "loadgen",
                "--trace",
                str(trace),
                "--url",
                url,
                "--speedup",
                "2",
                "--key",
                "a=ka",
                "--key",
                "b=kb",
                "--slo-ms",
                "1000",
                "--json",
                str(out),
                "--csv",
                str(tmp_path / "lg.csv"),
                "--no-progress",
            ]
        )
    finally:
        stop()
    assert rc == 0
    summary = json.loads(out.read_text())
    for key in SIM_KEYS:
        assert key in summary
    assert summary["requests"] == 8 and summary["statuses"] == {"200": 8}
    assert {k for _, k, _ in gw.arrived} == {"Bearer ka", "Bearer kb"}
    assert all(shape == (1, 16) for _, _, shape in gw.arrived)
    # open loop: every request arrived while the first one's answer was held back (by arrivals,
    # not by a clock), none before its time in the trace (the last at 2.0 s, played at 2x speed)
    assert gw.held_for_all
    sent = sorted(t for t, _, _ in gw.arrived)
    assert 0.95 <= sent[-1]
    assert summary["requests_burst"] == 4 and summary["cold_starts"] == 2
    assert summary["slo_attainment"] == 7 / 8  # the slow first answer misses 1000 ms
    assert summary["tenants"]["a"]["requests"] == 4
    assert summary["vm_hours"] > 0 and summary["cost_usd"] > 4 * 1e-5
    lines = (tmp_path / "lg.csv").read_text().splitlines()
    assert len(lines) == 9 and lines[0].startswith("index,tenant,sent_s,latency_ms,status,path")


def test_bad_key_and_bad_url_are_reported(tmp_path, capsys):
    gw = FakeGateway()
    url, stop = _serve(gw)
    try:
        rc = main(
            [
                "loadgen",
                "--trace",
                "synth:steady:duration_s=1,rps=5",
                "--url",
                url,
                "--model",
                "m",
                "--api-key",
                "wrong",
                "--no-progress",
            ]
        )
        assert rc == 1  # every request refused: the run measured nothing (one line says so)
        summary = json.loads(capsys.readouterr().out)
        assert summary["statuses"].get("401", 0) == summary["requests"] > 0
        assert summary["slo_attainment"] == 0.0
    finally:
        stop()
    assert (
        main(
            [
                "loadgen",
                "--trace",
                "synth:steady:duration_s=1,rps=5",
                "--url",
                "http://127.0.0.1:9",
                "--model",
                "m",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "error" in capsys.readouterr().err
