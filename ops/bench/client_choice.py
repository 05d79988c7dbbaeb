"""Which HTTP client for the gateway -> replica hop: aiohttp vs httpx, same server, same load.

Starts one model server (the mlp, so the client is the bottleneck), then drives it from this
process at c=1 and c=16 with binary tensors through each client. Prints a table and writes JSON.

    python ops/bench/client_choice.py [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench.procs import work_dir  # noqa: E402

from ops.bench.gateway_overhead import start, stop, wait_http  # noqa: E402
from vmpool.codec import encode_request  # noqa: E402
from vmpool.procs import free_port, model_server_command  # noqa: E402


async def drive(post, concurrency: int, duration_s: float) -> dict:
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def client():
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await post()
            latencies.append((time.perf_counter() - t0) * 1000.0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
    }


async def with_aiohttp(url, body, headers, c, duration):
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def post():
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200

        await drive(post, c, 0.5)
        return await drive(post, c, duration)


async def with_httpx(url, body, headers, c, duration):
    import httpx

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:

        async def post():
            resp = await client.post(url, content=body, headers=headers)
            assert resp.status_code == 200

        await drive(post, c, 0.5)
        return await drive(post, c, duration)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/client_choice.json")
    args = ap.parse_args()
    from vmpool.export import export_zoo

    work = work_dir("tidegate-client-")
    export_zoo("mlp", work / "models")
    port = free_port()
    server = start(model_server_command(work / "models", port), work / "server.log")
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready", server)
        x = np.zeros((1, 784), np.float32)
        body, hl = encode_request({"input": x})
        headers = {
            "Inference-Header-Content-Length": str(hl),
            "Content-Type": "application/octet-stream",
        }
        url = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
        for name, fn in (("aiohttp", with_aiohttp), ("httpx", with_httpx)):
            for c in (1, 16):
                r = asyncio.run(fn(url, body, headers, c, args.duration))
                rows.append({"client": name, "concurrency": c, **r})
                print(
                    f"{name:<8} c={c:<3} {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms",
                    flush=True,
                )
    finally:
        stop(server)
    by = {(r["client"], r["concurrency"]): r["throughput_rps"] for r in rows}
    ratio = by[("aiohttp", 16)] / by[("httpx", 16)]
    print(f"\naiohttp / httpx throughput at c=16: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "aiohttp_over_httpx_c16": ratio}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
