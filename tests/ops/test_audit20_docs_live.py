"""README's configuration block starts `tidegate serve --config` as written; the Python
snippets of README.md (tritonclient.http) and docs/grpc.md (tritonclient.grpc) answer from it;
docs/async.md's producer enqueues as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis import redis_server, redis_url  # noqa: F401 - fixtures
from vmpool.procs import die_with_parent, free_port, wait_healthy_sync

ROOT = Path(__file__).resolve().parents[2]


def _blocks(doc: str, lang: str) -> list[str]:
    text = (ROOT / doc).read_text()
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def _run_snippet(code: str, tmp_path: Path) -> str:
    path = tmp_path / "snippet.py"
    path.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _assert_extensions(http_port: int, grpc_port: int) -> None:
    """README names Triton's classification extension (class_count): the server metadata
    lists it, as Triton's does, over HTTP and gRPC."""
    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client

    http = http_client.InferenceServerClient(f"127.0.0.1:{http_port}")
    grpc = grpc_client.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    for extensions in (
        http.get_server_metadata()["extensions"],
        grpc.get_server_metadata().extensions,
    ):
        assert {"binary_tensor_data", "classification"} <= set(extensions)


# series that exist only with a setting the README's configuration leaves out (each is checked
# live by the tests of its feature)
ONLY_WITH = {
    "tidegate_shared_limits_unavailable_total": "redis_url (test_rel22_redis_outage.py)",
}


def _assert_documented_metrics(http_port: int) -> None:
    """Every `tidegate_*` series README/docs name is on /metrics, with the labels they give
    (`tidegate_requests_total{tenant,model,path,code}`), once requests have been answered."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {
        m.group(1): m.group(2)
        for doc in docs
        for m in re.finditer(r"\b(tidegate_[a-z_]+)(?:\{([a-z_,]+)\})?", doc.read_text())
    }
    assert len(named) >= 12
    for name, labels in named.items():
        if name in ONLY_WITH:  # (a series of a feature this configuration does not use)
            continue
        family = name.removesuffix("_total")
        assert re.search(rf"^# TYPE ({name}|{family}) ", text, re.M), name
        samples = re.findall(rf"^{name}\{{([^}}]*)\}}", text, re.M)
        if labels and samples:
            keys = {kv.split("=")[0] for kv in samples[0].split(",")}
            assert set(labels.split(",")) <= keys, (name, keys)


@pytest.mark.slow
def test_readme_configuration_starts_and_the_snippets_answer(tmp_path):
    config = next(b for b in _blocks("README.md", "toml") if "[[tenants]]" in b)
    (tmp_path / "tidegate.toml").write_text(config)
    http_port, grpc_port = free_port(), free_port()
    # the block as written, but on free ports and without its tenant (whose key the snippets,
    # written for the keyless default, do not send): the environment beats the file
    env = {**os.environ, "TIDEGATE_TENANTS": "[]", "TIDEGATE_VM__THREADS": "1"}
    cmd = [sys.executable, "-m", "ops", "serve", "--config", "tidegate.toml"]
    cmd += ["--data-dir", "data", "--port", str(http_port), "--grpc-port", str(grpc_port)]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent(),
    )
    try:
        wait_healthy_sync(proc, f"http://127.0.0.1:{http_port}/v2/health/ready", timeout_s=240)
        (triton,) = [b for b in _blocks("README.md", "python") if "tritonclient.http" in b]
        out = _run_snippet(triton.replace("127.0.0.1:8000", f"127.0.0.1:{http_port}"), tmp_path)
        assert out.strip() == "(1, 1000)"  # as its comment says
        (grpc,) = _blocks("docs/grpc.md", "python")
        out = _run_snippet(grpc.replace("127.0.0.1:8001", f"127.0.0.1:{grpc_port}"), tmp_path)
        assert out.strip() == "(1, 1000)"
        _assert_extensions(http_port, grpc_port)
        _assert_documented_metrics(http_port)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_async_md_producer_snippet_runs_as_written(tmp_path, redis_url):
    """docs/async.md's producer, verbatim, with the `tidegate.toml` its note asks for: it prints
    the job id and the job waits on the shared queue for its tenant and model."""
    import redis

    (tmp_path / "tidegate.toml").write_text(
        f'redis_url = "{redis_url}"\n[async_queue]\nbackend = "redis"\n\n'
        '[[tenants]]\nname = "batch-tenant"\napi_keys = ["batch-key"]\n'
    )
    (snippet,) = _blocks("docs/async.md", "python")
    job_id = _run_snippet(snippet, tmp_path).strip()
    job = redis.Redis.from_url(redis_url).hgetall(f"tidegate:async:job:{job_id}")
    assert job[b"tenant"] == b"batch-tenant" and job[b"model"] == b"resnet18"
    assert job[b"state"] == b"pending"
