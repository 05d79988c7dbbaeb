"""sim_vs_real simulates the VM boot the live pool measured (its median replica start), not
the configured delay plus a guessed 3 s model-server start, and says which it used."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ops.bench.sim_vs_real_boot import ADMIN_KEY, record_boot_s, vm_boot_s


def _admin(boot_s: float):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            ok = (
                self.path == "/admin/paths"
                and self.headers["Authorization"] == f"Bearer {ADMIN_KEY}"
            )
            body = json.dumps({"vm": {"expected_boot_s": boot_s}} if ok else {"error": "no"})
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_measured_boot_is_simulated_and_named(tmp_path):
    server = _admin(17.25)
    try:
        record_boot_s(f"http://127.0.0.1:{server.server_port}", tmp_path)
    finally:
        server.shutdown()
    assert vm_boot_s(tmp_path, 10.0) == (17.25, "measured by the pool over the replay")


def test_without_a_measurement_the_guess_is_said(tmp_path):
    record_boot_s("http://127.0.0.1:9", tmp_path)  # (nothing listens: nothing recorded)
    boot_s, source = vm_boot_s(tmp_path, 10.0)
    assert boot_s == 13.0 and "guessed" in source
