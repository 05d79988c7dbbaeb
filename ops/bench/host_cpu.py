"""What else keeps the host busy while the embedded function runtime starts instances, measured
for the simulator (``[simulate] host_cpu_ms_per_request``, ``host_base_cores``,
``vm_replica_cores``, ``fn_warm_cpu_ms``; ``ops/sim/cold_share.py``).

Two attributions of the gateway's CPU, both measured in the same run (``host_cpu.json``):
- ``session`` (the old, keys without "tree"): the processes of the gateway's session and, for
  the warm probe, their children. Every child of the gateway (model servers, the function
  runtime: ``vmpool/procs.py``) starts a session of its own, and so does every function
  instance the runtime starts (``burst/faas/instances.py``): the session is the gateway
  process alone, its children are the model servers and the runtime, never an instance.
- ``tree`` (keys with "tree"), the default since session 19: the gateway's whole process tree,
  walked by ppid links in /proc whatever the sessions (``tree_roles``: the gateway, model
  servers, runtime, instances). On 5 fresh live runs it simulated closer to live (mean
  distance 0.276 attainment points against 0.630, all within 2; docs/ops.md, session 19).

- CPU per request: during ``sim_vs_real.py``'s calibration probe (a steady light load, one VM
  replica, no spill), what the gateway and the load generator spent, less the gateway's idle
  CPU (measured just before, over ``IDLE_S``), per request sent; the load generator's start-up
  left out (read from ``SKIP_S`` on). Probed at ``PROBE_RATES`` too (``rates``; a probe the
  autoscaler launched a replica in is left out); ``--host-slope`` charges the line through
  them (``host_line``), not the default (docs/ops.md, session 19).
- Over the replay, every second (``cpu_timeline``): the tree's CPU by role, the load
  generator's and the host's, and the old attribution's columns (``cpu_timeline.json``).
- A serving replica's cores: its torch threads (cores / replicas, at least 1) x the profile's
  CPU time of the model's nodes (``node_ms``) over its VM service time at batch 1. ``delay``: ~0.
- CPU per warm burst invocation: after the calibration probe (the bench then restarts the
  gateway: the replay starts with no warm instance, as the simulation does), ~60 requests
  forced onto the burst path one at a time, after one that starts an instance, less the idle
  CPU and the gateway's CPU per request already charged to every arrival. Only the tree
  counts the instance's own CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ops.bench.proc_tree import (
    ROLES,
    TICK,
    snapshot,
    read_stat,
    ticks_since,
    tree_roles,
    tree_ticks,
)

IDLE_S, SKIP_S, POLL_S = 5.0, 3.0, 0.2
# the rates (req/s) probed besides the calibration's 4: one replica keeps up without scaling
# (at 40 the target tracker launched a second, whose start's CPU is not a request's); the
# replays' onsets run at 100-170 req/s, where a request costs what one more costs
PROBE_RATES = (12.0, 24.0)


def session_cpu_s(sid: int) -> float:
    """The OLD attribution (``session``): user + system CPU seconds of the processes in session
    ``sid`` alive now. Every child of the gateway (model servers, the function runtime) starts
    a session of its own (``vmpool/procs.py``), so this is the gateway process alone."""
    total = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            fields = read_stat(pid)
            if fields is not None and int(fields[3]) == sid:
                total += int(fields[11]) + int(fields[12])
    return total / TICK


def _cpu_by_pid(sid: int) -> dict[str, int]:
    """The OLD attribution: CPU ticks of session ``sid``'s processes (the gateway alone) and of
    their children (the model servers and the function runtime, NOT the function instances:
    the runtime, outside the session, is their parent)."""
    stats = snapshot()
    session = {pid for pid, f in stats.items() if int(f[3]) == sid}
    return {
        pid: int(f[11]) + int(f[12])
        for pid, f in stats.items()
        if pid in session or f[1] in session
    }


def _cpu_since(before: dict[str, int], sid: int) -> float:
    return ticks_since(before, _cpu_by_pid(sid))


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


def _both(sid: int) -> tuple[dict, dict]:
    """A reading of the old attribution (session ``sid`` and its children) and the new (the
    gateway's whole process tree; the gateway's pid is ``sid``: it leads its session)."""
    return _cpu_by_pid(sid), tree_ticks(sid)


def _since(before: tuple[dict, dict], sid: int) -> tuple[float, float]:
    old, new = _both(sid)
    return ticks_since(before[0], old), ticks_since(before[1], new)


def probe_warm_cpu(url: str, model: str, sid: int, idle: tuple[float, float], n: int = 60):
    """CPU ms a warm burst invocation adds on this host (see the module docstring), beyond
    the per-request CPU the gateway spends anyway (subtracted by the caller), by the old
    attribution and by the new: (old, new)."""
    import urllib.request

    from ops.loadgen import model_inputs
    from vmpool.codec import encode_request

    with urllib.request.urlopen(f"{url}/v2/models/{model}", timeout=30) as resp:
        body, header_len = encode_request(model_inputs(json.loads(resp.read())))
    infer = f"{url}/v2/models/{model}/infer"
    _post(infer, body, header_len)  # starts the instance (its cold start is left out)
    time.sleep(1.0)
    t0, cpu0 = time.monotonic(), _both(sid)
    for _ in range(n):
        _post(infer, body, header_len)
        time.sleep(0.05)
    span = time.monotonic() - t0
    used = [u - i * span for u, i in zip(_since(cpu0, sid), idle, strict=True)]
    return tuple(max(u, 0.0) * 1000.0 / n for u in used)


def cpu_timeline(proc: subprocess.Popen, sid: int, out: Path, timeout_s: float) -> None:
    """While ``proc`` (the replay's load generator) runs, every second: the CPU ticks of the
    gateway's process tree by role (``ROLES``: the gateway, its model servers, the function
    runtime, the function instances), of ``proc`` and the host's busy ticks (/proc/stat); and
    the old attribution's two columns (``old_session``: the gateway alone, ``old_children``:
    the model servers and the runtime, which it called "instances"). ``cpu_timeline.json``."""
    rows, t0 = [], time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout_s:
        stats = snapshot()
        by_role = dict.fromkeys(ROLES, 0)
        for pid, role in tree_roles(sid, stats).items():
            by_role[role] += int(stats[pid][11]) + int(stats[pid][12])
        ses = {pid for pid, f in stats.items() if int(f[3]) == sid}
        old = [0, 0]
        for pid, f in stats.items():
            if pid in ses or f[1] in ses:
                old[pid not in ses] += int(f[11]) + int(f[12])
        own = stats.get(str(proc.pid))
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        busy = sum(cpu) - cpu[3] - cpu[4]  # less idle and iowait
        load = 0 if own is None else int(own[11]) + int(own[12])
        row = [round(time.monotonic() - t0, 3), *by_role.values(), load, busy, *old]
        rows.append(row)
        time.sleep(1.0)
    cols = ",".join(("t_s", *ROLES, "loadgen", "host", "old_session", "old_children"))
    out.write_text(json.dumps({"tick_hz": TICK, cols: rows}))


def add_warm_cpu(path: Path, url: str, model: str, sid: int) -> None:
    """Measure a warm burst invocation's CPU on the gateway at ``url`` (session ``sid``) and
    add it to the measurement at ``path``: ``warm_burst_cpu_ms_per_request`` (old attribution:
    without the function instance's own CPU) and ``warm_burst_tree_cpu_ms_per_request``."""
    idle0 = _both(sid)
    time.sleep(IDLE_S)
    idle = tuple(c / IDLE_S for c in _since(idle0, sid))
    cpu = json.loads(path.read_text())
    try:
        old, new = probe_warm_cpu(url, model, sid, idle)  # type: ignore[arg-type]
    except OSError as exc:  # no burst answer (urllib's errors): not measured, the run stands
        print(f"warm burst CPU not measured: {exc}", flush=True)
        return
    cpu["warm_burst_cpu_ms_per_request"], cpu["warm_burst_tree_cpu_ms_per_request"] = old, new
    cpu["warm_idle_session_cores"], cpu["warm_idle_tree_cores"] = idle
    path.write_text(json.dumps(cpu, indent=1))
    print(f"warm burst CPU: {old:.2f} ms (old), {new:.2f} ms (tree)", flush=True)


def probe_cpu(cmd: list[str], cwd: Path, sid: int, rps: float, timeout_s: float) -> dict:
    """Run the probe ``cmd`` (a load generator sending ``rps`` requests/s) and measure the CPU
    per request of the gateway (old attribution: session ``sid``; new: its process tree) and
    of the load generator."""
    idle0 = (session_cpu_s(sid), tree_ticks(sid))
    time.sleep(IDLE_S)
    idle_cores = (session_cpu_s(sid) - idle0[0]) / IDLE_S
    idle_tree = ticks_since(idle0[1], tree_ticks(sid)) / IDLE_S
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL)
    t0 = time.monotonic()
    first = last = None  # (monotonic s, load generator CPU s, session CPU s, tree ticks)
    while proc.poll() is None and time.monotonic() - t0 < timeout_s:
        time.sleep(POLL_S)
        fields = read_stat(str(proc.pid))
        if fields is None or proc.poll() is not None:
            break
        own = (int(fields[11]) + int(fields[12])) / TICK
        now = (time.monotonic(), own, session_cpu_s(sid), tree_ticks(sid))
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
    tree_cpu = ticks_since(first[3], last[3])
    return {
        "gateway_session_cpu_ms_per_request": gateway_ms,
        "gateway_tree_cpu_ms_per_request": max(tree_cpu - idle_tree * span, 0.0) * 1000 / sent,
        "loadgen_cpu_ms_per_request": (last[1] - first[1]) * 1000.0 / sent,
        "idle_session_cores": idle_cores,
        "idle_tree_cores": idle_tree,
        "span_s": span,
        "returncode": proc.returncode,
    }


def rate_point(cpu: dict, rps: float) -> dict:
    """One probe's busy cores at ``rps``: the gateway's (its idle CPU included: it spends that
    during a replay too) and the load generator past its start-up; ``cores`` by the old
    attribution, ``tree_cores`` by the new."""
    loadgen = cpu["loadgen_cpu_ms_per_request"] * rps / 1000.0
    point = {"rps": rps}
    for key, ms, idle in (
        ("cores", "gateway_session_cpu_ms_per_request", "idle_session_cores"),
        ("tree_cores", "gateway_tree_cpu_ms_per_request", "idle_tree_cores"),
    ):
        point[key] = cpu[ms] * rps / 1000.0 + cpu[idle] + loadgen
    return point


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


def host_line(points: list[dict], key: str = "cores") -> tuple[float, float]:
    """(base cores, CPU ms per request): the least-squares line through the probes' busy cores
    (``key``) by rate (the slope: what one more request costs; the intercept, at least 0: what
    the host spends whatever the rate)."""
    n = len(points)
    mx = sum(p["rps"] for p in points) / n
    my = sum(p[key] for p in points) / n
    sxx = sum((p["rps"] - mx) ** 2 for p in points)
    slope = sum((p["rps"] - mx) * (p[key] - my) for p in points) / sxx
    if slope <= 0:  # no usable slope (noise at 100 Hz ticks): the average per request
        return 0.0, my / mx * 1000.0
    base = my - slope * mx
    if base < 0:  # through the origin instead
        sxy = sum(p["rps"] * p[key] for p in points)
        return 0.0, sxy / sum(p["rps"] ** 2 for p in points) * 1000.0
    return base, slope * 1000.0


def replica_cores(repo: Path, model: str, max_replicas: int) -> float:
    """Cores a local VM replica keeps busy while it serves a batch (see the module docstring)."""
    prof = json.loads((repo / model / "profile.json").read_text())["models"][model]
    cpu_ms = sum(prof.get("node_ms", {}).values())
    wall = sorted(prof["vm_service_ms"]["1"])
    threads = max(1, (os.cpu_count() or 1) // max(1, max_replicas))
    return min(float(threads), cpu_ms / wall[len(wall) // 2]) if wall else 0.0


# what each attribution reads of host_cpu.json: the gateway's CPU per request, a warm
# invocation's, a rate point's busy cores
ATTRIBUTION = {
    "session": (
        "gateway_session_cpu_ms_per_request",
        "warm_burst_cpu_ms_per_request",
        "cores",
    ),
    "tree": (
        "gateway_tree_cpu_ms_per_request",
        "warm_burst_tree_cpu_ms_per_request",
        "tree_cores",
    ),
}


def simulate_keys(
    path: Path, host: bool = True, warm: bool = True, slope: bool = False, attribution="tree"
) -> str:
    """The [simulate] keys a measurement (``host_cpu.json``) gives: ``host`` the host's other
    work (``slope``: the line through the probes at several rates, else the CPU per request
    at 4 req/s), ``warm`` a warm invocation's CPU beyond the gateway's per request (a
    measurement without it: none), by ``attribution`` (``ATTRIBUTION``; a run measured before
    the tree was: the session's). No file: none."""
    if not path.exists():
        return ""
    cpu = json.loads(path.read_text())
    if attribution == "tree" and ATTRIBUTION["tree"][0] not in cpu:
        print(f"{path}: no tree attribution measured, the session's charged", file=sys.stderr)
        attribution = "session"
    per_request, warm_key, cores = ATTRIBUTION[attribution]
    gateway_ms = cpu[per_request]
    keys = ""
    if host and slope and len(cpu.get("rates", ())) >= 2:
        base, per_request_ms = host_line(cpu["rates"], cores)
        keys += f"host_cpu_ms_per_request = {per_request_ms:.4f}\n"
        keys += f"host_base_cores = {base:.4f}\n"
    elif host:  # at 4 req/s (and where one rate was measured: runs before session 19)
        keys += f"host_cpu_ms_per_request = {gateway_ms + cpu['loadgen_cpu_ms_per_request']:.4f}\n"
    if host:
        keys += f"vm_replica_cores = {cpu['vm_replica_cores']:.4f}\n"
    if warm and warm_key in cpu:
        warm_ms = max(cpu[warm_key] - gateway_ms, 0.0)
        keys += f"fn_warm_cpu_ms = {warm_ms:.4f}\n"
    return keys
