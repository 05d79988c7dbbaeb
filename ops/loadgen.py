# size: ~355 lines: the closed loop the benches share, the open-loop replay, its per-model
# targets (inputs and SLOs from each model's metadata) and one request's send and answer
"""A closed-loop HTTP load generator (aiohttp: httpx cannot drive high concurrency here)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from urllib.parse import quote

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

REFUSED = "connection refused"  # nothing listens at the URL (any more)
GIVE_UP_AFTER_REFUSED = 20  # this many refusals in a row: the gateway is gone, stop sending


@dataclass
class Sent:
    """What one replayed request got back (``status`` 0: no HTTP answer, ``error`` says why)."""

    index: int
    tenant: str
    sent_s: float  # relative to the replay's start
    latency_ms: float
    status: int
    path: str = ""
    cost_usd: float = 0.0
    cold_starts: int = 0
    error: str = ""
    queued: bool = False  # answered 202 (an async-class tenant's): latency is to its answer


def model_inputs(metadata: dict, batch: int = 1, seed: int = 0) -> dict:
    """Random input tensors shaped by a model's metadata (``-1`` dimensions become ``batch``)."""
    import numpy as np

    from vmpool.wire import DATATYPES

    rng = np.random.default_rng(seed)
    out = {}
    for spec in metadata["inputs"]:
        shape = [batch if d < 0 else d for d in spec["shape"]]
        dtype = np.dtype(DATATYPES[spec["datatype"]])
        if dtype.kind == "f" or spec["datatype"] == "BF16":  # (ml_dtypes' bfloat16 is kind V)
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
    stop: asyncio.Event | None = None,
    slo_ms_by_model: dict[str, float] | None = None,
) -> tuple[list[Sent], float, str]:
    """Send request i at ``arrivals_s[i] / speedup`` after the start, whatever is outstanding
    (open loop: a slow gateway does not slow the offered load), to ``model``, or to
    ``model[i]`` when it is a list (a trace of several models). Returns the answered requests,
    the wall time and why the replay ended early ("" when it did not): ``stop`` set (Ctrl-C:
    requests still in flight are dropped), or the gateway refusing connections
    ``GIVE_UP_AFTER_REFUSED`` times in a row. ``slo_ms_by_model`` gets the models' slo_ms."""

    base = url.rstrip("/")
    stop = stop or asyncio.Event()
    connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=0)
    results: list[Sent] = []
    ended = [""]  # why the replay ended early, "" when it did not
    refused_in_a_row = [0]
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    ) as session:
        per_request = [model] * len(tenants) if isinstance(model, str) else list(model)
        targets = await _targets(session, base, per_request, tenants, keys, slo_ms_by_model)

        async def one(i: int, tenant: str, start: float) -> None:
            key = keys.get(tenant)
            infer_url, body, header_len = targets[per_request[i]]
            sent = await _send_one(session, infer_url, body, header_len, key, start, i, tenant)
            results.append(sent)
            refused_in_a_row[0] = refused_in_a_row[0] + 1 if sent.error == REFUSED else 0
            if refused_in_a_row[0] >= GIVE_UP_AFTER_REFUSED and not stop.is_set():
                ended[0] = f"the gateway refused {GIVE_UP_AFTER_REFUSED} connections in a row"
                stop.set()
            if progress:
                progress.update(1)

        start = time.perf_counter()
        tasks = await _on_schedule(
            arrivals_s, speedup, start, stop, lambda i: one(i, tenants[i], start)
        )
        answered = asyncio.gather(*tasks, return_exceptions=True)
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({answered, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if stop.is_set() and not ended[0]:  # interrupted: what is still in flight is dropped
            ended[0] = "interrupted"
            for task in tasks:
                task.cancel()
        await answered
        wall = time.perf_counter() - start
    return sorted(results, key=lambda s: s.index), wall, ended[0]


async def _targets(session, base: str, per_request: list[str], tenants, keys, slos=None) -> dict:
    """model -> (infer URL, body, header length); metadata asked with the key of the tenant
    of the model's first request (its ``parameters.slo_ms`` into ``slos``)."""
    from vmpool.codec import encode_request
    from vmpool.wire import CodecError

    targets = {}
    for i, name in enumerate(per_request):
        if name not in targets:
            try:
                metadata = await _model_metadata(session, base, name, keys.get(tenants[i]))
            except LookupError as exc:  # a model the gateway does not serve: before any send
                n = per_request.count(name)
                raise RuntimeError(
                    f"{exc}: {n} of the trace's {len(per_request)} requests are for it; send "
                    "them to a served model with --model NAME or a [trace] rule in --config"
                ) from None
            try:
                body, header_len = encode_request(model_inputs(metadata))
            except (KeyError, TypeError, ValueError, CodecError) as exc:  # (a traceback)
                raise RuntimeError(
                    f"GET {base}/v2/models/{name}: no input tensors loadgen can make from its "
                    f"metadata ({type(exc).__name__}: {exc}); numeric inputs with shapes only"
                ) from None
            targets[name] = (f"{base}/v2/models/{_segment(name)}/infer", body, header_len)
            slo_ms = (metadata.get("parameters") or {}).get("slo_ms")
            if slos is not None and type(slo_ms) in (int, float) and 0 < slo_ms < math.inf:
                slos[name] = float(slo_ms)
    return targets


async def _on_schedule(arrivals_s, speedup: float, start: float, stop: asyncio.Event, send):
    """Start ``send(i)`` at each arrival / speedup after ``start`` until ``stop`` is set."""
    tasks = []
    for i, at in enumerate(arrivals_s):
        delay = start + at / speedup - time.perf_counter()
        if delay > 0 and not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        elif i % 64 == 0:
            await asyncio.sleep(0)  # a backlog sent at once still hears Ctrl-C
        if stop.is_set():
            break
        tasks.append(asyncio.create_task(send(i)))
    return tasks


async def _model_metadata(
    session: aiohttp.ClientSession, base: str, model: str, key: str | None
) -> dict:
    try:
        url = f"{base}/v2/models/{_segment(model)}"
        async with session.get(url, headers=_auth(key)) as resp:
            if resp.status == 404 and "model" in (text := await resp.text()):
                raise LookupError(f"the gateway does not serve model {model!r} ({text[:200]})")
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
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise RuntimeError(
            f"nothing answered at {base} ({_failure(exc)}): is the gateway running there?"
        ) from None


def _segment(model: str) -> str:
    """A model name as one path segment ('mlp?x' reached mlp, its POSTs /v2/models/mlp)."""
    return quote(model, safe="")


def _failure(exc: BaseException) -> str:
    """A request that got no HTTP answer, in a few words (the summary counts them by these)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return REFUSED if isinstance(exc.os_error, ConnectionRefusedError) else "cannot connect"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        return "connection lost"
    return type(exc).__name__


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
    status, h, error = 0, {}, ""
    queued = False
    try:
        async with session.post(infer_url, data=body, headers=headers) as r:
            await r.read()
            status, h = r.status, r.headers
        if status == 202 and "location" in h:  # queued: its answer is what was asked for
            queued = True
            status, h = await _answer(session, infer_url, h, _auth(key))
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        status, error = 0, _failure(exc)  # (a queued one: its 202 is no answer)
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
        error,
        queued,
    )


async def _answer(session: aiohttp.ClientSession, infer_url: str, accepted, auth: dict):
    """(status, headers) of a queued request's answer: ``GET Location`` every ``Retry-After``
    (at most 1 s) while it answers 202 (the session's timeout bounds the whole wait). Before,
    the 202's own few milliseconds were taken for the answer's latency."""
    from urllib.parse import urljoin

    url, h = urljoin(infer_url, accepted["location"]), accepted
    give_up = time.perf_counter() + (session.timeout.total or 60.0)
    while time.perf_counter() < give_up or _raise(asyncio.TimeoutError()):
        try:
            wait_s = min(max(float(h.get("retry-after", 1)), 0.01), 1.0)
        except ValueError:
            wait_s = 1.0
        await asyncio.sleep(wait_s)
        async with session.get(url, headers=auth) as r:
            await r.read()
            if r.status != 202:
                return r.status, r.headers
            h = r.headers


def _raise(exc: BaseException):
    raise exc


def _auth(key: str | None) -> dict:
    return {"authorization": f"Bearer {key}"} if key else {}
