"""SIGTERM of `tidegate serve` while gRPC streams send requests (session 21's concurrency
audit): every request the gateway ran and charged reaches its client, a request sent after the
stop is answered "the gateway is shutting down" (not run), and nothing the gateway started keeps
running."""

from __future__ import annotations

import queue
import re
import signal
import sqlite3
import threading
import time

import numpy as np
import pytest

from vmpool.export import export_zoo
from vmpool.procs import kill_group

from .test_crash_no_loss import _alive, _descendants, _serve

GRPC = re.compile(rb"gRPC \(tritonclient\.grpc\): (127\.0\.0\.1:\d+)")
IN_FLIGHT = 4  # requests each stream keeps out


class Stream:
    """A tritonclient gRPC stream keeping ``IN_FLIGHT`` delay requests out, until it ends."""

    def __init__(self, target: str, name: str):
        import tritonclient.grpc as grpcclient

        self.grpcclient, self.name = grpcclient, name
        self.client = grpcclient.InferenceServerClient(target)
        self.answered: list[str] = []
        self.errors: list[str] = []  # the "shutting down" answer
        self.request_errors: list[str] = []
        self.events: queue.Queue = queue.Queue()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _send(self) -> None:
        x = self.grpcclient.InferInput("input", [1, 16], "FP32")
        x.set_data_from_numpy(np.ones((1, 16), np.float32))
        self.sent += 1
        self.client.async_stream_infer("delay", [x], request_id=f"{self.name}-{self.sent}")

    def _run(self) -> None:
        self.client.start_stream(
            callback=lambda result, error: self.events.put((result, error)),
            headers={"x-tidegate-route": "vm"},  # (the delay model on the burst path: no point)
        )
        for _ in range(IN_FLIGHT):
            self._send()
        while True:
            try:
                result, error = self.events.get(timeout=120)
            except queue.Empty:
                self.errors.append("no answer in 120 s")
                return
            if error is not None and "shutting down" in str(error):
                self.errors.append(str(error))  # the gateway stops: stop sending, close
                break
            elif error is not None:
                self.request_errors.append(str(error))
                if "StatusCode." in str(error):  # the stream's end
                    break
            else:
                self.answered.append(result.get_response().id)
            try:
                self._send()
            except Exception:  # the stream ended meanwhile: its callback says why
                pass
        self.client.stop_stream()


@pytest.mark.slow
def test_sigterm_with_grpc_streams_in_flight_loses_no_charged_answer(tmp_path):
    """Before, the streams took requests until gRPC's 5 s grace ran out; then the server cut
    them ('Cancelling all calls') with requests in flight that it had run and charged (4 of
    4 streams: a ledger row, status 200, and no answer at the client)."""
    data = tmp_path / "data"
    export_zoo("delay", data / "models", options={"delay_ms": 300.0, "per_item_ms": 0.0})
    log = tmp_path / "serve.log"
    proc, _ = _serve(data, {"TIDEGATE_GRPC_PORT": "0"}, log)
    try:
        target = GRPC.search(log.read_bytes()).group(1).decode()
        streams = [Stream(target, f"s{i}") for i in range(3)]
        for s in streams:
            s.thread.start()
        deadline = time.monotonic() + 120
        while not all(len(s.answered) >= 2 for s in streams):
            assert time.monotonic() < deadline, [s.errors for s in streams]
            time.sleep(0.05)
        children = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)  # each stream has requests out
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        for s in streams:
            s.thread.join(60)
    finally:
        kill_group(proc.pid)

    with sqlite3.connect(data / "ledger.sqlite") as db:
        charged = {r[0] for r in db.execute("SELECT id FROM requests WHERE status = 200")}
    answered = {rid for s in streams for rid in s.answered}
    assert charged - answered == set(), [
        (s.name, s.sent, s.answered[-3:], s.errors) for s in streams
    ]
    for s in streams:
        assert len(s.errors) == 1 and "shutting down" in s.errors[0], s.errors
        assert s.request_errors == []
    assert not [pid for pid, start in children.items() if _alive(pid, start)]
