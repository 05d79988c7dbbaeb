"""``tidegate function-runtime``: run the embedded Lambda-compatible function runtime."""

from __future__ import annotations

import argparse
import asyncio
import signal

from burst.faas.local_runtime import FunctionSpec, LocalFunctionRuntime
from ops.cli import CliError, finite_float

HELP = "Run the local function runtime (AWS Lambda Invoke API on loopback) until interrupted."

MIN_BUDGET_MB = 64  # the runtime's own floor (burst/faas/admission.py)
_OPTION_TYPES = {"memory_mb": int, "timeout_s": finite_float, "reserved_concurrency": int}


def parse_function(text: str) -> FunctionSpec:
    """``NAME=module:handler[,memory_mb=..,timeout_s=..,reserved_concurrency=..]``"""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise CliError(f"--function {text!r}: expected NAME=module:handler[,memory_mb=..]")
    handler, *options = rest.split(",")
    kwargs: dict = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in _OPTION_TYPES:
            raise CliError(
                f"--function {text!r}: unknown option {option!r} "
                f"(known: {', '.join(_OPTION_TYPES)})"
            )
        try:
            kwargs[key] = _OPTION_TYPES[key](value)
        except (ValueError, argparse.ArgumentTypeError):
            raise CliError(f"--function {text!r}: {key} must be a number, got {value!r}") from None
    spec = FunctionSpec(name=name, handler=handler, **kwargs)
    try:
        spec.validate()
    except ValueError as exc:
        raise CliError(f"--function {text!r}: {exc}") from None
    return spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=9000, help="port (default 9000; 0 picks a free one)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="cap on concurrent invocations across functions (throttles above; default 16)",
    )
    parser.add_argument(
        "--keep-alive-s",
        type=finite_float,
        default=300.0,
        help="seconds an idle instance stays warm (default 300)",
    )
    parser.add_argument(
        "--memory-budget-mb",
        type=int,
        default=None,
        help=f"cap on the memory sizes of live instances together, at least {MIN_BUDGET_MB} "
        "(default: half the machine's RAM); idle instances are reclaimed first",
    )
    parser.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="SPEC",
        help="NAME=module:handler[,memory_mb=..,timeout_s=..,reserved_concurrency=..] "
        "(repeatable; default: none, clients register theirs with Lambda's CreateFunction)",
    )


def check_numbers(args: argparse.Namespace) -> None:
    """Each number in range, named by its flag (the runtime's own errors name its fields, and
    it reads a budget of 0 as "not given")."""
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be in 0..65535, got {args.port}")
    if args.concurrency < 1:
        raise CliError(f"--concurrency must be >= 1, got {args.concurrency}")
    if not args.keep_alive_s > 0:
        raise CliError(f"--keep-alive-s must be > 0, got {args.keep_alive_s:g}")
    if args.memory_budget_mb is not None and args.memory_budget_mb < MIN_BUDGET_MB:
        raise CliError(
            f"--memory-budget-mb must be >= {MIN_BUDGET_MB}, got {args.memory_budget_mb}"
        )


async def _serve(runtime: LocalFunctionRuntime) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        endpoint = await runtime.start()
    except OSError as exc:
        raise CliError(f"cannot listen on {runtime.host}:{runtime.port}: {exc}") from None
    names = ", ".join(s.name for s in runtime.functions()) or "none yet"
    print(f"tidegate function-runtime ready at {endpoint} (functions: {names})", flush=True)
    try:
        await stop.wait()
    finally:
        await runtime.stop()


def run(args: argparse.Namespace) -> int:
    from vmpool.proc_name import name_process

    name_process("tidegate-fnrt")
    check_numbers(args)
    specs = [parse_function(text) for text in args.function]
    try:
        runtime = LocalFunctionRuntime(
            host=args.host,
            port=args.port,
            concurrency=args.concurrency,
            keep_alive_s=args.keep_alive_s,
            memory_budget_mb=args.memory_budget_mb,
        )
        for spec in specs:
            runtime.add_function(spec)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(runtime))
    return 0
