"""Object counts across model reloads, for ``test_proto25_reload_flat``.

``python -m tests.vmpool.reload_counts REPO DATA_DIR REPLICA_URL`` runs a gateway (static pool on
``REPLICA_URL``, no burst, no gRPC) in a process of its own, unloads and loads ``mlp`` through
the repository API, and prints one JSON line: the live objects after the warm-up and after each
window of reloads, and what each type gained or lost in each window. In its own process the
count is the gateway's (and this thin client's): a pytest worker also holds what earlier tests
left in it."""

from __future__ import annotations

import collections
import gc
import json
import sys
import threading
import time
import weakref

import httpx
import uvicorn

WARM_UP = 15  # (the first reloads warm the client's pool, the stats)
RELOADS = 20
WINDOWS = 2


def serve(app):
    """``app`` on 127.0.0.1, port 0, in a thread: (server, thread, base URL)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:  # (a bound for a broken start only)
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def reload(client: httpx.Client, times: int) -> None:
    for _ in range(times):
        for action in ("unload", "load"):
            r = client.post(f"/v2/repository/models/mlp/{action}")
            assert r.status_code == 200, r.text
    assert client.get("/v2/models/mlp/ready").status_code == 200


def census() -> collections.Counter:
    """Live objects by type once a collection frees nothing more (one pass leaves what weakref
    callbacks of that pass released), dead weak references aside: an sqlite3 connection (the
    ledger's) keeps one per cursor it made and prunes them every 200 cursors (CPython's
    ``_pysqlite_drop_unused_cursor_references``), a sawtooth, not a leak."""
    for _ in range(10):
        if gc.collect() == 0:
            break
    by_type: dict[str, int] = {}  # (a Counter fed a generator fills abc caches on first use)
    for o in gc.get_objects():
        if not (type(o) is weakref.ref and o() is None):
            name = type(o).__qualname__
            by_type[name] = by_type.get(name, 0) + 1
    return collections.Counter(by_type)


def main(repo: str, data_dir: str, replica: str) -> dict:
    from gateway.app import create_app
    from gateway.settings import Settings

    settings = Settings.load(
        None,
        data_dir=data_dir,
        repo=repo,
        grpc_port=-1,
        vm={"provisioner": "static", "urls": [replica]},
        burst={"enabled": False},
    )
    server, thread, url = serve(create_app(settings))
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            reload(client, WARM_UP)
            censuses = [census()]
            for _ in range(WINDOWS):
                reload(client, RELOADS)
                censuses.append(census())
    finally:
        server.should_exit = True
        thread.join(30)
    return {
        "counts": [sum(c.values()) for c in censuses],
        "by_type": [_changed(a, b) for a, b in zip(censuses, censuses[1:])],
    }


def _changed(before: collections.Counter, after: collections.Counter) -> dict[str, int]:
    """What each type gained (or lost) between two censuses."""
    return {t: after[t] - before[t] for t in before | after if after[t] != before[t]}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])), flush=True)
