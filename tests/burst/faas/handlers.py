"""Toy Lambda-style handlers for the function runtime tests (no torch: cold starts stay quick)."""

import os
import sys
import time

_LOADED_AT = time.time()  # module import = the instance's init


def echo(event, context):
    print("echo handler saw", sorted(event))  # goes to the log tail, not the protocol
    sys.stdout.write("x" * 10)  # raw writes must not corrupt frames either
    return {
        "event": event,
        "function": context.function_name,
        "memory_mb": context.memory_limit_in_mb,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "pid": os.getpid(),
        "threads": os.environ.get("TIDEGATE_FUNCTION_THREADS"),
        "greeting": os.environ.get("GREETING"),
    }


def sleep(event, context):
    time.sleep(event.get("sleep_s", 0.2))
    return {"slept_s": event.get("sleep_s", 0.2), "pid": os.getpid()}


def hog(event, context):
    """Touch ``mb`` megabytes (bytes multiplication writes every page)."""
    block = b"\x01" * (event["mb"] << 20)
    time.sleep(event.get("hold_s", 0.0))
    return {"allocated_mb": len(block) >> 20, "pid": os.getpid()}


def fail(event, context):
    raise ValueError(f"bad input: {event.get('why', 'none')}")


def crash(event, context):
    os._exit(3)


def torch_matmul(event, context):
    import torch  # lazy: the first invocation pays for it, like a model load

    torch.set_num_threads(int(os.environ.get("TIDEGATE_FUNCTION_THREADS", "1")))
    a = torch.ones(64, 64)
    return {"sum": float((a @ a).sum())}


def gate(event, context):
    """Say it started (a file), then hold the instance until the test releases it (a file)."""
    open(event["started"], "w").close()
    while not os.path.exists(event["release"]):
        time.sleep(0.005)
    return {"pid": os.getpid()}


def crash_once(event, context):
    """Crash the first invocation that sees no marker file; succeed afterwards."""
    if not os.path.exists(event["marker"]):
        open(event["marker"], "w").close()
        os._exit(3)
    return {"pid": os.getpid(), "survived": True}


def cpu_share(event, context):
    """The instance's session and scheduling group (Linux autogroup), after a short hold."""
    time.sleep(event.get("hold_s", 0.2))
    try:
        with open("/proc/self/autogroup") as f:
            group = f.read().strip()
    except OSError:
        group = None
    return {"pid": os.getpid(), "sid": os.getsid(0), "autogroup": group}
