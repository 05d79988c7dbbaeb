"""What ops/bench/soak.py samples while it drives the gateway: each process under it (RSS,
open fds, threads, count, by role), the ledger's and queue's files, the object store, the
burst path's tensors in /dev/shm, the access log, the Prometheus series; and the table it
prints, the slopes per hour and the change per request it writes."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import numpy as np


def role(proc) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - gone between listing and reading
        return "gone"
    for needle, name in (
        ("model-server", "model_server"),
        ("model_server", "model_server"),
        ("function-runtime", "function_runtime"),
        ("function_runtime", "function_runtime"),
        ("local_functions", "function_runtime"),
        ("instance", "function_instance"),
    ):
        if needle in cmd:
            return name
    return "other:" + (proc.name() or "?")


def tree_figures(pid: int) -> dict:
    """RSS (MB), fds, threads and count of the gateway and of each role of process under it."""
    import psutil

    root = psutil.Process(pid)
    out: dict = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = "gateway" if proc.pid == pid else role(proc)
            with proc.oneshot():
                rss, fds, threads = proc.memory_info().rss, proc.num_fds(), proc.num_threads()
        except psutil.Error:
            continue
        for fig, v in (("rss_mb", rss / 2**20), ("fds", fds), ("threads", threads), ("n", 1)):
            out[f"{name}.{fig}"] = out.get(f"{name}.{fig}", 0) + v
    out["children"] = len(root.children(recursive=True))
    out.update(anon_file_mb(pid))
    return out


def anon_file_mb(pid: int) -> dict:
    """The gateway's RSS split: anonymous (heap, arenas, stacks) and file-backed (libraries,
    mapped files), in MB, from ``/proc/PID/smaps_rollup``; empty where it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    kb = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            kb[key] = int(rest.split()[0])
    if "Rss" not in kb or "Anonymous" not in kb:
        return {}
    return {
        "gateway.anon_mb": kb["Anonymous"] / 1024,
        "gateway.file_mb": (kb["Rss"] - kb["Anonymous"]) / 1024,
    }


def process_list(pid: int) -> list[str]:
    """Each process under the gateway: its role and command line (what the roles counted)."""
    import psutil

    out = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            out.append(f"{role(proc)}: {' '.join(proc.cmdline())[:160]}")
        except psutil.Error:
            continue
    return out


def _kb(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 1024


def dir_figures(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return len(files), sum(p.stat().st_size for p in files if p.exists())


SHM = Path("/dev/shm")


def shm_roots() -> set[Path]:
    return set(SHM.glob("tidegate-tensors-*")) if SHM.exists() else set()


async def sample(session, url, pid, data: Path, log: Path, t0, traffic, tensor_roots) -> dict:
    row = {"t_s": round(time.monotonic() - t0, 1), **tree_figures(pid)}
    for name, prefix in (("ledger", "ledger.sqlite"), ("async_queue", "async-queue.sqlite")):
        # the database, and beside it the WAL (reused after each checkpoint) and journals
        row[f"{name}_db_kb"] = _kb([data / prefix])
        row[f"{name}_wal_kb"] = _kb([p for p in data.glob(prefix + "?*") if ".lock" not in p.name])
    row["store_files"], store_bytes = dir_figures(data / "objects")
    row["store_mb"] = store_bytes / 2**20
    row["shm_files"], shm_bytes = 0, 0
    for root in tensor_roots:  # the burst path's tensors in flight (/dev/shm), if any
        files, size = dir_figures(root)
        row["shm_files"], shm_bytes = row["shm_files"] + files, shm_bytes + size
    row["shm_mb"] = shm_bytes / 2**20
    row["logs_files"], logs_bytes = dir_figures(data / "logs")
    row["logs_mb"] = logs_bytes / 2**20
    row["access_log_kb"] = log.stat().st_size / 1024
    async with session.get(url + "/metrics") as resp:
        text = await resp.text()
    row["prom_series"] = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    row["requests"] = sum(traffic.counts.values())
    row["load1"] = os.getloadavg()[0]  # the host's, beside every figure (shared machine)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}


COLUMNS = [
    ("t_s", "t_s"),
    ("requests", "reqs"),
    ("gateway.rss_mb", "gw_rss"),
    ("gateway.anon_mb", "gw_anon"),
    ("gateway.fds", "gw_fd"),
    ("gateway.threads", "gw_thr"),
    ("children", "kids"),
    ("model_server.rss_mb", "ms_rss"),
    ("function_runtime.rss_mb", "fr_rss"),
    ("function_instance.n", "inst"),
    ("function_instance.rss_mb", "inst_rss"),
    ("ledger_db_kb", "ledgr_kb"),
    ("ledger_wal_kb", "wal_kb"),
    ("async_queue_db_kb", "queue_kb"),
    ("store_files", "st_files"),
    ("store_mb", "st_mb"),
    ("shm_files", "shm_files"),
    ("access_log_kb", "acc_kb"),
    ("prom_series", "series"),
    ("load1", "load1"),
]


def print_row(row: dict | None) -> None:
    if row is None:
        print(" ".join(f"{h:>9}" for _, h in COLUMNS), flush=True)
        return
    print(" ".join(f"{row.get(k, 0):>9.6g}" for k, _ in COLUMNS), flush=True)


def after_warmup(samples: list[dict], warmup_s: float = 0.0) -> list[dict]:
    """The samples from ``warmup_s`` on (at least 3 of them), else all but the first."""
    warm = [s for s in samples if s["t_s"] >= warmup_s] if warmup_s > 0 else []
    if len(warm) >= 3:
        return warm
    return samples[1:] if len(samples) >= 3 else samples


def slopes_per_hour(samples: list[dict], warmup_s: float = 0.0) -> dict:
    """Least-squares slope of each figure per hour, after the warm-up (``after_warmup``)."""
    use = after_warmup(samples, warmup_s)
    out = {}
    for key in sorted({k for s in use for k in s if k not in ("t_s", "load1")}):
        t = np.array([s["t_s"] for s in use], float)
        v = np.array([s.get(key, 0) for s in use], float)
        if len(use) >= 2 and np.ptp(t) > 0:
            out[key] = round(float(np.polyfit(t, v, 1)[0] * 3600), 3)
    return out


def per_request(samples: list[dict], warmup_s: float = 0.0) -> dict:
    """Each figure's change from the first sample past the warm-up to the last, per request
    sent between."""
    warm = after_warmup(samples, warmup_s) if warmup_s > 0 else samples
    first, last = warm[0], samples[-1]
    sent = last["requests"] - first["requests"]
    keys = [k for k in last if k not in ("t_s", "requests", "load1") and k in first]
    return {k: round((last[k] - first[k]) / sent, 4) for k in keys} if sent else {}


# statuses a kind asks for; any other 5xx is a finding (a 429/503 under load is reported)
WANTED = {"bad_400": {400}, "unknown_404": {404}, "bad_key_401": {401}}


def findings(counts: Counter) -> dict:
    """5xx answers and transport failures nobody asked for, by kind."""
    out: Counter = Counter()
    for (kind, status), n in counts.items():
        text = str(status)
        wanted = WANTED.get(kind, set())
        if status in wanted:
            continue
        if text.startswith(("5", "exc:", "poll-", "submit:5", "grpc:StatusCode.INTERNAL")):
            out[f"{kind} {text}"] += n
    return dict(out)
