"""``tidegate loadgen`` as an operator runs it: the gateway dying mid-run, Ctrl-C half-way, a log
for stderr, tenants' keys from the gateway's config, speedups that are typos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from aiohttp import web

from tests.support.loopback import serve_aiohttp

from ops.cli import main

ROOT = Path(__file__).resolve().parents[2]
METADATA = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}],
}


class Gateway:
    """A loopback gateway stand-in; ``seen`` fires once ``after`` requests have arrived."""

    def __init__(self, after: int = 10**9):
        self.after, self.n, self.seen = after, 0, threading.Event()
        self.keys: list[str] = []
        app = web.Application()
        app.router.add_get("/v2/models/{model}", self.metadata)
        app.router.add_post("/v2/models/{model}/infer", self.infer)
        app.router.add_get("/metrics", self.metrics)
        self.url, self.stop = serve_aiohttp(app)

    async def metadata(self, request):
        return web.json_response({"name": request.match_info["model"], **METADATA})

    async def infer(self, request):
        await request.read()
        self.keys.append(request.headers.get("authorization", ""))
        self.n += 1
        if self.n >= self.after:
            self.seen.set()
        return web.json_response({"outputs": []}, headers={"x-tidegate-path": "vm"})

    async def metrics(self, request):
        return web.Response(text='tidegate_vm_replicas{state="ready"} 1.0\n')


def _trace(tmp_path: Path, n: int, step_s: float, tenants=("default",)) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(
        "timestamp_s,model,tenant\n"
        + "".join(f"{i * step_s:.4f},m,{tenants[i % len(tenants)]}\n" for i in range(n))
    )
    return path


def _loadgen(trace: Path, url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ops", "loadgen", "--trace", str(trace), "--url", url, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_gateway_that_dies_mid_run_is_a_clear_failure_not_a_hang(tmp_path):
    gw = Gateway(after=5)
    out = tmp_path / "lg.json"
    # 2000 requests over 100 s: without giving up, the run would last that long
    proc = _loadgen(_trace(tmp_path, 2000, 0.05), gw.url, "--json", str(out))
    try:
        assert gw.seen.wait(60)
    finally:
        gw.stop()  # nothing listens any more
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("tidegate loadgen: error:") and "connection refused" in last
    summary = json.loads(out.read_text())
    assert summary["failures"].get("connection refused", 0) >= 20
    assert summary["statuses"]["200"] >= 5
    assert summary["unfinished"] > 1000 and summary["stopped"]
    assert json.loads(stdout)["requests"] == summary["requests"]


def test_ctrl_c_half_way_writes_the_partial_summary(tmp_path):
    gw = Gateway(after=10)
    out = tmp_path / "lg.json"
    proc = _loadgen(_trace(tmp_path, 400, 0.05), gw.url, "--json", str(out))
    try:
        assert gw.seen.wait(60)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        gw.stop()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "interrupted" in stderr.strip().splitlines()[-1]
    summary = json.loads(out.read_text())
    assert summary["stopped"] == "interrupted"
    # answered before the signal (the 10th may still have been on its way back): counted;
    # the rest are unfinished, none lost
    assert 1 <= summary["requests"] < 400
    assert summary["requests"] + summary["unfinished"] == 400
    assert summary["statuses"].get("200") == summary["requests"]


def test_progress_on_a_log_is_plain_lines(tmp_path):
    gw = Gateway()
    try:
        proc = _loadgen(_trace(tmp_path, 30, 0.001), gw.url)
        _, stderr = proc.communicate(timeout=60)
    finally:
        gw.stop()
    assert proc.returncode == 0, stderr
    assert "\r" not in stderr
    lines = stderr.strip().splitlines()
    assert 1 <= len(lines) <= 11 and lines[-1].startswith("replay: 30/30")


def test_nothing_listening_is_one_line(tmp_path, capsys):
    gw = Gateway()
    gw.stop()  # its port is free now
    rc = main(["loadgen", "--trace", str(_trace(tmp_path, 3, 0.1)), "--url", gw.url])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "nothing answered" in err[0] and "connection refused" in err[0]


def test_speedups_that_cannot_be_meant_are_one_line(tmp_path, capsys):
    trace = str(_trace(tmp_path, 3, 1.0))
    for speedup in ("0", "-1", "nan", "inf", "1e-300"):
        rc = main(
            ["loadgen", "--trace", trace, "--url", "http://127.0.0.1:9", "--speedup", speedup]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "--speedup" in err[0], (speedup, err)


def test_a_huge_speedup_sends_at_once_and_the_json_stays_json(tmp_path, capsys):
    gw = Gateway()
    out = tmp_path / "lg.json"
    try:
        argv = ["--speedup", "1e308", "--no-progress", "--json", str(out)]
        rc = main(["loadgen", "--trace", str(_trace(tmp_path, 20, 1.0)), "--url", gw.url, *argv])
    finally:
        gw.stop()
    assert rc == 0
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text
    summary = json.loads(text)
    assert summary["requests"] == 20
    assert 19.0 <= summary["duration_s"] <= 19.0 + summary["wall_s"] + 0.001


def test_tenant_keys_come_from_the_gateways_config(tmp_path, capsys):
    config = tmp_path / "gw.toml"
    config.write_text(
        '[[tenants]]\nname = "a"\napi_keys = ["ka"]\n'
        '[[tenants]]\nname = "b"\napi_keys = ["kb"]\n'
        '[[tenants]]\nname = "c"\napi_key_hashes = ["sha256:' + "0" * 64 + '"]\n'
    )
    gw = Gateway()
    try:
        trace = str(_trace(tmp_path, 6, 0.01, tenants=("a", "b")))
        argv = ["loadgen", "--trace", trace, "--url", gw.url, "--no-progress"]
        assert main([*argv, "--config", str(config)]) == 0
        assert sorted(gw.keys) == ["Bearer ka"] * 3 + ["Bearer kb"] * 3
        capsys.readouterr()
        # a tenant without a key would be refused every request: said before the run
        trace = str(_trace(tmp_path, 6, 0.01, tenants=("a", "c")))
        argv = ["loadgen", "--trace", trace, "--url", gw.url, "--no-progress"]
        assert main([*argv, "--config", str(config)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no API key" in err[0] and "c" in err[0]
        assert main([*argv, "--config", str(config), "--key", "c=kc"]) == 0
        assert gw.keys[-6:].count("Bearer kc") == 3
    finally:
        gw.stop()


def test_each_tenant_is_judged_by_its_own_slo_from_the_config(tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text(
        '[[tenants]]\nname = "a"\napi_keys = ["ka"]\nslo_ms = 0.001\n'
        '[[tenants]]\nname = "b"\napi_keys = ["kb"]\n'
    )
    gw = Gateway()
    out = tmp_path / "lg.json"
    try:
        trace = str(_trace(tmp_path, 10, 0.01, tenants=("a", "b")))
        argv = ["loadgen", "--trace", trace, "--url", gw.url, "--no-progress", "--json", str(out)]
        assert main([*argv, "--config", str(config), "--slo-ms", "60000"]) == 0
    finally:
        gw.stop()
    summary = json.loads(out.read_text())
    assert summary["tenants"]["a"]["slo_attainment"] == 0.0  # 1 us: nothing meets it
    assert summary["tenants"]["b"]["slo_attainment"] == 1.0  # --slo-ms for the rest
    assert summary["slo_attainment"] == 0.5


def test_a_rate_scale_that_leaves_no_request_is_one_line(tmp_path, capsys):
    trace = str(_trace(tmp_path, 5, 0.1))
    rc = main(["loadgen", "--trace", trace, "--url", "http://127.0.0.1:9", "--rate-scale", "1e-9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no requests" in err[0] and "rate-scale" in err[0]
