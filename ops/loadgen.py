"""A closed-loop HTTP load generator (aiohttp: httpx cannot drive high concurrency here)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        k = min(len(data) - 1, max(0, int(round(q / 100.0 * (len(data) - 1)))))
        return data[k]

    @property
    def throughput_rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> dict:
        return {"concurrency": self.concurrency, "requests": len(self.latencies_ms),
                "errors": self.errors, "p50_ms": self.percentile(50),
                "p90_ms": self.percentile(90), "p99_ms": self.percentile(99),
                "throughput_rps": self.throughput_rps, "elapsed_s": self.elapsed_s}


async def closed_loop(url: str, body: bytes, headers: dict, *, concurrency: int,
                      duration_s: float = 10.0, warmup_s: float = 1.0,
                      timeout_s: float = 60.0) -> LoadResult:
    """``concurrency`` clients each send the next request as soon as the last one is answered."""
    result = LoadResult(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        measure_from = start + warmup_s
        stop_at = measure_from + duration_s

        async def client() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    status = 0
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if status == 200:
                        result.latencies_ms.append((t1 - t0) * 1000.0)
                    else:
                        result.errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - measure_from
    return result
