"""Config mistakes in `tidegate serve`: one clear line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    # (config text, extra args, environment, words the one line must carry)
    ("[vm]\nreplica = 2\n", [], {}, ["unknown setting vm.replica", "did you mean replicas"]),
    (
        '[burst]\nplatform = { kind = "lamda" }\n',
        [],
        {},
        ["burst.platform", "'lamda'", "aws_lambda"],
    ),
    (
        '[burst.platform]\nkind = "alibaba_fc"\nendpoint = "https://x"\naccess_key_id = "a"\n'
        'access_key_secret = "b"\nendpont = "y"\n',
        [],
        {},
        ["unknown setting burst.platform.alibaba_fc.endpont", "did you mean endpoint"],
    ),
    (
        '[burst.store]\nkind = "s3"\nbucket = "b"\nregoin = "eu-west-1"\n',
        [],
        {},
        ["burst.store.s3.regoin", "did you mean region"],
    ),
    ("[burst]\nkeep_alive_s = 0\n", [], {}, ["burst.keep_alive_s", "greater than 0"]),
    ("", ["--replicas", "-1"], {}, ["vm.replicas", "greater than or equal to 0"]),
    (
        "",
        [],
        {"TIDEGATE_VM__REPLICA": "2"},
        ["unknown environment variable TIDEGATE_VM__REPLICA", "TIDEGATE_VM__REPLICAS"],
    ),
    ("", ["--data-dir", "/proc/nope"], {}, ["cannot use data directory /proc/nope"]),
    ("port = [1\n", [], {}, ["cannot read settings"]),
    (
        '[autoscaling]\npolicy = "knative"\nstable_window = 30\n',
        [],
        {},
        ["unknown setting autoscaling.knative.stable_window", "did you mean stable_window_s"],
    ),
    ('[autoscaling]\npolicy = "magic"\n', [], {}, ["autoscaling", "policy 'magic'", "predictive"]),
]


@pytest.mark.parametrize("text,args,env,words", CASES)
def test_config_mistakes_are_one_line_and_exit_2(tmp_path, text, args, env, words):
    config = tmp_path / "tidegate.toml"
    config.write_text(text)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    argv = [sys.executable, "-m", "ops", "serve", "--config", str(config), "--port", "0"]
    if "--data-dir" not in args:
        argv += ["--data-dir", str(tmp_path / "data")]
    proc = subprocess.run(
        argv + args, cwd=ROOT, env={**environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for word in words:
        assert word in lines[0]
    assert "Try:" not in proc.stdout and "ready" not in proc.stdout  # no banner before a failure
    assert not (tmp_path / "data" / "models").exists()  # nothing exported for nothing


def test_a_second_gateway_on_the_same_data_directory_is_one_line_and_exit_2(tmp_path):
    from gateway.ledger import Ledger, make_backend

    data = tmp_path / "data"
    data.mkdir()
    owner = Ledger(make_backend(data / "ledger.sqlite", sqlite_synchronous="NORMAL"), journal=True)
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
        argv = [sys.executable, "-m", "ops", "serve", "--port", "0", "--data-dir", str(data)]
        proc = subprocess.run(
            argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
        )
    finally:
        owner.journal.close()
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "in use by another gateway" in lines[0], proc.stderr
    assert f"pid {os.getpid()}" in lines[0]
