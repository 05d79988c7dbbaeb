"""The control loop ticks on a fixed grid (as the simulator does), whatever a tick takes."""

from __future__ import annotations

import asyncio

from gateway.policy_settings import NoScaling
from policies.state import ManualClock
from tests.gateway.test_control import _engine


async def _tick_times(tick_takes_s, count: int = 6) -> list[float]:
    """When each of the first ``count`` ticks started, a tick taking ``tick_takes_s(i)``."""
    clock = ManualClock(100.0)
    done = asyncio.Event()

    async def sleep(seconds):
        assert seconds >= 0
        clock.advance(seconds)
        await asyncio.sleep(0)

    engine, *_ = _engine(NoScaling(), clock)
    engine._sleep = sleep
    started: list[float] = []

    async def tick():
        started.append(round(clock.now(), 6))
        clock.advance(tick_takes_s(len(started) - 1))  # the work of the tick
        if len(started) == count:
            done.set()

    engine.tick = tick
    engine.start()
    await asyncio.wait_for(done.wait(), 5.0)
    await engine.close()
    return started[:count]


async def test_ticks_keep_to_the_grid_however_long_each_takes():
    # a tick of 0.3 s started the next 1.3 s after the last: the loop drifted a tick's length
    # each time, so a replay's decisions fell in other seconds than the simulator's
    assert await _tick_times(lambda i: 0.3) == [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]


async def test_a_stalled_tick_skips_the_ticks_it_overran_and_keeps_the_phase():
    # the third tick stalls 2.5 s: the tick due at 103 runs once it ends, the one due at 104
    # is skipped (not run in a burst), and the next ones are due on the grid again
    takes = [0.1, 0.1, 2.5, 0.1, 0.1, 0.1]
    assert await _tick_times(lambda i: takes[i]) == [100.0, 101.0, 102.0, 104.5, 105.0, 106.0]
