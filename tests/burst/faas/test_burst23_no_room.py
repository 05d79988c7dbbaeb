"""An instance that cannot take a request's weights even with its cache empty gives itself up,
and the request is answered by a fresh instance (burst23): before, the load went ahead and the
runtime killed the instance for memory (a 503 for the request)."""

from __future__ import annotations

import orjson

from burst.faas.local import LocalInvoker
from burst.faas.local_runtime import FunctionSpec, LocalFunctionRuntime
from burst.local_functions import ALLOCATOR_ENV

H = "tests.burst.faas.burst23_handlers"


async def test_a_warm_instance_with_no_room_is_replaced_and_the_request_answered():
    # (a timeout well past Lambda's 3 s default: a cold instance filling 100 MB on a loaded
    # host took longer, and the test is about memory, not time)
    spec = FunctionSpec(
        "load", f"{H}:load", memory_mb=512, timeout_s=60.0, environment=dict(ALLOCATOR_ENV)
    )
    runtime = LocalFunctionRuntime(functions=[spec])
    await runtime.start()
    invoker = LocalInvoker(runtime.endpoint)
    try:
        first = orjson.loads((await invoker.invoke("load", b'{"load_mb": 100}')).payload)
        # warm now: it holds all but 50 MB of its memory, and 100 MB more are asked for
        second = orjson.loads((await invoker.invoke("load", b'{"load_mb": 100}')).payload)
    finally:
        await invoker.close()
        await runtime.stop()
    assert second["pid"] != first["pid"]  # answered, by a fresh instance
