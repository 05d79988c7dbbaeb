"""`tidegate serve` as a user runs it: first run exports the demo model, restarts keep the data."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from tests.gateway.conftest import free_port, wait_ready
from vmpool.procs import die_with_parent

ROOT = Path(__file__).resolve().parents[2]
# No test may depend on a fixed port being free (8000 for HTTP, 8001 for gRPC by default):
# every run names a free HTTP port and turns gRPC off.
ENV = {**os.environ, "TIDEGATE_GRPC_PORT": "-1"}


def _serve(data: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**ENV, "TIDEGATE_BURST__ENABLED": "false", "TIDEGATE_VM__THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=die_with_parent(),
    )


class _Output:
    """The server's stdout, read as it comes: the banner and "ready:" follow readiness by a
    poll, so a test that stops the server right after /ready may stop it before they print."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)
            if line.startswith("ready: "):
                self.ready.set()

    def text(self) -> str:
        self._reader.join(60)  # to the end: the process has exited
        return "".join(self.lines)


@pytest.mark.slow
def test_first_run_exports_the_demo_model_and_restarts_keep_data(tmp_path):
    data, port = tmp_path / "data", free_port()
    proc = _serve(data, port)
    output = _Output(proc)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc, timeout_s=240)
        assert output.ready.wait(30), "".join(output.lines)
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live() and client.is_server_ready()
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        assert client.infer("resnet18", [inp]).as_numpy("output").shape == (1, 1000)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    out = output.text()
    assert proc.returncode == 0, out
    assert "exporting demo model resnet18" in out and f"http://127.0.0.1:{port}" in out
    assert (data / "models/resnet18/model.pt2").is_file()
    with sqlite3.connect(data / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM requests WHERE status=200").fetchone()[0] == 1

    # second run: no export, same data directory, the first run's ledger still there
    port = free_port()
    proc = _serve(data, port)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc, timeout_s=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert "exporting" not in out
    with sqlite3.connect(data / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM requests WHERE status=200").fetchone()[0] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "/nonexistent/tidegate.toml"], "config file not found"),
        (["--repo", "/nonexistent/repo"], "no models in repository"),
    ],
)
def test_serve_user_errors_are_one_line(tmp_path, args, message):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(free_port()),
            *args,
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_serve_rejects_a_bad_setting(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('routing_policy = "cheapest"\n[vm]\nreplicas = -1\n')
    proc = subprocess.run(
        [sys.executable, "-m", "ops", "serve", "--config", str(cfg), "--port", str(free_port())],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "invalid setting" in proc.stderr, proc.stderr


def test_serve_refuses_a_port_in_use_before_doing_anything(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ops",
                "serve",
                "--data-dir",
                str(tmp_path / "d"),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2 and "cannot listen on" in proc.stderr, proc.stderr
    assert not (tmp_path / "d" / "models").exists()  # no demo export for a server that cannot start


@pytest.mark.slow
def test_port_0_announces_the_port_the_kernel_gave(tmp_path):
    import re
    import urllib.request

    from vmpool.export import export_zoo

    export_zoo("mlp", tmp_path / "repo")
    proc = _serve(tmp_path / "data", 0, "--repo", str(tmp_path / "repo"))
    output = _Output(proc)
    try:
        assert output.ready.wait(180), "".join(output.lines)
        ready = next(line for line in output.lines if line.startswith("ready: "))
        port = int(re.fullmatch(r"ready: http://127\.0\.0\.1:(\d+)\s*", ready).group(1))
        assert port != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=30) as r:
            assert r.status == 200
        assert f"curl -s http://127.0.0.1:{port}/v2/models/mlp" in "".join(output.lines)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    output.text()
