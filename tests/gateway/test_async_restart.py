"""Nothing accepted is lost: SIGKILL the gateway with async work queued, start it again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import torch

from vmpool.artifact import load_artifact
from vmpool.codec import decode_response, encode_request

from tests.support.fault_proxy import FaultProxy

from tests.support.announced import GATEWAY, announced_url, log_offset

from .conftest import ROOT, wait_ready

JOBS = 16  # with the replica holding all but PASSED, a few are enough to leave work queued
PASSED = 5  # jobs answered before the replica holds the rest


def _start(config, log):
    """`tidegate serve` on port 0 (the kernel's pick at bind): (process, base URL) once it
    says it is ready."""
    offset = log_offset(log)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops", "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        return proc, announced_url(log, offset, proc, GATEWAY, bound_s=240)
    except BaseException:
        proc.kill()
        raise


@pytest.mark.slow
def test_sigkill_with_jobs_queued_loses_nothing(model_server, small_repo, tmp_path):
    data = tmp_path / "data"
    config = tmp_path / "gateway.toml"
    # the replica behind a proxy that answers a few jobs, then holds the rest until after the
    # kill: work is left (done, running and queued) whatever the processes' relative speeds
    replica = FaultProxy(model_server).start()

    def configure(replica_url: str) -> None:  # one consumer, one slot: one job at a time
        config.write_text(
            f'data_dir = "{data}"\nrepo = "{small_repo}"\nport = 0\ngrpc_port = -1\n'
            f'[vm]\nprovisioner = "static"\nurls = ["{replica_url}"]\n[burst]\nenabled = false\n'
            f"[async_queue]\nconsumers = 1\nslots_per_replica = 1\n"
        )

    configure(replica.endpoint)
    log = tmp_path / "gateway.log"
    inputs = np.random.default_rng(5).standard_normal((JOBS, 2, 3, 64, 64)).astype(np.float32)
    gateway, url = _start(config, log)
    try:
        wait_ready(url + "/v2/health/ready", gateway)
        replica.hold_after(PASSED)
        locations = []
        with httpx.Client(base_url=url) as client:
            for x in inputs:
                body, hl = encode_request({"input": x})
                resp = client.post(
                    "/v2/models/resnet18/infer",
                    content=body,
                    headers={"Inference-Header-Content-Length": str(hl), "Prefer": "respond-async"},
                )
                assert resp.status_code == 202, resp.text
                locations.append(resp.headers["location"])
        assert replica.holding.wait(120), "the queue never reached the held job"
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.wait(30)
    finally:
        if gateway.poll() is None:
            gateway.kill()
        replica.release()  # (what it held goes on to the replica, its answers to nobody)
        replica.stop()
    with sqlite3.connect(data / "async-queue.sqlite") as db:
        states = dict(db.execute("SELECT id, state FROM jobs").fetchall())
    assert len(states) == JOBS, "every acknowledged job is on disk"
    assert any(s != "done" for s in states.values()), "the kill should find work unfinished"

    configure(model_server)  # restarted on the same data, the replica reached directly
    gateway, url = _start(config, log)  # (a job's Location is a path: any port serves it)
    try:
        wait_ready(url + "/v2/health/ready", gateway)
        module = load_artifact(small_repo, "resnet18").load_module()
        deadline = time.monotonic() + 180
        with httpx.Client(base_url=url) as client:
            for x, location in zip(inputs, locations, strict=True):
                while (resp := client.get(location)).status_code == 202:
                    assert time.monotonic() < deadline, f"{location} never finished"
                    time.sleep(0.05)
                assert resp.status_code == 200, resp.text
                got = decode_response(
                    resp.content, int(resp.headers["inference-header-content-length"])
                )
                with torch.inference_mode():
                    want = module(torch.from_numpy(x)).numpy()
                assert np.abs(got.outputs["output"] - want).max() <= 1e-5
    finally:
        gateway.terminate()
        gateway.wait(30)
    with sqlite3.connect(data / "async-queue.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'done'").fetchone()[0] == JOBS
