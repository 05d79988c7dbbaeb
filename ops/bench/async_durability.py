"""Async inference survives crashes: N requests submitted with ``Prefer: respond-async`` while
the gateway and the model server are each SIGKILLed twice; every acknowledged request must end
with exactly one answer, equal to the exported program's output.

Real processes on loopback: one model server (static provisioner, so it can be killed apart
from the gateway) and ``tidegate serve`` on the embedded SQLite queue. A submission that fails
because the gateway is down is sent again (it was never acknowledged). Prints a table and
writes JSON.

    python ops/bench/async_durability.py [--requests 10000] [--model mlp]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from ops.bench.gateway_overhead import start, wait_http  # noqa: E402
from vmpool.codec import decode_response, encode_request  # noqa: E402
from vmpool.provisioners.local import free_port  # noqa: E402


class Fleet:
    """The model server and the gateway, each restartable after a SIGKILL."""

    def __init__(self, work: Path, repo: Path):
        self.work, self.repo = work, repo
        self.mport, self.gport = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.gport}"
        (work / "gw.toml").write_text(
            f'data_dir = "{work / "gw"}"\nrepo = "{repo}"\nport = {self.gport}\ngrpc_port = -1\n'
            f'[vm]\nprovisioner = "static"\nurls = ["http://127.0.0.1:{self.mport}"]\n'
            f"[burst]\nenabled = false\n[async_queue]\nconsumers = 4\nslots_per_replica = 4\n"
            f"lease_s = 30\nmax_attempts = 50\nretry_delay_s = 0.2\n"
        )
        self.model_server = self.gateway = None
        self.kills = {"gateway": 0, "model-server": 0}

    def start_model_server(self) -> None:
        self.model_server = start(
            [
                sys.executable,
                "-m",
                "ops",
                "model-server",
                "--repo",
                str(self.repo),
                "--port",
                str(self.mport),
                "--threads",
                "1",
            ],
            self.work / "ms.log",
            {"OMP_NUM_THREADS": "1"},
        )
        wait_http(f"http://127.0.0.1:{self.mport}/v2/health/ready", self.model_server)

    def start_gateway(self) -> None:
        self.gateway = start(
            [sys.executable, "-m", "ops", "serve", "--config", str(self.work / "gw.toml")],
            self.work / "gw.log",
        )
        wait_http(self.url + "/v2/health/live", self.gateway)

    def kill(self, which: str) -> None:
        proc = self.gateway if which == "gateway" else self.model_server
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        self.kills[which] += 1
        print(f"  SIGKILL {which}", flush=True)
        (self.start_gateway if which == "gateway" else self.start_model_server)()

    def stop(self) -> None:
        for proc in (self.gateway, self.model_server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(60)


def submit(client: httpx.Client, body: bytes, headers: dict, deadline_s: float) -> str:
    while True:
        try:
            resp = client.post("/v2/models/mlp/infer", content=body, headers=headers)
            if resp.status_code == 202:
                return resp.headers["location"]
            if resp.status_code < 500:
                raise RuntimeError(f"refused: {resp.status_code} {resp.text}")
        except httpx.TransportError:
            pass  # the gateway is down: this request was never acknowledged, send it again
        if time.monotonic() > deadline_s:
            raise TimeoutError("could not submit")
        time.sleep(0.05)


def collect(client: httpx.Client, location: str, deadline_s: float) -> httpx.Response:
    while True:
        try:
            resp = client.get(location)
            if resp.status_code != 202:
                return resp
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline_s:
            raise TimeoutError(f"{location} did not finish")
        time.sleep(0.05)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/async_durability.json")
    return ap.parse_args()


def expected_outputs(repo: Path, xs: np.ndarray) -> np.ndarray:
    """The exported program's own answers, computed in-process for comparison."""
    import torch

    from vmpool.artifact import load_artifact

    module = load_artifact(repo, "mlp").load_module()
    with torch.inference_mode():  # in chunks: the program's batch dimension is bounded
        return np.concatenate(
            [
                module(torch.from_numpy(xs[i : i + 32].reshape(-1, 784))).numpy()
                for i in range(0, len(xs), 32)
            ]
        )


def submit_all(client: httpx.Client, fleet: Fleet, xs: np.ndarray, plan: dict) -> list[str]:
    """Submit every input asynchronously, killing processes at the planned submissions."""
    locations: list[str] = []
    for i in range(len(xs)):
        if i in plan:
            fleet.kill(plan[i])
        body, hl = encode_request({"input": xs[i]})
        locations.append(
            submit(
                client,
                body,
                {
                    "Inference-Header-Content-Length": str(hl),
                    "Prefer": "respond-async",
                    # a POST the gateway's crash left unanswered is sent again: the key makes
                    # the retry find the job it may have made, not a second one
                    "Idempotency-Key": f"durability-{i}",
                },
                time.monotonic() + 300,
            )
        )
    return locations


def collect_all(
    client: httpx.Client, locations: list[str], want: np.ndarray
) -> tuple[int, int, int, int]:
    """(answered, failed, wrong, changed) over every acknowledged submission; ``changed``: a
    second GET answered differently from the first (a second result for one request)."""
    answers, failed, wrong, changed = 0, 0, 0, 0
    for i, location in enumerate(locations):
        resp = collect(client, location, time.monotonic() + 600)
        again = collect(client, location, time.monotonic() + 600)
        changed += int(again.status_code != resp.status_code or again.content != resp.content)
        if resp.status_code != 200:
            failed += 1
            continue
        got = decode_response(resp.content, int(resp.headers["inference-header-content-length"]))
        answers += 1
        wrong += int(np.abs(got.outputs["output"][0] - want[i]).max() > 1e-5)
    return answers, failed, wrong, changed


def queue_counts(db_path: Path) -> tuple[dict, int, int]:
    """(jobs per state, jobs served more than once, jobs stored) from the SQLite queue."""
    with sqlite3.connect(db_path) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        retried = db.execute("SELECT COUNT(*) FROM jobs WHERE attempts > 1").fetchone()[0]
        stored = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    return states, retried, stored


def main() -> int:
    args = parse_args()
    from vmpool.export import export_zoo

    work = work_dir("tidegate-async-dur-")
    export_zoo("mlp", work / "models")
    n = args.requests
    xs = np.random.default_rng(7).standard_normal((n, 1, 784)).astype(np.float32)
    want = expected_outputs(work / "models", xs)
    # kills at these shares of the submissions, and one more of each while draining
    plan = {n // 5: "gateway", 2 * n // 5: "model-server", 3 * n // 5: "gateway"}
    fleet = Fleet(work, work / "models")
    t0 = time.monotonic()
    locations: list[str] = []
    try:
        fleet.start_model_server()
        fleet.start_gateway()
        with httpx.Client(base_url=fleet.url, timeout=30) as client:
            locations = submit_all(client, fleet, xs, plan)
            submitted_s = time.monotonic() - t0
            fleet.kill("model-server")
            answers, failed, wrong, changed = collect_all(client, locations, want)
    finally:
        fleet.stop()
    total_s = time.monotonic() - t0
    states, retried, stored = queue_counts(work / "gw" / "async-queue.sqlite")
    acknowledged = len(locations)
    row = {
        "acknowledged": acknowledged,
        "answered_200": answers,
        "failed": failed,
        "wrong_output": wrong,
        "answer_changed_on_second_get": changed,
        "distinct_locations": len(set(locations)),
        "lost": acknowledged - answers - failed,
        "jobs_in_queue": stored,
        "orphans": stored - acknowledged,
        "states": states,
        "served_more_than_once": retried,
        "kills": fleet.kills,
        "submit_s": round(submitted_s, 1),
        "total_s": round(total_s, 1),
    }
    print()
    for key, value in row.items():
        print(f"{key:<24} {value}")
    ok = answers == acknowledged and wrong == changed == 0 and stored == acknowledged
    ok = ok and len(set(locations)) == acknowledged
    print(f"\nevery request answered exactly once, correctly: {'yes' if ok else 'NO'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2))
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
