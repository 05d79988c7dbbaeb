"""The plain trace CSV read in chunks: the same trace as line by line across chunk edges (a
10 M-line file held 30 M Python strings at once: 3.2 GB of memory), and the errors still name
the line when a bad one sits in a later chunk."""

from __future__ import annotations

import random

import pytest

from ops import trace_csv
from ops.traces import TraceError, TraceMapping, read_trace


def _text(lines: int, header: str, seed: int = 3) -> str:
    rng = random.Random(seed)
    models, tenants = ["m2", "m1", "", "zeta"], ["b", "", "a", "=x"]
    rows = [
        f"{rng.uniform(0, 600):.6f},{rng.choice(models)},{rng.choice(tenants)}"
        for _ in range(lines)
    ]
    return header + "\n".join(rows) + "\n"


@pytest.mark.parametrize("header", ["timestamp_s,model,tenant\n", "", "crlf"])
def test_a_read_in_many_chunks_is_the_line_by_line_read(tmp_path, monkeypatch, header):
    monkeypatch.setattr(trace_csv, "CHUNK_CHARS", 97)  # ~5 lines a chunk, edges everywhere
    path = tmp_path / "t.csv"
    text = _text(500, header)
    if header == "crlf":  # (a Windows export, with a BOM)
        text = "\ufeff" + _text(500, "timestamp_s,model,tenant\n").replace("\n", "\r\n")
    path.write_bytes(text.encode())
    bulk = trace_csv._bulk(path, TraceMapping())
    by_line = trace_csv._by_line(path, TraceMapping())
    assert bulk is not None and len(bulk) == 500
    assert bulk.arrivals_s.tolist() == by_line.arrivals_s.tolist()
    assert bulk.models == by_line.models and bulk.tenants == by_line.tenants

    def named(t):
        return [(t.models[m], t.tenants[n]) for m, n in zip(t.model_idx, t.tenant_idx)]

    assert named(bulk) == named(by_line)


@pytest.mark.parametrize(
    "bad, says",
    [("oops,m1,a", ":302: timestamp_s 'oops' is not a number"), ("5,m1", None)],
)
def test_a_bad_line_in_a_later_chunk_is_named(tmp_path, monkeypatch, bad, says):
    monkeypatch.setattr(trace_csv, "CHUNK_CHARS", 97)
    lines = _text(400, "timestamp_s,model,tenant\n").splitlines()
    lines[301] = bad  # line 302 of the file
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    assert trace_csv._bulk(path, TraceMapping()) is None  # the line reader decides
    if says:
        with pytest.raises(TraceError, match=says):
            read_trace(path, fmt="csv")
    else:  # a short line where a tenant column exists: read by position, its tenant default
        assert len(read_trace(path, fmt="csv")) == 400


def test_the_azure_2021_reader_holds_a_few_bytes_per_invocation(tmp_path, monkeypatch):
    """Its rows before the trace is built: one str per distinct function and a C double per
    start (a key str and a float object per row were ~220 bytes: 10 M invocations, ~2 GB)."""
    import tracemalloc

    from ops import trace_formats

    rng, n = random.Random(5), 20_000
    funcs = [(f"{rng.getrandbits(256):064x}", f"{rng.getrandbits(256):064x}") for _ in range(9)]
    path = tmp_path / "invocations.csv"
    path.write_text(
        "app,func,end_timestamp,duration\n"
        + "".join(
            f"{a},{f},{i * 0.05 + 1:.6f},0.25\n"
            for i, (a, f) in enumerate(rng.choice(funcs) for _ in range(n))
        )
    )
    held = []
    build = trace_formats._mapped

    def measured(*args):
        held.append(tracemalloc.get_traced_memory()[0] - start)
        return build(*args)

    monkeypatch.setattr(trace_formats, "_mapped", measured)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        trace = read_trace(path, fmt="azure2021")
    finally:
        tracemalloc.stop()
    assert len(trace) == n and len(set(trace.model_idx.tolist())) >= 1
    assert held[0] / n < 40, f"{held[0] / n:.0f} bytes per invocation"
