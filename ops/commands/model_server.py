"""``tidegate model-server``: one VM replica serving a model repository over OIP v2 REST."""

from __future__ import annotations

import argparse
import math
import os
import warnings
from pathlib import Path

# 8080, where KServe's model servers listen: not the gateway's 8000 (HTTP) or 8001 (gRPC, as
# Triton's) nor the function runtime's 9000, so a gateway and a model server started with their
# defaults on one host do not collide (the model server's 8001 did). vmpool.runner's default too.
MODEL_SERVER_PORT = 8080

HELP = "Run a model server (Open Inference Protocol v2) for models in a repository."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", required=True, help="model repository directory")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model to serve (repeatable; default: every model in the repo)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=MODEL_SERVER_PORT,
        help=f"port to bind (default {MODEL_SERVER_PORT}: not the gateway's 8000 or gRPC 8001; "
        "0 picks a free port)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per model inference thread (default 1)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="override each model's max_batch_size (default: its config.toml's)",
    )
    parser.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=None,
        help="override each model's dynamic batching delay (default: its config.toml's)",
    )
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=64.0,
        help="largest accepted request body (default 64 MB)",
    )
    parser.add_argument(
        "--max-inflight-body-mb",
        type=float,
        default=1024.0,
        help="request body bytes in flight across requests before new bodies "
        "get 503 (default 1024 MB)",
    )
    parser.add_argument(
        "--body-timeout-s",
        type=float,
        default=60.0,
        help="a request body must arrive within this time, else 408 (default 60)",
    )
    parser.add_argument(
        "--drain-timeout-s",
        type=float,
        default=30.0,
        help="on SIGTERM, how long to wait for in-flight requests (default 30)",
    )


MAX_THREADS = 1024  # torch threads per model: far past any core count this serves on


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse out-of-range flags before torch is imported (a slow start for a typo)."""
    from ops.cli import CliError

    if not 1 <= args.threads <= MAX_THREADS:  # (past it: "can't start new thread", overflow)
        raise CliError(f"--threads must be in 1..{MAX_THREADS}, got {args.threads}")
    if args.max_batch_size is not None and args.max_batch_size < 1:
        raise CliError(f"--max-batch-size must be at least 1, got {args.max_batch_size}")
    if args.max_queue_delay_ms is not None and args.max_queue_delay_ms < 0:
        raise CliError(f"--max-queue-delay-ms must not be negative, got {args.max_queue_delay_ms}")
    if args.max_body_mb <= 0:
        raise CliError(f"--max-body-mb must be positive, got {args.max_body_mb}")
    for flag, value in (
        ("--max-inflight-body-mb", args.max_inflight_body_mb),
        ("--body-timeout-s", args.body_timeout_s),
    ):
        if value <= 0:
            raise CliError(f"{flag} must be positive, got {value:g}")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be in 0..65535, got {args.port}")
    for flag, number in (
        ("--max-queue-delay-ms", args.max_queue_delay_ms),
        ("--max-body-mb", args.max_body_mb),
        ("--max-inflight-body-mb", args.max_inflight_body_mb),
        ("--body-timeout-s", args.body_timeout_s),
        ("--drain-timeout-s", args.drain_timeout_s),
    ):
        if number is not None and not math.isfinite(number):
            raise CliError(f"{flag} must be a finite number, got {number}")
    if args.drain_timeout_s < 0:
        raise CliError(f"--drain-timeout-s must not be negative, got {args.drain_timeout_s:g}")
    repo = Path(args.repo)  # (a missing one read as "model 'x' not found in repository ...")
    if not repo.exists():
        raise CliError(
            f"model repository {args.repo} does not exist "
            f"(export one: tidegate export resnet18 --out {args.repo})"
        )
    if not repo.is_dir():
        raise CliError(f"model repository {args.repo} is a file, not a directory")


def run(args: argparse.Namespace) -> int:
    from ops.cli import CliError

    _check_arguments(args)
    from vmpool.proc_name import name_process

    name_process("tidegate-model")
    # libgomp's idle workers spin ~300,000 times before sleeping: after each request a core
    # stays busy for milliseconds while the event loop and the client need it. A short spin
    # still bridges the gaps between the operators of one forward pass.
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")
    # torch's own pytree code warns on each program copy: noise on every start, nothing to act on
    warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
    import torch

    from ops.process_tuning import tune_allocator, tune_gc
    from vmpool.artifact import ArtifactError
    from vmpool.server import create_model_server_app, run_model_server

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)  # one inference thread per model; no inter-op pool
    except RuntimeError:  # already set in this process (run() called twice, as tests do)
        pass
    try:
        app = create_model_server_app(
            args.repo,
            args.models,
            threads=args.threads,
            max_body_mb=args.max_body_mb,
            max_batch_size=args.max_batch_size,
            max_queue_delay_ms=args.max_queue_delay_ms,
            max_inflight_body_mb=args.max_inflight_body_mb,
            body_timeout_s=args.body_timeout_s,
        )
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    names = ", ".join(app.state.model_server.models)

    def ready(host: str, port: int) -> None:
        # once listening: a server that cannot bind leaves its caller's gc and malloc as they were
        tune_allocator()
        tune_gc()
        print(f"tidegate model-server ready on http://{host}:{port} (models: {names})", flush=True)

    try:
        return run_model_server(
            app, args.host, args.port, drain_timeout_s=args.drain_timeout_s, on_ready=ready
        )
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
