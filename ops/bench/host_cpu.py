"""What else keeps the host busy while the embedded function runtime starts instances, measured
for the simulator (``[simulate] host_cpu_ms_per_request``, ``host_base_cores`` and
``vm_replica_cores``, ``ops/sim/cold_share.py``).

- CPU per request: during ``sim_vs_real.py``'s calibration probe (a steady light load, one VM
  replica, no spill), the CPU the gateway's process session (the gateway, its local model
  servers, the function runtime) and the load generator spent, from /proc, less what the
  session spends idle (measured just before, over ``IDLE_S``), per request sent. The load
  generator's own start-up is left out: its CPU is read from ``SKIP_S`` into the probe on.
  At 4 req/s a request looks ~2x what one more costs at the replays' rates (fixed costs
  amortize), so the same is probed at ``PROBE_RATES`` too (``rates``; a probe the autoscaler
  launched a replica in is left out: the start's CPU is not a request's). ``sim_vs_real.py
  --host-slope`` charges the line through them (``host_line``): its slope per request
  (``host_cpu_ms_per_request``) and its intercept as a base load (``host_base_cores``). Not the
  default: it moved the simulation further from live (docs/ops.md, session 19).
- Over the replay, every second (``cpu_timeline``): the session's, the function instances',
  the load generator's and the host's CPU (``cpu_timeline.json``), to see the onsets.
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
# the rates (req/s) probed besides the calibration's 4: one replica keeps up without scaling
# (at 40 the target tracker launched a second, whose start's CPU is not a request's); the
# replays' onsets run at 100-170 req/s, where a request costs what one more costs
PROBE_RATES = (12.0, 24.0)
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


def cpu_timeline(proc: subprocess.Popen, sid: int, out: Path, timeout_s: float) -> None:
    """While ``proc`` (the replay's load generator) runs, the CPU seconds of the gateway's
    session, of the function instances it started (their own sessions) and of ``proc``, and the
    host's busy CPU (/proc/stat), every second: what the host's other work is at the
    onsets, beside the starts (``cpu_timeline.json``, columns per row)."""
    rows, t0 = [], time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout_s:
        stats = {pid: _stat(pid) for pid in os.listdir("/proc") if pid.isdigit()}
        ses = {pid for pid, f in stats.items() if f is not None and int(f[3]) == sid}
        tick = [0, 0]  # the session, the instances
        for pid, f in stats.items():
            if f is not None and (pid in ses or f[1] in ses):
                tick[pid not in ses] += int(f[11]) + int(f[12])
        own = stats.get(str(proc.pid))
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        busy = sum(cpu) - cpu[3] - cpu[4]  # less idle and iowait
        load = 0 if own is None else int(own[11]) + int(own[12])
        rows.append([round(time.monotonic() - t0, 3), tick[0], tick[1], load, busy])
        time.sleep(1.0)
    out.write_text(json.dumps({"tick_hz": TICK, "t_s,session,instances,loadgen,host": rows}))


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


def rate_point(cpu: dict, rps: float) -> dict:
    """One probe's busy cores at ``rps``: the gateway's session (its idle CPU included: it
    spends that during a replay too) and the load generator past its start-up."""
    session = cpu["gateway_session_cpu_ms_per_request"] * rps / 1000.0 + cpu["idle_session_cores"]
    return {"rps": rps, "cores": session + cpu["loadgen_cpu_ms_per_request"] * rps / 1000.0}


def probe_rates(cpu: dict, loadgen: list[str], work: Path, cwd: Path, sid: int) -> None:
    """Add the busy cores of ``cpu``'s probe (4 req/s) and of a steady load at each of
    ``PROBE_RATES`` (``loadgen``: the load generator's command without a trace) to
    ``cpu["rates"]``."""
    from ops.traces import read_trace, write_csv

    model = loadgen[loadgen.index("--model") + 1]
    cpu["rates"] = [rate_point(cpu, 4.0)]
    for rps in PROBE_RATES:
        at = work / f"probe{rps:g}.csv"
        trace = read_trace(f"synth:steady:duration_s=15,rps={rps:g}", seed=9)
        write_csv(trace.with_model(model), at)
        out = work / f"probe{rps:g}.json"
        cmd = loadgen + ["--trace", str(at), "--json", str(out), "--no-progress"]
        done = probe_cpu(cmd, cwd, sid, rps, 180)
        if json.loads(out.read_text())["peak_vm_replicas"] > 1:  # a start's CPU in it
            print(f"probe at {rps:g} req/s scaled the VMs: left out", flush=True)
            continue
        cpu["rates"].append(rate_point(done, rps))


def host_line(points: list[dict]) -> tuple[float, float]:
    """(base cores, CPU ms per request): the least-squares line through the probes' busy cores
    by rate (the slope: what one more request costs; the intercept, at least 0: what the host
    spends whatever the rate)."""
    n = len(points)
    mx = sum(p["rps"] for p in points) / n
    my = sum(p["cores"] for p in points) / n
    sxx = sum((p["rps"] - mx) ** 2 for p in points)
    slope = sum((p["rps"] - mx) * (p["cores"] - my) for p in points) / sxx
    if slope <= 0:  # no usable slope (noise at 100 Hz ticks): the average per request
        return 0.0, my / mx * 1000.0
    base = my - slope * mx
    if base < 0:  # through the origin instead
        sxy = sum(p["rps"] * p["cores"] for p in points)
        return 0.0, sxy / sum(p["rps"] ** 2 for p in points) * 1000.0
    return base, slope * 1000.0


def replica_cores(repo: Path, model: str, max_replicas: int) -> float:
    """Cores a local VM replica keeps busy while it serves a batch (see the module docstring)."""
    prof = json.loads((repo / model / "profile.json").read_text())["models"][model]
    cpu_ms = sum(prof.get("node_ms", {}).values())
    wall = sorted(prof["vm_service_ms"]["1"])
    threads = max(1, (os.cpu_count() or 1) // max(1, max_replicas))
    return min(float(threads), cpu_ms / wall[len(wall) // 2]) if wall else 0.0


def simulate_keys(path: Path, host: bool = True, warm: bool = True, slope: bool = False) -> str:
    """The [simulate] keys a measurement (``host_cpu.json``) gives: ``host`` the host's other
    work (``slope``: the line through the probes at several rates, else the CPU per request
    at 4 req/s), ``warm`` a warm invocation's CPU beyond the gateway's per request (a
    measurement without it: none). No file: none."""
    if not path.exists():
        return ""
    cpu = json.loads(path.read_text())
    gateway_ms = cpu["gateway_session_cpu_ms_per_request"]
    keys = ""
    if host and slope and len(cpu.get("rates", ())) >= 2:
        base, per_request_ms = host_line(cpu["rates"])
        keys += f"host_cpu_ms_per_request = {per_request_ms:.4f}\n"
        keys += f"host_base_cores = {base:.4f}\n"
    elif host:  # at 4 req/s (and where one rate was measured: runs before session 19)
        keys += f"host_cpu_ms_per_request = {gateway_ms + cpu['loadgen_cpu_ms_per_request']:.4f}\n"
    if host:
        keys += f"vm_replica_cores = {cpu['vm_replica_cores']:.4f}\n"
    if warm and "warm_burst_cpu_ms_per_request" in cpu:
        warm_ms = max(cpu["warm_burst_cpu_ms_per_request"] - gateway_ms, 0.0)
        keys += f"fn_warm_cpu_ms = {warm_ms:.4f}\n"
    return keys
