"""The memory watchdog reads a warm instance far below its memory size seldom (each read wakes the
runtime on a core the legs compute on), and one near or over its size as often as before."""

import orjson
import pytest

from burst.faas import watchdog
from burst.faas.base import InvokeError
from burst.faas.local import LocalInvoker
from burst.faas.local_runtime import FunctionSpec, LocalFunctionRuntime

H = "tests.burst.faas.handlers"


def _reads_over(duration_s: float, hwm_mb: int, memory_mb: int, poll_s: float = 0.005) -> int:
    """How many times the watchdog reads /proc over an invocation of ``duration_s``."""
    t, reads, floor_s = 0.0, 0, poll_s
    while t <= duration_s:
        reads += 1
        t += watchdog.next_poll_s(hwm_mb * 1024, memory_mb, floor_s)
        floor_s = watchdog.next_floor_s(floor_s, poll_s)
    return reads


def _reads_before(duration_s: float, poll_s: float = 0.005) -> int:
    """What the watchdog read before: every ``poll_s``, growing 1.5x to 20 ms."""
    t, reads = 0.0, 0
    while t <= duration_s:
        reads += 1
        t += poll_s
        poll_s = max(poll_s, min(poll_s * 1.5, 0.02))
    return reads


def test_a_warm_leg_far_below_its_size_is_read_a_few_times_not_every_few_ms():
    # a split ResNet-50 master: ~700 MB of 2048, a 110 ms request (it was read 8 times)
    assert _reads_over(0.110, 700, 2048) <= 2
    # one of its worker legs: ~300 MB of 2048, 35 ms
    assert _reads_over(0.035, 300, 2048) == 1


def test_an_instance_near_its_size_is_read_no_more_often_than_before():
    # VGG-16's master in a 512 MB function holds ~430 MB: room for 4 ms at the fastest growth
    for duration_s in (0.01, 0.05, 0.3, 2.0):
        assert _reads_over(duration_s, 430, 512) <= _reads_before(duration_s)
    assert _reads_over(0.01, 430, 512) >= 2  # a leg's start is still read closely


def test_near_or_over_its_size_the_watchdog_reads_at_the_runtime_poll():
    assert watchdog.next_poll_s(2040 * 1024, 2048, 0.005) == 0.005
    assert watchdog.next_poll_s(3000 * 1024, 2048, 0.005) == 0.005
    # never later than the process could fill its size at the fastest growth measured
    room_s = (2048 - 48) / watchdog.MAX_GROWTH_MB_PER_S
    assert watchdog.next_poll_s(48 * 1024, 2048, 0.005) <= room_s


@pytest.fixture
async def runtime():
    rt = LocalFunctionRuntime(
        functions=[
            FunctionSpec("nap", f"{H}:sleep", memory_mb=2048),
            FunctionSpec("hog", f"{H}:hog", memory_mb=128, timeout_s=30),
        ],
        memory_budget_mb=4096,
    )
    await rt.start()
    inv = LocalInvoker(rt.endpoint)
    yield rt, inv
    await inv.close()
    await rt.stop()


async def test_a_warm_invocation_wakes_the_watchdog_a_few_times(runtime, monkeypatch):
    rt, inv = runtime
    await inv.invoke("nap", b'{"sleep_s": 0.01}')  # cold start: not counted
    reads = []
    real = watchdog.status_kb
    monkeypatch.setattr(watchdog, "status_kb", lambda pid: reads.append(pid) or real(pid))
    result = await inv.invoke("nap", b'{"sleep_s": 0.3}')
    assert not result.billing.cold_start
    seconds = result.billing.duration_ms / 1000.0
    # ~20 MB of 2048: a read every ~100 ms; it was every 5-20 ms (50 a second)
    assert len(reads) / seconds < 20, (len(reads), seconds)


async def test_an_instance_over_its_size_is_still_killed_while_it_holds_the_memory(runtime):
    rt, inv = runtime
    with pytest.raises(InvokeError) as err:
        # it would hold 300 MB for 20 s: the watchdog kills it long before the timeout
        await inv.invoke("hog", orjson.dumps({"mb": 300, "hold_s": 20}))
    assert err.value.kind == "OutOfMemory"
    assert err.value.billing.duration_ms < 10_000
    assert rt.instance_count("hog") == 0
