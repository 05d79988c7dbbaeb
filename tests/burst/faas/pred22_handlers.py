"""Handlers for the warm-memory test (pred22): one frees what it allocated, one reports RSS."""

from __future__ import annotations

_PIN: list = []


def churn(event, context):
    """Allocate ``mb`` MB in 64 KB blocks (on the heap, under the mmap threshold), keep one
    small block past them (so the freed space is not the heap's top, which glibc trims by
    itself past its threshold), free the rest: what a request's activations do."""
    blocks = [bytearray(b"x") * (64 << 10) for _ in range(event["mb"] * 16)]  # written to
    _PIN.append(bytearray(1024))
    del blocks
    return {"rss_mb": rss_mb()}


def rss(event, context):
    return {"rss_mb": rss_mb()}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
