"""``tidegate serve`` with the access-log option docs/configuration.md names: one line per
request on stdout, JSON lines that parse (it printed nothing at the default --log-level, and
--log-level info put a time and logger name before each JSON line)."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"method", "path", "status", "tenant", "model", "route", "latency_ms", "request_id"}


def _documented_option() -> tuple[str, list[str]]:
    """The access-log setting's name and values as docs/configuration.md lists them."""
    table = (ROOT / "docs" / "configuration.md").read_text()
    row = next(ln for ln in table.splitlines() if "tidegate.access" in ln)
    name = re.search(r"`(\w+)`", row)[1]
    values = re.findall(r"'(\w+)'", row.split("|")[2])
    return name, values


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)


def test_serve_writes_json_access_lines_at_the_default_log_level(
    model_server, small_repo, tmp_path
):
    name, values = _documented_option()
    assert name == "access_log" and "json" in values
    config = tmp_path / "gw.toml"
    config.write_text(
        f'{name} = "json"\nrepo = "{small_repo}"\nrouting_policy = "vm-only"\n'
        f'[vm]\nprovisioner = "static"\nurls = ["{model_server}"]\n[burst]\nenabled = false\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops", "serve", "--port", "0", "--config", str(config)]
        + ["--data-dir", str(tmp_path / "data")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out: queue.Queue = queue.Queue()
    err: queue.Queue = queue.Queue()  # warnings and errors only
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    threading.Thread(target=_lines, args=(proc.stderr, err), daemon=True).start()
    try:
        url = None
        while url is None:
            line = out.get(timeout=120)
            if line.startswith("ready: "):
                url = line.split()[1]
        body = {
            "inputs": [
                {"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0.0] * 784}
            ]
        }
        ok = httpx.post(f"{url}/v2/models/mlp/infer", json=body, timeout=60)
        bad = httpx.post(f"{url}/v2/models/mlp/infer", content=b"{", timeout=60)
        assert (ok.status_code, bad.status_code) == (200, 400)
        logged: list[dict] = []
        deadline = time.monotonic() + 60  # bounds a broken server only
        while len([ln for ln in logged if ln.get("path") == "/v2/models/mlp/infer"]) < 2:
            line = out.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("{"):
                logged.append(json.loads(line))  # the whole line is the JSON object
    finally:
        proc.terminate()
        proc.wait(30)
    infer = [ln for ln in logged if ln["path"] == "/v2/models/mlp/infer"]
    assert all(FIELDS <= set(ln) for ln in infer)
    assert [ln["status"] for ln in infer] == [200, 400]
    assert infer[0]["route"] == "vm" and infer[0]["model"] == "mlp"
    assert infer[0]["request_id"] == ok.headers["x-request-id"]
    assert not any('"method"' in line for line in list(err.queue))  # not among the warnings


def test_text_lines_start_with_the_time_and_probes_are_left_out():
    import io

    from gateway.access_log import UNCOUNTED, AccessLog
    from gateway.access_log_stream import LineWriter

    buf = io.StringIO()
    access = AccessLog(
        None, state=None, fmt="text", sink=LineWriter(buf, timestamps=True, skip=UNCOUNTED)
    )
    for path in ("/v2/health/ready", "/metrics", "/v2/models/m"):
        scope = {"method": "GET", "path": path}
        access._done(scope, {}, {"status": 200, "request_id": "r1"}, 1.5)
    access.sink.flush()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d method=GET path=/v2/models/m status=200 .*", lines[0]
    )
