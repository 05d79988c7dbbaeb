"""gRPC vs HTTP (binary tensors) through the gateway, one client, sequential requests.

Same gateway process, same replica, same input; the real clients a Triton user runs
(``tritonclient.grpc`` with raw contents, ``tritonclient.http`` with binary data), interleaved
in short rounds so drift hits both alike. Prints a table and writes JSON.

    python ops/bench/grpc_latency.py [--models resnet18,mlp] [--requests 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from ops.bench.gateway_overhead import start, stop, wait_http  # noqa: E402
from vmpool.procs import free_port, model_server_command  # noqa: E402


def _clients(http_port: int, grpc_port: int, model: str, x: np.ndarray, name: str):
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    hc = thttp.InferenceServerClient(f"127.0.0.1:{http_port}")
    gc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    hin = thttp.InferInput(name, list(x.shape), "FP32")
    hin.set_data_from_numpy(x, binary_data=True)
    hout = [thttp.InferRequestedOutput("output", binary_data=True)]
    gin = tgrpc.InferInput(name, list(x.shape), "FP32")
    gin.set_data_from_numpy(x)
    gout = [tgrpc.InferRequestedOutput("output")]
    return {
        "http-binary": lambda: hc.infer(model, [hin], outputs=hout).as_numpy("output"),
        "grpc-raw": lambda: gc.infer(model, [gin], outputs=gout).as_numpy("output"),
    }


def measure(calls: dict, requests: int, rounds: int) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():  # warm-up: connections, first-touch allocations
        for _ in range(20):
            fn()
    per_round = max(1, requests // rounds)
    for _ in range(rounds):
        for key, fn in calls.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                lat[key].append((time.perf_counter() - t0) * 1000.0)
    return lat


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="resnet18,mlp")
    ap.add_argument("--requests", type=int, default=300, help="per protocol and model")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the replica")
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/grpc_latency.json")
    return ap.parse_args()


def start_stack(work: Path, repo: Path, threads: int, procs: list) -> tuple[int, int]:
    """Start a model server and a gateway in front of it; return (http port, grpc port).

    Started processes are appended to ``procs`` as they come up, so the caller can stop
    them even when a later one fails to start.
    """
    mport, hport, gport = free_port(), free_port(), free_port()
    py = sys.executable
    procs.append(
        start(
            model_server_command(repo, mport, threads=threads),
            work / "ms.log",
            {"OMP_NUM_THREADS": str(threads)},
        )
    )
    wait_http(f"http://127.0.0.1:{mport}/v2/health/ready", procs[-1])
    (work / "gw.toml").write_text(
        f'data_dir = "{work / "gw"}"\nrepo = "{repo}"\nport = {hport}\ngrpc_port = {gport}\n'
        f'[vm]\nprovisioner = "static"\nurls = ["http://127.0.0.1:{mport}"]\n'
        f"[burst]\nenabled = false\n"
    )
    procs.append(
        start([py, "-m", "ops", "serve", "--config", str(work / "gw.toml")], work / "gw.log")
    )
    wait_http(f"http://127.0.0.1:{hport}/v2/health/ready", procs[-1])
    return hport, gport


def measure_model(repo: Path, model: str, hport: int, gport: int, args) -> list[dict]:
    """One row per protocol for ``model``: latency quantiles and whether outputs agree."""
    from vmpool.artifact import load_artifact

    spec = load_artifact(repo, model).config.inputs[0]
    x = np.random.default_rng(0).standard_normal((1, *spec.shape[1:])).astype(np.float32)
    calls = _clients(hport, gport, model, x, spec.name)
    same = np.array_equal(calls["http-binary"](), calls["grpc-raw"]())
    rows = []
    for key, values in measure(calls, args.requests, args.rounds).items():
        q = statistics.quantiles(values, n=100)
        rows.append(
            {
                "model": model,
                "protocol": key,
                "requests": len(values),
                "p50_ms": statistics.median(values),
                "p99_ms": q[98],
                "mean_ms": statistics.fmean(values),
                "outputs_equal": same,
            }
        )
    return rows


def report(rows: list[dict], models: list[str], out: Path) -> None:
    """Print the table and the gRPC/HTTP ratios, and write both as JSON."""
    print(
        f"\n{'model':<10} {'protocol':<12} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}  same output"
    )
    for r in rows:
        print(
            f"{r['model']:<10} {r['protocol']:<12} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['mean_ms']:8.2f}  {r['outputs_equal']}"
        )
    by = {(r["model"], r["protocol"]): r for r in rows}
    ratios = {
        f"{m}_grpc_over_http_p50": by[(m, "grpc-raw")]["p50_ms"] / by[(m, "http-binary")]["p50_ms"]
        for m in models
    }
    print()
    for k, v in ratios.items():
        print(f"{k:<28} {v:6.3f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=2))
    print(f"\nwrote {out}")


def main() -> int:
    args = parse_args()
    from vmpool.export import export_zoo

    work = work_dir("tidegate-grpc-bench-")
    repo = work / "models"
    models = args.models.split(",")
    for m in models:
        export_zoo(m, repo)
    rows, procs = [], []
    try:
        hport, gport = start_stack(work, repo, args.threads, procs)
        for m in models:
            rows.extend(measure_model(repo, m, hport, gport, args))
    finally:
        for p in reversed(procs):
            stop(p)
    report(rows, models, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
