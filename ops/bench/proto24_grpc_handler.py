"""What serving ModelInfer as a client-streaming method costs (proto24: so that a message gRPC's
core refuses past the size limit reaches a handler and is counted).

One grpc.aio server with an echo method registered both ways, unary-unary and stream-unary
(the handler takes the first message), one client calling each sequentially with a 3.2 KB
message (an mlp request), interleaved rounds so drift hits both alike. Prints a table and
writes JSON. Take the lock: ``flock /work/coord/bench.lock python ops/bench/proto24_grpc_handler.py``.

    python ops/bench/proto24_grpc_handler.py [--calls 500] [--rounds 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import grpc


async def _unary(request: bytes, context) -> bytes:
    return request


async def _first(requests, context) -> bytes:
    async for request in requests:
        return request
    return b""


async def measure(calls: int, rounds: int, size: int) -> dict[str, list[float]]:
    """us per call, per round, for each registration."""
    handlers = {
        "unary": grpc.unary_unary_rpc_method_handler(
            _unary, request_deserializer=bytes, response_serializer=bytes
        ),
        "stream-unary": grpc.stream_unary_rpc_method_handler(
            _first, request_deserializer=bytes, response_serializer=bytes
        ),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    payload = b"x" * size
    out: dict[str, list[float]] = {name: [] for name in handlers}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stubs = {
                name: channel.unary_unary(
                    f"/bench/{name}", request_serializer=bytes, response_deserializer=bytes
                )
                for name in handlers
            }
            for stub in stubs.values():  # warm both
                for _ in range(calls // 2):
                    await stub(payload)
            for _ in range(rounds):
                for name, stub in stubs.items():
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        await stub(payload)
                    out[name].append((time.perf_counter() - t0) / calls * 1e6)
    finally:
        await server.stop(0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--size", type=int, default=3200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rounds = asyncio.run(measure(args.calls, args.rounds, args.size))
    medians = {name: statistics.median(v) for name, v in rounds.items()}
    base = medians["unary"]
    print(f"{'registration':<14} {'us/call (median)':>17} {'vs unary':>9}")
    for name, us in medians.items():
        print(f"{name:<14} {us:>17.0f} {us / base:>9.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds_us": rounds, "median_us": medians, **vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
