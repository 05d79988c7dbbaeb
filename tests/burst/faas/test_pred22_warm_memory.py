"""A warm function instance gives back what a request freed (pred22, issue 7).

Function instances run with allocator settings that keep freed memory on the heap
(``burst.local_functions.ALLOCATOR_ENV``: 256 MB trim threshold, one arena), so a warm
instance held what its largest request had freed: MobileNetV2 at batch 8 held 750-814 MB
against its plan's 481 MB estimate (session 21). The instance now trims its heap after each
answer is sent."""

from __future__ import annotations

import orjson

from burst.faas.local import LocalInvoker
from burst.faas.local_runtime import FunctionSpec, LocalFunctionRuntime
from burst.local_functions import ALLOCATOR_ENV

H = "tests.burst.faas.pred22_handlers"


async def test_a_warm_instance_returns_freed_memory_after_its_answer():
    runtime = LocalFunctionRuntime(
        functions=[
            FunctionSpec("churn", f"{H}:churn", memory_mb=1024, environment=dict(ALLOCATOR_ENV))
        ]
    )
    await runtime.start()
    invoker = LocalInvoker(runtime.endpoint)
    try:
        base = orjson.loads((await invoker.invoke("churn", b'{"mb": 1}')).payload)["rss_mb"]
        orjson.loads((await invoker.invoke("churn", b'{"mb": 200}')).payload)
        # the same warm instance (one at a time), after its answer: the 200 MB freed (under the 256 MB trim threshold) went back
        # (before: held, ~base + 200 MB)
        await invoker.invoke("churn", b'{"mb": 1}')
        after = orjson.loads((await invoker.invoke("churn", b'{"mb": 1}')).payload)["rss_mb"]
        assert runtime.instance_count("churn") == 1
        assert after < base + 60, (base, after)
    finally:
        await invoker.close()
        await runtime.stop()
