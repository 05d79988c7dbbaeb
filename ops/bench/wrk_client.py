"""Closed-loop load from wrk (C, one thread): a load generator that leaves the CPU to what it
measures.

On this 2-core machine the aiohttp load generator spends 550-600 us of CPU per request, as much
as the small ``mlp`` model server itself, so a third of the machine goes to the client and every
server on the path competes with it. wrk spends a few tens of us. ``closed_loop_wrk`` returns
the same ``LoadResult`` as ``ops.loadgen.closed_loop``: wrk reports latency as a histogram, so
the per-request latencies are rebuilt from its 0.1 % quantiles (999 of them), one per request
answered, which keeps counts, throughput and percentiles (to 0.1 %) as wrk measured them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ops.loadgen import LoadResult

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write("TG_SUMMARY ", summary.requests, " ", summary.duration, " ",
           e.status + e.connect + e.read + e.write + e.timeout, "\\n")
  io.write("TG_QUANTILES")
  for i = 1, 999 do io.write(" ", latency:percentile(i / 10)) end
  io.write("\\n")
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(data: bytes) -> str:
    return (
        '"'
        + "".join(f"\\{b:03d}" if b < 32 or b > 126 or b in (34, 92) else chr(b) for b in data)
        + '"'
    )


def script(body: bytes, headers: dict[str, str]) -> str:
    """A wrk script that POSTs ``body`` with ``headers`` and prints what ``parse`` reads."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}"]
    lines += [
        f"wrk.headers[{_lua_string(k.encode())}] = {_lua_string(v.encode())}"
        for k, v in headers.items()
    ]
    return "\n".join(lines) + "\n" + _DONE


def parse(output: str, concurrency: int) -> LoadResult:
    """The ``LoadResult`` of one wrk run from its output (see the module docstring)."""
    summary = quantiles = None
    for line in output.splitlines():
        if line.startswith("TG_SUMMARY "):
            summary = [float(x) for x in line.split()[1:]]
        elif line.startswith("TG_QUANTILES"):
            quantiles = np.array([float(x) for x in line.split()[1:]]) / 1000.0  # us -> ms
    if summary is None or quantiles is None:
        raise RuntimeError(f"wrk printed no summary:\n{output[-2000:]}")
    requests, duration_us, errors = int(summary[0]), summary[1], int(summary[2])
    answered = max(0, requests - errors)
    levels = (np.arange(answered) + 0.5) / max(1, answered) * 100.0
    latencies = np.interp(levels, np.arange(1, 1000) / 10.0, quantiles)
    return LoadResult(
        concurrency,
        latencies_ms=latencies.tolist(),
        errors=errors,
        elapsed_s=duration_us / 1e6,
        statuses={200: answered, **({0: errors} if errors else {})},
    )


def closed_loop_wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.5,
) -> LoadResult:
    """``concurrency`` connections, each sending its next request when the last is answered,
    for ``duration_s`` after ``warmup_s`` of the same load (discarded)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script(body, headers))
    try:
        warm = parse(_wrk(f.name, url, concurrency, warmup_s), concurrency) if warmup_s else None
        result = parse(_wrk(f.name, url, concurrency, duration_s), concurrency)
    finally:
        Path(f.name).unlink(missing_ok=True)
    if warm is not None:
        result.warmup_requests = len(warm.latencies_ms) + warm.errors
    return result


def _wrk(script_path: str, url: str, concurrency: int, seconds: float) -> str:
    # (--timeout: wrk's default of 2 s dropped resnet18's answers at c=16 on a loaded host, ~1.1 s
    # p50, as errors, so the gateway and even the bare relay lost a quarter of their throughput)
    args = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1.0, seconds):g}s", "--timeout", "60s"]
    args += ["-s", script_path, url]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout  # whole s
