"""Gateway A/B: two source trees' gateways in front of one model server, in one run.

A change to the gateway's hot path is judged against the tree before it on the same machine in
the same minutes: one model server, a gateway started from ``--baseline`` (a checkout or a
``git archive`` of the commit before) and one from this tree, and closed-loop rounds that
interleave direct, baseline and current. On a 2-core machine shared with other work, two runs
minutes apart differed by more than the change measured (gateway CPU per request 792 vs 1084 us
for the same commit); interleaved rounds see the same load. Prints the table and the ratios and
writes JSON (default ops/bench/results/gateway_ab_<model>.json).

    git archive <commit> | tar -x -C /tmp/base
    python ops/bench/gateway_ab.py --baseline /tmp/base --model mlp --duration 12 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from ops.bench.gateway_overhead import binary_request, measure  # noqa: E402
from ops.bench.procs import start, stop, wait_http  # noqa: E402
from vmpool.procs import free_port, model_server_command  # noqa: E402


def start_gateway(
    tree: Path,
    work: Path,
    repo: Path,
    replica_port: int,
    ledger_extra: str = "",
    vm_extra: str = "",
) -> tuple[int, object]:
    """``tidegate serve`` from ``tree`` (its own code: the tree is the working directory);
    ``ledger_extra`` and ``vm_extra``: more lines of its ``[ledger]`` and ``[vm]`` tables."""
    port = free_port()
    work.mkdir(parents=True)
    (work / "gateway.toml").write_text(
        f'data_dir = "{work / "data"}"\nrepo = "{repo}"\nport = {port}\ngrpc_port = -1\n'
        f'[ledger]\nsqlite_synchronous = "normal"\n{ledger_extra}'
        f'[vm]\nprovisioner = "static"\nurls = ["http://127.0.0.1:{replica_port}"]\n{vm_extra}'
        f"[burst]\nenabled = false\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops", "serve", "--config", str(work / "gateway.toml")],
        stdout=open(work / "gateway.log", "wb"),
        stderr=subprocess.STDOUT,
        cwd=tree,
        start_new_session=True,
    )
    return port, proc


def ratios_of(rows: list[dict]) -> dict[str, dict[str, float]]:
    by = {(r["target"], r["concurrency"]): r for r in rows}
    direct1, direct16 = by[("direct", 1)], by[("direct", 16)]
    return {
        name: {
            "added_p50_ms_c1": by[(name, 1)]["p50_ms"] - direct1["p50_ms"],
            "throughput_share_c16": by[(name, 16)]["throughput_rps"] / direct16["throughput_rps"],
            "gateway_cpu_us_per_request_c1": by[(name, 1)]["cpu_us_per_request"]["gateway"],
            "gateway_cpu_us_per_request_c16": by[(name, 16)]["cpu_us_per_request"]["gateway"],
        }
        for name in ("baseline", "current")
    }


def run(args: argparse.Namespace) -> list[dict]:
    """Export the model, start the model server and both gateways, measure, stop them all."""
    from vmpool.export import export_zoo

    work = work_dir("tidegate-ab-")
    repo = work / "models"
    export_zoo(args.model, repo, max_batch_size=8)
    x, body, headers = binary_request(repo, args.model)
    if args.json_body:  # the JSON path: decoded on the gateway's threads for large bodies
        body, headers = json_request(repo, args.model, x), {"Content-Type": "application/json"}
    procs: list = []
    try:
        mport = free_port()
        server = start(
            model_server_command(repo, mport, threads=1),
            work / "model-server.log",
            {"OMP_NUM_THREADS": "1"},
        )
        procs.append(server)
        wait_http(f"http://127.0.0.1:{mport}/v2/health/ready", server)
        path = f"/v2/models/{args.model}/infer"
        targets = {"direct": (f"http://127.0.0.1:{mport}{path}", body, headers)}
        pids = {"direct": {"model-server": server.pid}}
        current_ledger = (
            f"commit_interval_ms = {args.ledger_commit_interval_ms}\n"
            if args.ledger_commit_interval_ms
            else ""
        )
        current_ledger += "".join(f"{line}\n" for line in args.current_ledger)
        current_vm = "".join(f"{line}\n" for line in args.current_vm)
        for name, tree, ledger, vm in (
            ("baseline", args.baseline, "", ""),
            ("current", args.current, current_ledger, current_vm),
        ):
            port, proc = start_gateway(tree.resolve(), work / name, repo, mport, ledger, vm)
            procs.append(proc)
            wait_http(f"http://127.0.0.1:{port}/v2/health/ready", proc)
            targets[name] = (f"http://127.0.0.1:{port}{path}", body, headers)
            pids[name] = {"gateway": proc.pid, "model-server": server.pid}
        return measure(targets, args.duration, [1, 16], args.rounds, pids, client=args.client)
    finally:
        for proc in procs:
            stop(proc)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--baseline", type=Path, required=True, help="source tree of the baseline")
    ap.add_argument(
        "--current",
        type=Path,
        default=ROOT,
        help="source tree of the change (default: this one; a copy keeps others' uncommitted "
        "edits out of the comparison)",
    )
    ap.add_argument("--model", default="mlp")
    ap.add_argument(
        "--ledger-commit-interval-ms",
        type=float,
        default=0.0,
        help="the current gateway's [ledger] commit_interval_ms (the baseline keeps its "
        "default: an older tree may not know the field)",
    )
    ap.add_argument(
        "--current-ledger",
        action="append",
        default=[],
        metavar="LINE",
        help="a line for the current gateway's [ledger] table, e.g. 'journal_fold_ms = 500'",
    )
    ap.add_argument(
        "--current-vm",
        action="append",
        default=[],
        metavar="LINE",
        help="a line for the current gateway's [vm] table, e.g. 'coalesce = false' (repeatable): "
        "one tree against itself under another setting",
    )
    ap.add_argument("--duration", type=float, default=12.0, help="seconds per point and target")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds per point")
    ap.add_argument(
        "--client", choices=["aiohttp", "wrk"], default="aiohttp", help="as gateway_overhead's"
    )
    ap.add_argument("--json-body", action="store_true", help="send JSON tensors (default: binary)")
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args()


def json_request(repo: Path, model: str, x) -> bytes:
    """``x`` as a JSON infer body (the row ``binary_request`` drew)."""
    from vmpool.artifact import load_artifact

    name = load_artifact(repo, model).config.inputs[0].name
    tensor = {"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def main() -> int:
    args = parse_args()
    rows = run(args)
    ratios = ratios_of(rows)
    load = os.getloadavg()
    print(f"\nload average: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min) on {os.cpu_count()} cores")
    for name, figures in ratios.items():
        print(name + ": " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    out = args.out or ROOT / f"ops/bench/results/gateway_ab_{args.model}.json"
    out.write_text(
        json.dumps(
            {
                "model": args.model,
                "baseline": str(args.baseline),
                "current": str(args.current),
                "current_ledger_commit_interval_ms": args.ledger_commit_interval_ms,
                "current_vm": args.current_vm,
                "current_ledger": args.current_ledger,
                "load_average": load[:2],
                "rows": rows,
                "ratios": ratios,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
