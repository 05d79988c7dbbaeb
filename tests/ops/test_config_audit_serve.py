"""`tidegate serve` whose start-up fails part-way (the ledger's database refuses, the model server
cannot load its model): one line and exit status 2, no banner, no "ready", no process left."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from vmpool.artifact import config_from_dict, config_to_toml

ROOT = Path(__file__).resolve().parents[2]
MODEL = {
    "name": "m",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
}


# a whole zip laid out as a torch.export archive, whose program does not deserialize
BROKEN_PT2 = {"m/archive_format": "pt2", "m/archive_version": "0", "m/models/model.json": "{"}


def _repo(root: Path, members: dict[str, str]) -> Path:
    """A model whose config is fine and whose model.pt2 is a zip of ``members``."""
    model = root / "repo" / "m"
    model.mkdir(parents=True)
    (model / "config.toml").write_text(config_to_toml(config_from_dict(MODEL, "m")))
    with zipfile.ZipFile(model / "model.pt2", "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return model.parent


def _serve(tmp_path: Path, *args: str, members=BROKEN_PT2) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    environ.update(TIDEGATE_GRPC_PORT="-1", TIDEGATE_BURST__ENABLED="false")
    argv = [sys.executable, "-m", "ops", "serve", "--port", "0"]
    argv += ["--data-dir", str(tmp_path / "data"), "--repo", str(_repo(tmp_path, members)), *args]
    return subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and text in cmdline:
            found.append(cmdline)
    return found


def _one_line_and_nothing_left(proc: subprocess.CompletedProcess, tmp_path: Path) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Try:" not in proc.stdout and "ready" not in proc.stdout, proc.stdout
    assert not _processes_naming(str(tmp_path))  # no model server outlives the gateway
    return lines[0]


def test_a_model_server_that_cannot_load_its_model_ends_the_start_in_one_line(tmp_path):
    proc = _serve(tmp_path)
    line = _one_line_and_nothing_left(proc, tmp_path)
    assert "the gateway did not start: a model server cannot start: model m" in line
    assert "local-1.log" in line  # where the rest of the story is


def test_a_zip_that_is_no_torch_export_program_is_refused_before_any_replica(tmp_path):
    proc = _serve(tmp_path, members={"m/hello.txt": "not a program"})
    line = _one_line_and_nothing_left(proc, tmp_path)
    assert "is a zip but not a torch.export program" in line
    assert "starting" not in proc.stdout


def test_a_ledger_database_that_refuses_ends_the_start_in_one_line(tmp_path):
    config = tmp_path / "tidegate.toml"
    config.write_text('[ledger]\nurl = "postgresql://nobody@127.0.0.1:9/tidegate"\n')
    proc = _serve(tmp_path, "--config", str(config))
    line = _one_line_and_nothing_left(proc, tmp_path)
    assert "the gateway did not start" in line and "127.0.0.1" in line


def test_a_model_server_given_a_broken_program_says_so_in_one_line(tmp_path):
    """torch logged its own traceback before the error (13 lines for a truncated file)."""
    repo = _repo(tmp_path, BROKEN_PT2)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    argv = [sys.executable, "-m", "ops", "model-server", "--repo", str(repo), "--port", "0"]
    proc = subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("tidegate model-server: error: model m: cannot load")
