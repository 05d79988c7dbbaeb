"""A warm burst function keeps its freed activation memory for the next request.

With glibc's default thresholds, a request whose activations are each under the (moving) mmap
threshold but together past the trim threshold gave its heap top back to the kernel at the end
and faulted every page in again on the next request: MobileNetV2 in one function took 87 ms
instead of 48 ms with 7.3 k page faults per request, depending on the heap left by the plan's
weights. The handler below replays that pattern (ten 3 MB activations) on a real instance of
the local runtime, configured as the burst functions are (``burst.local_functions``).
"""

from __future__ import annotations

import orjson
import pytest

from burst.faas.local import LocalInvoker
from burst.faas.local_runtime import FunctionSpec, LocalFunctionRuntime
from burst.local_functions import function_bodies

ACTIVATION_BYTES = 3 << 20
ACTIVATIONS = 10  # 30 MB: 7.7 k pages


def activations(event, context):
    """Allocate, touch and free one request's activations; the minor page faults it took."""
    import resource

    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    bufs = []
    for _ in range(ACTIVATIONS):
        b = bytearray(ACTIVATION_BYTES)
        b[::4096] = b"\x01" * len(range(0, ACTIVATION_BYTES, 4096))
        bufs.append(b)
    del bufs
    return {"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0}


async def _faults_per_request(environment: dict) -> list[int]:
    handler = f"{__name__}:activations"
    runtime = LocalFunctionRuntime(
        functions=[FunctionSpec("acts", handler, memory_mb=256, environment=environment)]
    )
    await runtime.start()
    invoker = LocalInvoker(runtime.endpoint)
    try:
        return [
            orjson.loads((await invoker.invoke("acts", b"{}")).payload)["faults"] for _ in range(4)
        ]
    finally:
        await invoker.close()
        await runtime.stop()


@pytest.mark.slow
async def test_a_warm_burst_function_does_not_fault_its_activations_in_again():
    body = function_bodies(
        "http://127.0.0.1:1",
        {"kind": "dir"},
        master=("m", 256),
        worker=("w", 256),
        workers=1,
        timeout_s=10,
    )[0]
    configured = await _faults_per_request(body["Environment"]["Variables"])
    pages = ACTIVATIONS * ACTIVATION_BYTES // 4096
    assert max(configured[1:]) < pages // 10, configured  # warm: the heap keeps them
    # without the burst functions' allocator settings the same instance refaults them all
    default = await _faults_per_request({})
    assert min(default[1:]) > pages // 2, default
