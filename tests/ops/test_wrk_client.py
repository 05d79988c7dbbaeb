"""The wrk load generator of the benchmarks (ops/bench/wrk_client.py): the exact body and headers
reach a real loopback server, and counts and percentiles come back as wrk measured them."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ops.bench.wrk_client import closed_loop_wrk, parse

BODY = bytes(range(256)) + b'"\\\n{"inputs": []}\x00'  # every byte, quotes, backslash, NUL


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[bytes, str | None]] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.seen.append((body, self.headers.get("Inference-Header-Content-Length")))
        status = 200 if body == BODY else 400
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_the_exact_body_and_headers_reach_the_server_and_answers_are_counted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v2/models/m/infer"
        result = closed_loop_wrk(
            url,
            BODY,
            {"Inference-Header-Content-Length": "17"},
            concurrency=2,
            duration_s=1,
            warmup_s=0,
        )
    finally:
        server.shutdown()
    assert _Recorder.seen and all(seen == (BODY, "17") for seen in _Recorder.seen)
    assert result.errors == 0 and len(result.latencies_ms) > 0
    assert len(_Recorder.seen) >= len(result.latencies_ms)
    assert 0 < result.percentile(50) <= result.percentile(99)


def test_parse_rebuilds_one_latency_per_answer_from_the_quantiles():
    quantiles_us = " ".join(str(1000 + i) for i in range(1, 1000))  # 1.001 .. 1.999 ms
    out = f"noise\nTG_SUMMARY 1005 2000000 5\nTG_QUANTILES {quantiles_us}\n"
    result = parse(out, concurrency=4)
    assert len(result.latencies_ms) == 1000 and result.errors == 5
    assert result.elapsed_s == 2.0 and result.throughput_rps == 500.0
    assert result.percentile(50) == pytest.approx(1.5, abs=0.002)
    with pytest.raises(RuntimeError, match="no summary"):
        parse("wrk: connection refused", concurrency=1)
