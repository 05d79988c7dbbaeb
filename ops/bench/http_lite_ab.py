"""Caller CPU per POST of ``burst.faas.http_lite``: this tree's against a git revision's,
interleaved in one process against one loopback server (200 with 7 headers, a 200-byte body).

    python ops/bench/http_lite_ab.py --rev 9d3f7fe [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CALLS = 300
BODY = b"x" * 200
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amz-Log-Result: "
    + b"A" * 160
    + b"\r\nX-Amz-Executed-Version: $LATEST\r\nX-Amzn-Requestid: 1234\r\nDate: x\r\n"
    b"Server: y\r\nContent-Length: 200\r\n\r\n" + BODY
)
HEADERS = {"X-Amz-Invocation-Type": "RequestResponse", "Content-Type": "application/json"}


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # (its dataclass looks itself up)
    spec.loader.exec_module(module)
    return module


async def _handle(reader, writer) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()


async def _run(modules: dict, rounds: int) -> dict[str, list[float]]:
    srv = await asyncio.start_server(_handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    clients = {name: m.LiteHttp("127.0.0.1", port) for name, m in modules.items()}
    cpu_us: dict[str, list[float]] = {name: [] for name in modules}
    for rnd in range(rounds):
        for name in sorted(modules, reverse=bool(rnd % 2)):  # alternate who goes first
            t0 = time.process_time()
            for _ in range(CALLS):
                assert (await clients[name].post("/f", b"{}", HEADERS)).body == BODY
            cpu_us[name].append((time.process_time() - t0) / CALLS * 1e6)
    for client in clients.values():
        await client.close()
    srv.close()
    return cpu_us


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rev", default="HEAD", help="the revision to compare this tree against")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", type=Path, default=ROOT / "ops/bench/results/http_lite_ab.json")
    args = ap.parse_args()
    old = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{args.rev}:burst/faas/http_lite.py"],
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "old.py").write_bytes(old)
        modules = {
            "rev": _load("http_lite_rev", Path(tmp) / "old.py"),
            "tree": _load("http_lite_tree", ROOT / "burst/faas/http_lite.py"),
        }
        cpu_us = asyncio.run(_run(modules, args.rounds))
    med = {name: statistics.median(v) for name, v in cpu_us.items()}
    print(f"process CPU per POST (client and server), median of {args.rounds} x {CALLS}:")
    print(
        f"  {args.rev}: {med['rev']:.1f} us   this tree: {med['tree']:.1f} us   "
        f"ratio {med['tree'] / med['rev']:.3f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rev": args.rev, "cpu_us": cpu_us, "median_us": med}))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
