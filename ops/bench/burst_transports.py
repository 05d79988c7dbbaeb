"""Burst-path transports side by side: inline (base64 in the invocation payloads), the directory
store (/dev/shm on this machine), S3 and SQS (both moto on loopback, sealed as by default).

One model, one worker count, the same input; tensors are forced onto the transport
(``transport = "store"``, SQS ``"queue"``; inline: ``"inline"``; per-stage: the planner's). Per transport: warm latency, the share of it in
communication, and the cost of one request: functions (billed GB-s and requests) plus the
transport's own requests, counted on the wire at the moto server (SQS bills each started 64 KiB
of a payload; S3 PUT/LIST and GET classes). Prints a table and writes JSON.

    python ops/bench/burst_transports.py [--model resnet18] [--workers 2] [--warm 5]
        [--transports inline,dir,s3,sqs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from burst.service import BurstService  # noqa: E402
from policies.costs import PriceTable, function_cost_usd, store_cost_usd  # noqa: E402

# per-stage: SQS beside S3, the planner choosing inline, store or queue for each stage
TRANSPORTS = ("inline", "dir", "s3", "sqs", "per-stage")
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
BUCKET = "tidegate-transports"


@dataclass
class WireCount:
    """Requests the moto server answered: SQS (billed units: one per started 64 KiB of the
    request or response body) and S3 by price class."""

    sqs_units: int = 0
    sqs_calls: dict[str, int] = field(default_factory=dict)
    s3_put_class: int = 0
    s3_get_class: int = 0

    def snapshot(self) -> tuple[int, int, int]:
        return self.sqs_units, self.s3_put_class, self.s3_get_class


class CountingApp:
    """WSGI middleware in front of moto's app: counts what AWS would bill."""

    def __init__(self, app, count: WireCount):
        self.app, self.count = app, count

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        in_bytes = int(environ.get("CONTENT_LENGTH") or 0)
        body = self.app(environ, start_response)
        if not target.startswith("AmazonSQS."):
            method = environ.get("REQUEST_METHOD", "GET")
            if method in ("PUT", "POST") or "list-type" in environ.get("QUERY_STRING", ""):
                self.count.s3_put_class += 1
            elif method == "GET":
                self.count.s3_get_class += 1
            return body  # DELETE is free
        chunks = list(body)
        call = target.split(".", 1)[1]
        self.count.sqs_calls[call] = self.count.sqs_calls.get(call, 0) + 1
        payload = in_bytes if call == "SendMessage" else sum(len(c) for c in chunks)
        self.count.sqs_units += max(1, math.ceil(payload * 3 / 4 / (64 * 1024)))  # base64 on wire
        return chunks


def start_moto(count: WireCount) -> tuple[object, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    server._server.app = CountingApp(server._server.app, count)  # werkzeug reads .app per call
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def store_for(transport: str, data: Path, endpoint: str) -> tuple[dict, str]:
    """(store config, BurstService transport) of one transport."""
    s3 = {"kind": "s3", "bucket": BUCKET, "endpoint_url": endpoint, **CREDENTIALS}
    if transport == "s3":
        return s3, "store"
    if transport in ("sqs", "per-stage"):
        sqs = {"kind": "sqs", "endpoint_url": endpoint, **CREDENTIALS}
        mode = "queue" if transport == "sqs" else "per-stage"
        return {**sqs, "queue_prefix": f"b{uuid.uuid4().hex[:6]}-", "backing": s3}, mode
    return {"kind": "dir", "root": str(data / "objects")}, transport.replace("dir", "store")


def transport_cost_usd(prices: PriceTable, before, after) -> float:
    sqs, puts, gets = (a - b for a, b in zip(after, before, strict=True))
    return (
        sqs * prices.queue_request_usd + puts * prices.store_put_usd + gets * prices.store_get_usd
    )


async def run_transport(args, transport, repo, work, endpoint, count, x, ref) -> dict:
    store, mode = store_for(transport, work / transport, endpoint)
    svc = BurstService(
        repo,
        platform={"kind": "local"},
        store=store,
        memory_mb=args.memory_mb,
        concurrency=args.workers + 2,
        keep_alive_s=600,
        function_timeout_s=600,
        log_dir=work / transport / "logs",
        transport=mode,
        max_workers=args.workers,
        split=args.split,  # the planner may keep a small model whole: no transport to compare
    )
    prices = PriceTable()
    await svc.start()
    try:
        await svc.plan_for(args.model, args.workers, 1)  # weight slices: not timed
        name = svc._configs[args.model].inputs[0].name
        cold = await svc.infer(args.model, {name: x}, workers=args.workers)
        diff = float(np.abs(next(iter(cold.outputs.values())) - ref).max())
        rows = []
        for _ in range(args.warm):
            before = count.snapshot()
            answer = await svc.infer(args.model, {name: x}, workers=args.workers)
            after = count.snapshot()
            rows.append((answer, transport_cost_usd(prices, before, after)))
            wire = [a - b for a, b in zip(after, before, strict=True)]
    finally:
        await svc.close()
    fn_usd = statistics.median(function_cost_usd(prices, a.invocations) for a, _ in rows)
    tr_usd = statistics.median(c for _, c in rows)
    return {
        "transport": transport,
        "model": args.model,
        "workers": args.workers,
        "warm_p50_ms": statistics.median(a.total_ms for a, _ in rows),
        "warm_min_ms": min(a.total_ms for a, _ in rows),
        "comm_share": statistics.median(a.report.communication_share for a, _ in rows),
        "function_usd": fn_usd,
        "transport_usd": tr_usd,
        "usd_per_request": fn_usd + tr_usd,
        "max_abs_diff": diff,
        "wire_per_request": dict(zip(("sqs_units", "s3_put_class", "s3_get_class"), wire)),
        "counted_store_requests": [answer.store_puts, answer.store_gets, answer.queue_requests],
        # what the gateway's ledger charges from those counts (next to the wire-counted bill)
        "ledger_transport_usd": statistics.median(
            store_cost_usd(prices, a.store_puts, a.store_gets, a.queue_requests) for a, _ in rows
        ),
    }


def print_table(rows: list[dict]) -> None:
    print(
        f"\n{'model':<9} {'transport':<9} {'warm p50':>9} {'vs first':>9} {'comm':>6} "
        f"{'fn $/M req':>11} {'tx $/M req':>11} {'ledger tx':>10} {'total $/M':>10} "
        f"{'max diff':>9}"
    )
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"])  # the first transport run
        r["latency_vs_" + base["transport"]] = r["warm_p50_ms"] / base["warm_p50_ms"]
        print(
            f"{r['model']:<9} {r['transport']:<9} {r['warm_p50_ms']:9.0f} "
            f"{r['latency_vs_' + base['transport']]:8.2f}x {r['comm_share']:6.1%} "
            f"{r['function_usd'] * 1e6:11.2f} {r['transport_usd'] * 1e6:11.2f} "
            f"{r['ledger_transport_usd'] * 1e6:10.2f} "
            f"{r['usd_per_request'] * 1e6:10.2f} {r['max_abs_diff']:9.1e}"
        )


def compare(args, work: Path) -> list[dict]:
    """Export the model once, start moto (for s3/sqs), run each transport; the rows."""
    import boto3
    import torch

    from vmpool.artifact import load_artifact
    from vmpool.export import export_zoo

    torch.set_num_threads(1)
    repo = work / "models"
    export_zoo(args.model, repo, max_batch_size=1)
    shape = load_artifact(repo, args.model).config.inputs[0].shape[1:]
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    with torch.inference_mode():
        ref = load_artifact(repo, args.model).load_module()(torch.from_numpy(x)).numpy()
    count = WireCount()
    server, endpoint = start_moto(count)
    try:
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", **CREDENTIALS
        ).create_bucket(Bucket=BUCKET)
        rows = []
        for transport in args.transports.split(","):
            if transport not in TRANSPORTS:
                raise SystemExit(f"unknown transport {transport!r}; one of {TRANSPORTS}")
            row = asyncio.run(run_transport(args, transport, repo, work, endpoint, count, x, ref))
            print(f"  {transport:<7} warm p50 {row['warm_p50_ms']:7.0f} ms", flush=True)
            rows.append(row)
    finally:
        server.stop()
    print(f"  SQS calls over the run: {count.sqs_calls}")
    return rows


def from_scaling_args(args) -> int:
    """``burst_scaling.py --transports ...``: this comparison for each of its models at its
    largest worker count (spatial split); the table, and JSON beside its own."""
    rows: list[dict] = []
    for model in args.models.split(","):
        one = argparse.Namespace(
            model=model,
            workers=max(int(w) for w in args.workers.split(",")),
            warm=args.warm,
            memory_mb=args.memory_mb,
            split="spatial",
            transports=args.transports,
        )
        print(f"{model}: transports {args.transports} at {one.workers} workers", flush=True)
        rows += compare(one, work_dir("tidegate-transports-"))
    print_table(rows)
    out = args.out.with_name("burst_transports.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"load_avg": os.getloadavg(), "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    return 0


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--transports", default=",".join(TRANSPORTS), help="subset of " + ",".join(TRANSPORTS)
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warm", type=int, default=5, help="warm requests per transport")
    ap.add_argument("--memory-mb", type=int, default=2048)
    ap.add_argument("--split", default="spatial", help="spatial | output | auto (the planner's)")
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/burst_transports.json")
    add_args(ap)
    args = ap.parse_args()
    rows = compare(args, work_dir("tidegate-transports-"))
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"load_avg": os.getloadavg(), "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
