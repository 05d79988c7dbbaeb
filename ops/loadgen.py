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
    warmup_requests: int = 0  # answered before measuring began (for CPU time per request)

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
        return {
            "concurrency": self.concurrency,
            "requests": len(self.latencies_ms),
            "errors": self.errors,
            "p50_ms": self.percentile(50),
            "p90_ms": self.percentile(90),
            "p99_ms": self.percentile(99),
            "throughput_rps": self.throughput_rps,
            "elapsed_s": self.elapsed_s,
        }


async def closed_loop(
    url: str,
    body: bytes,
    headers: dict,
    *,
    concurrency: int,
    duration_s: float = 10.0,
    warmup_s: float = 1.0,
    timeout_s: float = 60.0,
) -> LoadResult:
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
                if t0 < measure_from:
                    result.warmup_requests += 1
                else:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if status == 200:
                        result.latencies_ms.append((t1 - t0) * 1000.0)
                    else:
                        result.errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - measure_from
    return result


# -- open-loop trace replay ------------------------------------------------------------------


@dataclass
class Sent:
    """What one replayed request got back."""

    index: int
    tenant: str
    sent_s: float  # relative to the replay's start
    latency_ms: float
    status: int
    path: str = ""
    cost_usd: float = 0.0
    cold_starts: int = 0


def model_inputs(metadata: dict, batch: int = 1, seed: int = 0) -> dict:
    """Random input tensors shaped by a model's metadata (``-1`` dimensions become ``batch``)."""
    import numpy as np

    from vmpool.wire import DATATYPES

    rng = np.random.default_rng(seed)
    out = {}
    for spec in metadata["inputs"]:
        shape = [batch if d < 0 else d for d in spec["shape"]]
        dtype = np.dtype(DATATYPES[spec["datatype"]])
        if dtype.kind == "f":
            out[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        else:
            out[spec["name"]] = np.zeros(shape, dtype=dtype)
    return out


async def replay(
    url: str,
    model: str | list[str],
    arrivals_s,
    tenants: list[str],
    keys: dict[str, str],
    *,
    speedup: float = 1.0,
    timeout_s: float = 60.0,
    progress=None,
    max_in_flight: int = 2000,
) -> tuple[list[Sent], float]:
    """Send request i at ``arrivals_s[i] / speedup`` after the start, whatever is outstanding
    (open loop: a slow gateway does not slow the offered load), to ``model``, or to
    ``model[i]`` when it is a list (a trace of several models). Returns results and wall time."""
    from vmpool.codec import encode_request

    base = url.rstrip("/")
    connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=0)
    results: list[Sent] = []
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as session:
        per_request = [model] * len(tenants) if isinstance(model, str) else list(model)
        targets = {}  # model -> (infer URL, body, header length)
        for i, name in enumerate(per_request):
            if name not in targets:  # asked with the key of its first request's tenant
                metadata = await _model_metadata(session, base, name, keys.get(tenants[i]))
                body, header_len = encode_request(model_inputs(metadata))
                targets[name] = (f"{base}/v2/models/{name}/infer", body, header_len)

        async def one(i: int, tenant: str, start: float) -> None:
            key = keys.get(tenant)
            infer_url, body, header_len = targets[per_request[i]]
            results.append(
                await _send_one(session, infer_url, body, header_len, key, start, i, tenant)
            )
            if progress:
                progress.update(1)

        start = time.perf_counter()
        tasks = []
        for i, at in enumerate(arrivals_s):
            delay = start + at / speedup - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, tenants[i], start)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    return sorted(results, key=lambda s: s.index), wall


async def _model_metadata(
    session: aiohttp.ClientSession, base: str, model: str, key: str | None
) -> dict:
    try:
        async with session.get(f"{base}/v2/models/{model}", headers=_auth(key)) as resp:
            if resp.status != 200:
                raise RuntimeError(
                    f"GET /v2/models/{model} answered {resp.status}: {(await resp.text())[:200]}"
                )
            return await resp.json()
    except aiohttp.ClientResponseError as exc:  # not HTTP, or not JSON (e.g. the gRPC port)
        first = str(exc.message).strip().splitlines()[0] if exc.message else type(exc).__name__
        raise RuntimeError(
            f"{base} did not answer GET /v2/models/{model} as a Tidegate gateway ({first}); "
            "is --url the gateway's HTTP address?"
        ) from None


async def _send_one(
    session: aiohttp.ClientSession,
    infer_url: str,
    body: bytes,
    header_len: int,
    key: str | None,
    start: float,
    index: int,
    tenant: str,
) -> Sent:
    """One inference request; a transport error is recorded as status 0, not raised."""
    from vmpool.wire import HEADER_LENGTH

    headers = {
        HEADER_LENGTH: str(header_len),
        "content-type": "application/octet-stream",
        **_auth(key),
    }
    t0 = time.perf_counter()
    status, h = 0, {}
    try:
        async with session.post(infer_url, data=body, headers=headers) as r:
            await r.read()
            status, h = r.status, r.headers
    except (aiohttp.ClientError, asyncio.TimeoutError):
        pass
    ms = (time.perf_counter() - t0) * 1000.0
    return Sent(
        index,
        tenant,
        t0 - start,
        ms,
        status,
        h.get("x-tidegate-path", ""),
        float(h.get("x-tidegate-cost-usd", 0) or 0),
        int(h.get("x-tidegate-cold-starts", 0) or 0),
    )


def _auth(key: str | None) -> dict:
    return {"authorization": f"Bearer {key}"} if key else {}
