"""What else keeps the host busy while the embedded function runtime starts instances, measured
for the simulator (``[simulate] host_cpu_ms_per_request`` and ``vm_replica_cores``,
``ops/sim/cold_share.py``).

- CPU per request: during ``sim_vs_real.py``'s calibration probe (a steady light load, one VM
  replica, no spill), the CPU the gateway's process session (the gateway, its local model
  servers, the function runtime) and the load generator spent, from /proc, less what the
  session spends idle (measured just before, over ``IDLE_S``), per request sent. The load
  generator's own start-up is left out: its CPU is read from ``SKIP_S`` into the probe on.
- A serving replica's cores: its torch threads (the gateway's default, cores / replicas, at
  least 1) x the share of a batch that computes: the profile's CPU time of the model's nodes
  (``node_ms``, thread time) over its VM service time at batch 1 (wall). The ``delay`` model
  sleeps: ~0.
- CPU per warm burst invocation (``[simulate] fn_warm_cpu_ms``): after the calibration probe
  (one replica, nothing scaling; the bench then restarts the gateway, so the replay starts
  with no warm instance, as the simulation does), ~60 requests forced onto the burst path
  (``X-Tidegate-Route: burst``) one at a time, after one that starts an instance: what the
  session and the function instances (processes of their own sessions, started by it) spent
  per request, less the session's idle CPU (measured again just before) and the gateway's
  CPU per request already counted above (every arrival is charged that).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

IDLE_S, SKIP_S, POLL_S = 5.0, 3.0, 0.2
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def session_cpu_s(sid: int) -> float:
    """User + system CPU seconds of the processes in session ``sid`` (those alive now)."""
    total = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            fields = _stat(pid)
            if fields is not None and int(fields[3]) == sid:
                total += int(fields[11]) + int(fields[12])
    return total / TICK


def _cpu_by_pid(sid: int) -> dict[str, int]:
    """CPU ticks of each process of session ``sid`` and of the function instances its
    processes started (the local runtime runs each in a session of its own)."""
    stats = {pid: _stat(pid) for pid in os.listdir("/proc") if pid.isdigit()}
    session = {pid for pid, f in stats.items() if f is not None and int(f[3]) == sid}
    return {
        pid: int(f[11]) + int(f[12])
        for pid, f in stats.items()
        if f is not None and (pid in session or f[1] in session)
    }


def _cpu_since(before: dict[str, int], sid: int) -> float:
    """CPU seconds the processes alive now spent since ``before`` (one that exited, e.g. a VM
    replica scaled in, takes its past CPU away from a plain sum)."""
    return sum(t - before.get(pid, 0) for pid, t in _cpu_by_pid(sid).items()) / TICK


def _post(url: str, body: bytes, header_len: int) -> None:
    import urllib.request

    from vmpool.wire import HEADER_LENGTH

    headers = {
        HEADER_LENGTH: str(header_len),
        "content-type": "application/octet-stream",
        "x-tidegate-route": "burst",
    }
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        resp.read()


def probe_warm_cpu(url: str, model: str, sid: int, idle_cores: float, n: int = 60) -> float:
    """CPU ms a warm burst invocation adds on this host (see the module docstring), beyond
    the per-request CPU the session spends anyway (``gateway_ms``, subtracted by the caller)."""
    import urllib.request

    from ops.loadgen import model_inputs
    from vmpool.codec import encode_request

    with urllib.request.urlopen(f"{url}/v2/models/{model}", timeout=30) as resp:
        body, header_len = encode_request(model_inputs(json.loads(resp.read())))
    infer = f"{url}/v2/models/{model}/infer"
    _post(infer, body, header_len)  # starts the instance (its cold start is left out)
    time.sleep(1.0)
    t0, cpu0 = time.monotonic(), _cpu_by_pid(sid)
    for _ in range(n):
        _post(infer, body, header_len)
        time.sleep(0.05)
    span = time.monotonic() - t0
    used = _cpu_since(cpu0, sid) - idle_cores * span
    return max(used, 0.0) * 1000.0 / n


def add_warm_cpu(path: Path, url: str, model: str, sid: int) -> None:
    """Measure a warm burst invocation's CPU on the gateway at ``url`` (session ``sid``) and
    add it to the measurement at ``path`` (``warm_burst_cpu_ms_per_request``)."""
    idle0 = _cpu_by_pid(sid)
    time.sleep(IDLE_S)
    idle_cores = _cpu_since(idle0, sid) / IDLE_S
    cpu = json.loads(path.read_text())
    try:
        cpu["warm_burst_cpu_ms_per_request"] = probe_warm_cpu(url, model, sid, idle_cores)
    except OSError as exc:  # no burst answer (urllib's errors): not measured, the run stands
        print(f"warm burst CPU not measured: {exc}", flush=True)
        return
    cpu["warm_idle_session_cores"] = idle_cores
    path.write_text(json.dumps(cpu, indent=1))
    print(f"warm burst CPU: {cpu['warm_burst_cpu_ms_per_request']:.2f} ms", flush=True)


def probe_cpu(cmd: list[str], cwd: Path, sid: int, rps: float, timeout_s: float) -> dict:
    """Run the probe ``cmd`` (a load generator sending ``rps`` requests/s) and measure the CPU
    per request of session ``sid`` and of the load generator."""
    idle0 = session_cpu_s(sid)
    time.sleep(IDLE_S)
    idle_cores = (session_cpu_s(sid) - idle0) / IDLE_S
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL)
    t0 = time.monotonic()
    first = last = None  # (monotonic s, load generator CPU s, session CPU s)
    while proc.poll() is None and time.monotonic() - t0 < timeout_s:
        time.sleep(POLL_S)
        fields = _stat(str(proc.pid))
        if fields is None or proc.poll() is not None:
            break
        now = (time.monotonic(), (int(fields[11]) + int(fields[12])) / TICK, session_cpu_s(sid))
        if first is None and now[0] - t0 >= SKIP_S:
            first = now
        elif first is not None:
            last = now
    proc.wait(timeout_s)
    if first is None or last is None or last[0] - first[0] < 1.0:
        raise RuntimeError("the calibration probe ended too soon to measure its CPU")
    span = last[0] - first[0]
    sent = rps * span
    gateway_ms = max(last[2] - first[2] - idle_cores * span, 0.0) * 1000.0 / sent
    loadgen_ms = (last[1] - first[1]) * 1000.0 / sent
    return {
        "gateway_session_cpu_ms_per_request": gateway_ms,
        "loadgen_cpu_ms_per_request": loadgen_ms,
        "idle_session_cores": idle_cores,
        "span_s": span,
        "returncode": proc.returncode,
    }


def replica_cores(repo: Path, model: str, max_replicas: int) -> float:
    """Cores a local VM replica keeps busy while it serves a batch (see the module docstring)."""
    prof = json.loads((repo / model / "profile.json").read_text())["models"][model]
    cpu_ms = sum(prof.get("node_ms", {}).values())
    wall = sorted(prof["vm_service_ms"]["1"])
    threads = max(1, (os.cpu_count() or 1) // max(1, max_replicas))
    return min(float(threads), cpu_ms / wall[len(wall) // 2]) if wall else 0.0


def simulate_keys(path: Path, host: bool = True, warm: bool = True) -> str:
    """The [simulate] keys a measurement (``host_cpu.json``) gives: ``host`` the host's other
    work, ``warm`` a warm invocation's CPU beyond the gateway's per request (a measurement
    without it: none). No file: none."""
    if not path.exists():
        return ""
    cpu = json.loads(path.read_text())
    gateway_ms = cpu["gateway_session_cpu_ms_per_request"]
    keys = ""
    if host:
        keys += f"host_cpu_ms_per_request = {gateway_ms + cpu['loadgen_cpu_ms_per_request']:.4f}\n"
        keys += f"vm_replica_cores = {cpu['vm_replica_cores']:.4f}\n"
    if warm and "warm_burst_cpu_ms_per_request" in cpu:
        warm_ms = max(cpu["warm_burst_cpu_ms_per_request"] - gateway_ms, 0.0)
        keys += f"fn_warm_cpu_ms = {warm_ms:.4f}\n"
    return keys
