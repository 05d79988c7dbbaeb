"""The open-loop load of the autoscaling benchmark: seeded arrivals sent with aiohttp, each
answer recorded with its path and cost, the gateway's replica counts sampled every second,
and the function-billing counters scraped from /metrics before and after."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np


@dataclass
class Record:
    sent_s: float
    latency_ms: float
    status: int
    path: str
    cost_usd: float
    error: str = ""  # an error answer's body (or the client's exception), for the breakdown
    request_id: str = ""  # the ledger row's id (the routing reason is read from there)
    cold_starts: int = 0  # function instances this request started cold


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    samples: list[tuple] = field(default_factory=list)  # (t, desired, ready, booting, draining)


def drive_process(url: str, times: np.ndarray, body: bytes) -> tuple:
    """One scenario's load: scrape the billing counters, send, scrape again.
    Returns (Run, before, after)."""
    before = asyncio.run(scrape(url))
    run = Run()
    asyncio.run(drive(url, times, body, run))
    return run, before, asyncio.run(scrape(url))


async def drive(url: str, times: np.ndarray, body: bytes, run: Run) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
        t0 = time.perf_counter()

        async def one(sent_s: float, request_id: str) -> None:
            start_s = time.perf_counter()
            headers = {"content-type": "application/json", "x-request-id": request_id}
            try:
                async with session.post(
                    f"{url}/v2/models/delay/infer", data=body, headers=headers
                ) as r:
                    answer = await r.read()
                    rec = Record(
                        sent_s,
                        (time.perf_counter() - start_s) * 1e3,
                        r.status,
                        r.headers.get("x-tidegate-path", "-"),
                        float(r.headers.get("x-tidegate-cost-usd", 0.0)),
                        "" if r.status == 200 else answer[:200].decode(errors="replace"),
                        request_id,
                        int(r.headers.get("x-tidegate-cold-starts", 0)),
                    )
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                took_ms = (time.perf_counter() - start_s) * 1e3
                rec = Record(sent_s, took_ms, 599, "-", 0.0, f"client: {exc!r}"[:200], request_id)
            run.records.append(rec)

        async def sampler() -> None:
            while True:
                try:
                    async with session.get(f"{url}/admin/paths") as r:
                        vm = (await r.json())["vm"]
                    run.samples.append(
                        (
                            time.perf_counter() - t0,
                            vm["desired"],
                            vm["ready"],
                            vm["booting"],
                            vm["draining"],
                        )
                    )
                except (aiohttp.ClientError, asyncio.TimeoutError, KeyError):
                    pass
                await asyncio.sleep(1.0)

        sampling = asyncio.ensure_future(sampler())
        tasks = []
        for i, sent_s in enumerate(times):
            delay = t0 + sent_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(float(sent_s), f"bench-{i}")))
        await asyncio.gather(*tasks)
        sampling.cancel()


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
        text = await r.text()
    out = {}
    for name in (
        "tidegate_function_billed_seconds_total",
        "tidegate_warm_functions_cost_usd_total",
    ):
        values = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
        out[name] = sum(float(v) for v in values)
    return out
