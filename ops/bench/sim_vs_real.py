# size: ~360 lines: one bench's steps (prepare, serve, replay, calibrate, simulate, report);
# several models' parts are in sim_vs_real_models.py
"""Does the simulator agree with reality? Replay a short trace with ``tidegate loadgen`` against a
local gateway (local VM pool with a boot delay, local function runtime, the ``delay`` model), then
simulate the same arrivals with the same policy and the profile measured here (``tidegate
profile``). Prints both side by side; target: SLO attainment within 2 points, cost within 15 %.

    .venv/bin/python ops/bench/sim_vs_real.py [--duration-s 150] [--policy threshold]
        [--trace SPEC] [--model delay|mlp] [--seed N]

``--trace`` replays any trace ``tidegate simulate`` reads (a file or ``synth:KIND:k=v,...``,
e.g. a short MMPP or flash crowd that spills to functions and boots VMs); the default is a
step of ``--duration-s`` at ``--base-rps`` x1 -> x4 -> x1. ``--model mlp`` computes for real
(a tiny MLP, SLO 50 ms) where ``delay`` only waits.

Cost on both sides is what the fleet cost over the run: VM replica-seconds (ready and booting,
without the billing minimum, which the live side cannot see per replica) at the VM price, plus
the burst path's function and storage cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from ops.bench import host_cpu, sim_vs_real_boot, sim_vs_real_host  # noqa: E402
from ops.bench import sim_vs_real_models as several  # noqa: E402
from ops.bench.sim_vs_real_table import print_sides  # noqa: E402
from ops.bench.procs import work_dir  # noqa: E402
from ops.bench.sim_vs_real_ticks import LIVE_FILE  # noqa: E402
from gateway.control_log import ENV  # noqa: E402

from vmpool.procs import free_port, wait_healthy_sync  # noqa: E402

TIDEGATE = [sys.executable, "-m", "ops"]

POLICIES = {
    "threshold": (
        'routing_policy = "threshold"\nspill_outstanding_per_replica = 6\n'
        '[autoscaling]\npolicy = "target"\nmin_replicas = 1\nmax_replicas = 3\n'
        "target_in_flight_per_replica = 3.0\nscale_in_cooldown_s = 60.0\n"
    ),
    "slo-aware": (
        'routing_policy = "slo-aware"\n[autoscaling]\npolicy = "predictive"\n'
        "min_replicas = 1\nmax_replicas = 3\n"
    ),
}


def run(cmd: list[str], timeout_s: float, **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(str(c) for c in cmd[2:]), file=sys.stderr)
    return subprocess.run(cmd, cwd=ROOT, timeout=timeout_s, **kw)


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 300.0) -> float:
    """Seconds until the gateway answered ready (vmpool.procs: the one spawn/health helper)."""
    t0 = time.monotonic()
    wait_healthy_sync(proc, url + "/v2/health/ready", timeout_s=timeout_s, interval_s=0.3)
    return time.monotonic() - t0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=150.0)
    parser.add_argument("--base-rps", type=float, default=8.0)
    parser.add_argument("--policy", choices=sorted(POLICIES), default="threshold")
    parser.add_argument("--boot-delay-s", type=float, default=10.0)
    parser.add_argument("--trace", help="a trace file or synth:KIND:k=v,... (default: a step)")
    parser.add_argument("--seed", type=int, default=3, help="the synthetic trace's seed")
    parser.add_argument("--model", choices=("delay", "mlp"), default="delay")
    parser.add_argument("--slo-ms", type=float, help="default: the model's (delay 250, mlp 50)")
    parser.add_argument("--models", help="NAME=DELAY_MS/PER_ITEM_MS,...: delay models, one fleet")
    parser.add_argument("--phase-s", type=float, help="--models: each model's turn (s)")
    parser.add_argument("--skip-profile", action="store_true", help="use the reference profile")
    parser.add_argument("--resimulate", help="a run's directory: simulate its live run again")
    parser.add_argument("--host-cpu-from", help="host_cpu.json of another run (--resimulate)")
    parser.add_argument("--no-host-work", action="store_true", help="starts get every core")
    parser.add_argument("--no-warm-cpu", action="store_true", help="warm runs as profiled")
    parser.add_argument("--host-slope", action="store_true", help="host CPU: slope over rates")
    # the gateway's CPU: its whole process tree (host_cpu.py; session: the old, the gateway alone)
    parser.add_argument("--attribution", choices=("session", "tree"), default="tree")
    parser.add_argument("--json", default=str(ROOT / "ops/bench/results/sim_vs_real.json"))
    args = parser.parse_args()
    if args.models:  # (sim_vs_real_models.py)
        args.model_waits = several.parse_models(args.models)
    if args.slo_ms is None:
        args.slo_ms = DEFAULT_SLO_MS[args.model]
    return args


MODEL_ARGS = {"delay": ["--delay-ms", "20", "--per-item-ms", "3"], "mlp": []}
DEFAULT_SLO_MS = {"delay": 250.0, "mlp": 50.0}
# what a --resimulate takes from the run it simulates again, not from its own flags
RUN_KEYS = ("model", "slo_ms", "policy", "boot_delay_s", "trace", "seed", "load_avg", "models")


def prepare(work: Path, args: argparse.Namespace) -> None:
    """Export (and profile) the model, write the gateway config and the trace."""
    repo = work / "repo"
    slo = ["--slo-ms", f"{args.slo_ms:g}"]
    if args.models:
        several.export_models(run, TIDEGATE, repo, args)
        args.model = next(iter(args.model_waits))  # (calibrated on the first)
    else:
        run(
            TIDEGATE + ["export", args.model, "--out", str(repo)] + MODEL_ARGS[args.model] + slo,
            600,
            check=True,
        )
    if not args.skip_profile and not args.models:
        done = run(TIDEGATE + ["profile", args.model, "--repo", str(repo), "--reps", "3"], 1800)
        if done.returncode != 0:
            print("tidegate profile failed: simulating with the reference profile", file=sys.stderr)
    (work / "tidegate.toml").write_text(
        f'access_log = "off"\n{sim_vs_real_boot.CONFIG_LINE}{POLICIES[args.policy]}[vm]\n'
        f"boot_delay_s = {args.boot_delay_s}\n[burst]\nconcurrency = 8\nkeep_alive_s = 300.0\n"
    )
    from ops.traces import read_trace, write_csv

    spec = args.trace or (
        f"synth:step:duration_s={args.duration_s},base_rps={args.base_rps},mult=4,"
        f"start_s={args.duration_s / 3:.0f},step_s={args.duration_s / 4:.0f}"
    )
    trace = read_trace(spec, seed=args.seed).with_model(args.model)
    if args.models:
        trace = several.assign_models(trace, list(args.model_waits), args.seed, args.phase_s)
    write_csv(trace, work / "trace.csv")
    args.duration_s = trace.duration_s  # the replay's timeout
    args.trace = spec
    kept = {k: getattr(args, k) for k in RUN_KEYS}
    (work / "bench_args.json").write_text(json.dumps(kept))


def start_serve(work: Path, port: int, log, record: bool = False) -> subprocess.Popen:
    """The gateway; with ``record``, its control loop's ticks go to ``control_live.jsonl``
    (``sim_vs_real_ticks.py`` sets them beside the simulated ones)."""
    cmd = ["serve", "--config", str(work / "tidegate.toml"), "--repo", str(work / "repo")]
    cmd += ["--data-dir", str(work / "data"), "--port", str(port), "--grpc-port", "-1"]
    env = {**os.environ, ENV: str(work / LIVE_FILE)} if record else None
    return subprocess.Popen(
        TIDEGATE + cmd,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )


def stop(serve: subprocess.Popen) -> None:
    serve.terminate()
    try:
        serve.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(serve.pid, 9)


def replay_live(work: Path, url: str, args: argparse.Namespace, sid: int) -> None:
    """Replay the trace against the live gateway; its summary lands in live.json, and the
    host's CPU over it in cpu_timeline.json (``host_cpu.cpu_timeline``)."""
    popen(
        sid,
        work,
        TIDEGATE
        + [
            "loadgen",
            "--trace",
            str(work / "trace.csv"),
            "--url",
            url,
            *([] if args.models else ["--model", args.model]),
            "--slo-ms",
            f"{args.slo_ms:g}",
            "--json",
            str(work / "live.json"),
            "--csv",
            str(work / "live.csv"),
            "--no-progress",
        ],
        args.duration_s * 3 + 120,
    )
    # loadgen exits 1 when a request got no answer; its summary counts it (a miss), so the
    # run is compared all the same, only a replay that wrote no summary stops the bench
    if not (work / "live.json").exists():
        raise RuntimeError("tidegate loadgen wrote no summary (see above)")
    sim_vs_real_boot.record_boot_s(url, work)


def popen(sid: int, work: Path, cmd: list[str], timeout_s: float) -> None:
    """Run ``cmd`` (the load generator), sampling the CPU of gateway ``sid``'s tree and the host."""
    print("$ " + " ".join(str(c) for c in cmd[2:]), file=sys.stderr)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        host_cpu.cpu_timeline(proc, sid, work / "cpu_timeline.json", timeout_s)
    finally:
        proc.wait(timeout_s)


def main() -> int:
    args = parse_args()
    if args.resimulate:
        kept = Path(args.resimulate) / "bench_args.json"
        if kept.exists():
            vars(args).update(json.loads(kept.read_text()))
        return simulate_and_report(Path(args.resimulate), args, 0.0)
    args.load_avg = os.getloadavg()[0]
    print(f"load average {args.load_avg:.2f} at {time.strftime('%H:%M:%S')} UTC", file=sys.stderr)
    work = work_dir("sim-vs-real-")
    prepare(work, args)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "serve.log", "w")
    serve = start_serve(work, port, log)
    try:
        start_s = wait_ready(url, serve)
        overhead_ms = calibrate(url, work, work / "repo", args.model, serve.pid)
        # its warm burst probe left an instance warm: the replay starts on a fresh gateway, as
        # the simulation starts with none
        stop(serve)
        serve = start_serve(work, port, log, record=True)
        wait_ready(url, serve)
        replay_live(work, url, args, serve.pid)
    finally:
        stop(serve)
        log.close()
    (work / "overhead_ms").write_text(f"{overhead_ms:.3f}")
    return simulate_and_report(work, args, start_s)


def simulate_and_report(work: Path, args, start_s: float) -> int:
    cfg, trace, repo = work / "tidegate.toml", work / "trace.csv", work / "repo"
    overhead_ms = float((work / "overhead_ms").read_text())
    # a replica here takes its boot delay plus a model server start (sim_vs_real_boot); the
    # embedded function runtime's instances start on the gateway's cores, so cold starts under way
    # share the cores the profile recorded (8 at once on 2 cores took ~4x one alone: cold_share.py)
    boot_s, boot_from = sim_vs_real_boot.vm_boot_s(work, args.boot_delay_s)
    sim_cfg = work / "sim.toml"
    print(f"VM boot {boot_s:.1f} s: {boot_from}", file=sys.stderr)
    sim_cfg.write_text(
        cfg.read_text() + f"\n[simulate]\nvm_boot_s = {boot_s:.3f}\n"
        f"fn_keep_alive_s = 300.0\nfn_concurrency = 8\ncold_start_contention = true\n"
        f"gateway_overhead_ms = {overhead_ms:.3f}\n"
        + host_cpu.simulate_keys(
            Path(args.host_cpu_from or work / "host_cpu.json"),
            host=not args.no_host_work,
            warm=not args.no_warm_cpu,
            slope=args.host_slope,
            attribution=args.attribution,
        )
    )
    if getattr(
        args, "models", None
    ):  # the shared fleet and one per model, each beside the live run
        live = json.loads((work / "live.json").read_text())
        args.fleets = several.print_fleets(
            live, several.simulate_fleets(run, TIDEGATE, work, sim_cfg), sim_cost_of
        )
    sim_json = work / "sim.json"
    cmd = ["simulate", "--trace", str(trace), "--policy", "config", "--config", str(sim_cfg)]
    cmd += ["--repo", str(repo), "--json", str(sim_json)]
    cmd += ["--fleet", "shared"] if getattr(args, "models", None) else ["--model", args.model]
    run(TIDEGATE + cmd, 900, check=True, stdout=subprocess.DEVNULL)
    args.foreign_cores = sim_vs_real_host.foreign_cores(work / "cpu_timeline.json")
    live, sim = (json.loads(p.read_text()) for p in (work / "live.json", sim_json))
    if (work / LIVE_FILE).is_file():
        print(f"tick by tick: ops/bench/sim_vs_real_ticks.py {work}", file=sys.stderr)
        print(f"live decisions replayed: ops/bench/sim_vs_real_live25.py {work}", file=sys.stderr)
    return report(live, sim, args, start_s)


def calibrate(url: str, work: Path, repo: Path, model: str, sid: int) -> float:
    """The gateway's own time per request on this machine as it is now: a light steady load
    (one replica, no queueing) end to end, minus the VM service time the profile measured."""
    probe = work / "probe.csv"
    from ops.traces import read_trace, write_csv

    write_csv(read_trace("synth:steady:duration_s=15,rps=4", seed=9).with_model(model), probe)
    out = work / "probe.json"
    cmd = TIDEGATE + ["loadgen", "--trace", str(probe), "--url", url, "--model", model]
    # and what the gateway's processes (by both attributions: host_cpu.py) and the load
    # generator spend per request
    cpu = host_cpu.probe_cpu(cmd + ["--json", str(out), "--no-progress"], ROOT, sid, 4.0, 180)
    cpu["vm_replica_cores"] = host_cpu.replica_cores(repo, model, 1)
    # ... and at higher rates, where fixed costs amortize: the simulator charges the slope
    host_cpu.probe_rates(
        cpu, TIDEGATE + ["loadgen", "--url", url, "--model", model], work, ROOT, sid
    )
    (work / "host_cpu.json").write_text(json.dumps(cpu, indent=1))
    print(f"host CPU: {cpu}", file=sys.stderr)
    host_cpu.add_warm_cpu(work / "host_cpu.json", url, model, sid)
    live_p50 = json.loads(out.read_text())["p50_ms"]
    from ops.sim.profile_adapter import from_repo

    service_ms = from_repo(repo, model).vm_service_ms(1)
    overhead = max(live_p50 - service_ms, 0.0)
    print(
        f"calibration: end-to-end p50 {live_p50:.1f} ms, VM service {service_ms:.1f} ms: "
        f"gateway and network overhead {overhead:.1f} ms",
        file=sys.stderr,
    )
    return overhead


def sim_cost_of(sim: dict) -> float:
    """What the simulated fleet cost over the run: VM up time (no billing minimum) + the rest."""
    from policies.costs import PriceTable

    parts = ("function_compute_usd", "function_requests_usd", "store_usd", "warm_functions_usd")
    return sim["vm_hours"] * PriceTable().vm_usd_per_hour + sum(sim[k] for k in parts)


def report(live: dict, sim: dict, args, start_s: float) -> int:
    sim_cost = sim_cost_of(sim)
    print_sides(live, sim, sim_cost)
    d_att = abs(live["slo_attainment"] - sim["slo_attainment"]) * 100
    d_cost = abs(sim_cost - live["cost_usd"]) / max(live["cost_usd"], 1e-12) * 100
    ok = d_att <= 2.0 and d_cost <= 15.0
    other, cores = getattr(args, "foreign_cores", None), os.cpu_count() or 1
    busy = other is not None and other > cores / 2  # (the verdict stands; it is qualified)
    print(
        f"attainment differs by {d_att:.2f} points (target <= 2), cost by {d_cost:.1f} % "
        f"(target <= 15): {'PASS' if ok else 'FAIL'}"
        + (
            f" (other work took {other:.2f} of {cores} cores: re-run on a quiet host)"
            if busy
            else ""
        )
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps(
            {
                "policy": args.policy,
                "model": args.model,
                "models": getattr(args, "models", None),
                "fleets": getattr(args, "fleets", None),
                "trace": args.trace,
                "seed": args.seed,
                "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "load_avg_at_start": getattr(args, "load_avg", None),
                "command": " ".join(sys.argv),
                "live": live,
                "sim": sim,
                "sim_cost_usd": sim_cost,
                "gateway_start_s": start_s,
                "attainment_diff_points": d_att,
                "cost_diff_pct": d_cost,
                "pass": ok,
                "foreign_cores": other,
                "host_busy": busy,
            },
            indent=2,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
