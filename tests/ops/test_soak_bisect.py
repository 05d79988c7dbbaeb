"""ops/bench/soak.py bisects what grows: ``--only KIND`` drives that kind alone (no admin
policy change mixed in), ``--gateway-env`` reaches the gateway's environment, ``--probe`` runs
it under ops/bench/rss_probe.py; the probe names a container that grows between its lines,
and the sampler splits the gateway's RSS into anonymous and file-backed memory."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections import Counter

from ops.bench import rss_probe, soak
from ops.bench.soak_sample import anon_file_mb, per_request, slopes_per_hour


class FakeTime:
    """``time`` and ``asyncio`` for Traffic.run: its clock moves only when it sleeps."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)

    def __getattr__(self, name):
        return getattr(asyncio, name)


def _kinds_sent(monkeypatch, argv: list[str]) -> tuple[Counter, int]:
    monkeypatch.setattr(sys, "argv", ["soak.py", *argv])
    args = soak.parse_args()
    traffic = object.__new__(soak.Traffic)  # no model, no codec: only the arrival loop
    traffic.rng, traffic.counts, traffic.grpc = __import__("random").Random(7), Counter(), None
    sent: Counter = Counter()

    async def one(session, kind):
        sent[kind] += 1

    async def put_policy(session):
        sent["put_policy"] += 1

    traffic.one, traffic.put_policy = one, put_policy
    fake = FakeTime()
    monkeypatch.setattr(soak, "time", fake)
    monkeypatch.setattr(soak, "asyncio", fake)
    asyncio.run(traffic.run(None, 20.0, 50.0, 64, args.mix))
    return sent, len(args.mix)


def test_only_drives_the_named_kinds_and_no_policy_change(monkeypatch):
    sent, _ = _kinds_sent(monkeypatch, ["--only", "grpc", "--only", "report"])
    assert set(sent) == {"grpc", "report"}
    sent, n = _kinds_sent(monkeypatch, [])
    assert n == len(soak.MIX) and sent["put_policy"] == 1 and len(sent) > 5


def test_gateway_env_and_probe_reach_the_gateway_command(monkeypatch, tmp_path):
    argv = ["--gateway-env", "MALLOC_ARENA_MAX=2", "--probe", str(tmp_path / "p.jsonl")]
    monkeypatch.setattr(sys, "argv", ["soak.py", *argv, "--probe-args=--tracemalloc"])
    args = soak.parse_args()
    cmd = soak.gateway_command(args, tmp_path / "soak.toml")
    assert cmd[1].endswith("ops/bench/rss_probe.py") and "--tracemalloc" in cmd
    assert cmd[cmd.index("--") + 1 :] == ["serve", "--config", str(tmp_path / "soak.toml")]
    assert dict(kv.split("=", 1) for kv in args.gateway_env) == {"MALLOC_ARENA_MAX": "2"}
    monkeypatch.setattr(sys, "argv", ["soak.py"])
    assert soak.gateway_command(soak.parse_args(), tmp_path / "s.toml")[1:3] == ["-m", "ops"]


def test_the_probe_follows_a_container_that_grows():
    grows: list = [[] for _ in range(30_000)]  # gc-tracked items
    gc.collect()
    gc.disable()  # a collection of earlier tests' garbage in between hid the growth (-55k)
    try:
        first = rss_probe.probe_line(0.0, rss_probe._libc(), None, 10)
        grows.extend([] for _ in range(70_000))
        last = rss_probe.probe_line(0.0, rss_probe._libc(), None, 10)
    finally:
        gc.enable()
    before = {i: n for _, n, i, _ in first["largest"]}
    after = {i: n for _, n, i, _ in last["largest"]}
    assert before[id(grows)] == 30_000 and after[id(grows)] == 100_000
    assert last["objects"] >= first["objects"] + 70_000
    assert last["rss_mb"] > 0 and last["heap_arena_mb"] >= last["heap_used_mb"] > 0
    del grows
    gc.collect()


def test_the_sampler_splits_rss_into_anonymous_and_file_backed():
    split = anon_file_mb(os.getpid())
    rss_mb = (
        int(open(f"/proc/{os.getpid()}/statm").read().split()[1])
        * os.sysconf("SC_PAGE_SIZE")
        / 2**20
    )
    assert split["gateway.anon_mb"] > 0 and split["gateway.file_mb"] > 0
    assert abs(split["gateway.anon_mb"] + split["gateway.file_mb"] - rss_mb) < 0.05 * rss_mb
    assert anon_file_mb(2**22 + 12345) == {}  # no such process: nothing, not an error


def test_slopes_and_per_request_start_after_the_warmup():
    """The gateway's RSS falls ~140 MB a few minutes in (its start-up heap given back), then
    creeps: the slope from --warmup-min on is the creep, not the fall."""
    rss = [540, 541, 542, 401, 402, 403, 404, 405]  # a sample a minute, +1 MB/min after the fall
    samples = [
        {"t_s": 60.0 * i, "requests": 100 * i, "gateway.rss_mb": float(v), "load1": 1.0}
        for i, v in enumerate(rss)
    ]
    assert slopes_per_hour(samples)["gateway.rss_mb"] < 0  # whole run: the fall dominates
    assert slopes_per_hour(samples, 180.0)["gateway.rss_mb"] == 60.0
    assert per_request(samples, 180.0)["gateway.rss_mb"] == 0.01  # 4 MB over 400 requests
    assert slopes_per_hour(samples, 3600.0) == slopes_per_hour(samples)  # too few: as before


def test_the_probe_counts_what_sqlite_holds():
    import sqlite3

    db = sqlite3.connect(":memory:")
    before = rss_probe.sqlite_mb()["sqlite_mb"]
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 100,)] * 20_000)  # ~2 MB of pages
    assert rss_probe.sqlite_mb()["sqlite_mb"] >= before + 1.5
    db.close()
