"""Gateway-side coalescing: concurrent small calls ride in one replica request, each caller gets
its own rows back, a bad input fails only its own call, a down replica fails everyone's, a
cancelled caller drops only its own answer."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.vmpool.test_server import ServerProcess, _local
from vmpool.batch_report import BatchReport
from vmpool.client import ReplicaClient, ReplicaError
from vmpool.coalesce import Coalescer


class FakeReplica:
    """``send`` for a Coalescer: doubles its input, records each request's rows."""

    def __init__(self, fail: Exception | None = None, batched: bool = True):
        self.requests: list[int] = []
        self.ids: list[str | None] = []
        self.fail, self.batched = fail, batched
        self.release = asyncio.Event()
        self.release.set()
        self.busy = asyncio.Event()  # holds requests of width 3 (``_busy``)

    async def __call__(self, base_url, model, inputs, outputs, request_id, timeout_s):
        if inputs["x"].shape[1] == 3:
            await self.busy.wait()
            return {"y": inputs["x"]}, None
        self.requests.append(int(inputs["x"].shape[0]))
        self.ids.append(request_id)
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        if (inputs["x"] < 0).any():  # as a model refuses a bad input: the whole request fails
            raise ReplicaError("x must not be negative", 400)
        y = inputs["x"] * 2 if self.batched else np.zeros(3, np.float32)
        return {"y": y}, ("report", len(inputs["x"]))


def _call(coalescer, value: float, rows: int = 1, model: str = "m", width: int = 4, rid=None):
    x = np.full((rows, width), value, np.float32)
    return coalescer.infer("http://r", model, {"x": x}, None, rid, 5.0)


def _busy(coalescer, replica: FakeReplica) -> asyncio.Future:
    """A request of model "m" out to the replica until ``replica.busy`` is set: calls that come
    meanwhile form groups (a call to a replica with nothing out goes at once, alone)."""
    return asyncio.ensure_future(_call(coalescer, 0, width=3))


async def test_a_call_to_an_idle_replica_goes_at_once_and_the_calls_behind_it_merge():
    replica = FakeReplica()
    coalescer = Coalescer(replica)
    coalescer.set_max_rows("m", 8)
    replica.release.clear()  # requests stay out until released
    calls = [asyncio.ensure_future(_call(coalescer, i, rid=f"r{i}")) for i in range(3)]
    await _until(lambda: len(replica.requests) == 2)
    replica.release.set()
    answers = await asyncio.gather(*calls)
    assert replica.requests == [1, 2] and replica.ids == ["r0", "r1"]
    assert [float(out["y"][0, 0]) for out, _ in answers] == [0, 2, 4]
    assert (coalescer.requests_sent, coalescer.calls_merged) == (1, 2)


async def test_calls_of_one_loop_iteration_ride_in_one_request_and_get_their_own_rows():
    replica = FakeReplica()
    coalescer = Coalescer(replica)
    coalescer.set_max_rows("m", 8)
    busy = _busy(coalescer, replica)
    answers = await asyncio.gather(*(_call(coalescer, i, rid=f"r{i}") for i in range(3)))
    replica.busy.set()
    await busy
    assert replica.requests == [3] and replica.ids == ["r0"]  # the leader's id
    for i, (outputs, report) in enumerate(answers):
        assert outputs["y"].shape == (1, 4) and (outputs["y"] == 2 * i).all()
        assert report == ("report", 3)  # the batch they shared
    assert (coalescer.requests_sent, coalescer.calls_merged) == (1, 3)


async def test_a_call_alone_goes_as_it_came_and_unknown_models_never_wait():
    replica = FakeReplica()
    coalescer = Coalescer(replica)
    coalescer.set_max_rows("m", 8)
    outputs, _ = await _call(coalescer, 1.0, rows=2)
    assert replica.requests == [2] and outputs["y"].shape == (2, 4)
    await asyncio.gather(_call(coalescer, 1.0, model="other"), _call(coalescer, 2.0, model="other"))
    assert replica.requests == [2, 1, 1]  # no row limit given for "other": never merged
    coalescer.set_max_rows("m", 1)  # a model without batching
    await asyncio.gather(_call(coalescer, 1.0), _call(coalescer, 2.0))
    assert replica.requests == [2, 1, 1, 1, 1]


async def test_groups_stop_at_the_models_largest_batch_and_split_by_signature():
    replica = FakeReplica()
    coalescer = Coalescer(replica)
    coalescer.set_max_rows("m", 4)
    busy = _busy(coalescer, replica)
    calls = [_call(coalescer, i) for i in range(6)] + [_call(coalescer, 9, width=5)]
    calls.append(_call(coalescer, 7, rows=4))  # a full batch by itself: sent alone
    answers = await asyncio.gather(*calls)
    replica.busy.set()
    await busy
    assert sorted(replica.requests) == [1, 2, 4, 4]  # 4 + 2 of width 4, 1 of width 5, the 4
    assert [float(out["y"][0, 0]) for out, _ in answers] == [0, 2, 4, 6, 8, 10, 18, 14]


async def test_large_calls_are_not_merged():
    replica = FakeReplica()
    coalescer = Coalescer(replica, max_bytes=64)
    coalescer.set_max_rows("m", 8)
    await asyncio.gather(_call(coalescer, 1.0, width=32), _call(coalescer, 2.0, width=32))
    assert replica.requests == [1, 1]


async def test_a_failure_is_every_members_and_the_next_calls_go_on():
    replica = FakeReplica(fail=ReplicaError("replica failed", 502))
    coalescer = Coalescer(replica)
    coalescer.set_max_rows("m", 8)
    results = await asyncio.gather(*(_call(coalescer, i) for i in range(3)), return_exceptions=True)
    assert [getattr(r, "status", None) for r in results] == [502, 502, 502]
    replica.fail = None
    outputs, _ = await _call(coalescer, 5.0)
    assert (outputs["y"] == 10).all()


async def test_one_callers_bad_input_fails_only_its_own_call():
    replica = FakeReplica()
    coalescer = Coalescer(replica)
    coalescer.set_max_rows("m", 8)
    busy = _busy(coalescer, replica)
    results = await asyncio.gather(
        _call(coalescer, 1.0),
        _call(coalescer, -1.0),
        _call(coalescer, 3.0),
        return_exceptions=True,
    )
    replica.busy.set()
    await busy
    assert isinstance(results[1], ReplicaError) and results[1].status == 400
    assert (results[0][0]["y"] == 2).all() and (results[2][0]["y"] == 6).all()
    assert replica.requests == [3, 1, 1, 1]  # the merged request, then each alone


async def test_outputs_without_a_batch_dimension_send_each_call_alone_from_then_on():
    replica = FakeReplica(batched=False)
    coalescer = Coalescer(replica)
    coalescer.set_max_rows("m", 8)
    busy = _busy(coalescer, replica)
    results = await asyncio.gather(_call(coalescer, 1), _call(coalescer, 2))
    replica.busy.set()
    await busy
    assert all(r[0]["y"].shape == (3,) for r in results)  # what each alone gets
    await asyncio.gather(_call(coalescer, 1), _call(coalescer, 2))
    assert replica.requests == [2, 1, 1, 1, 1]


async def test_a_cancelled_member_drops_only_its_own_answer():
    replica = FakeReplica()
    replica.release.clear()  # the merged request is in flight until released
    coalescer = Coalescer(replica)
    coalescer.set_max_rows("m", 8)
    busy = _busy(coalescer, replica)
    leader, follower, other = (asyncio.ensure_future(_call(coalescer, i)) for i in range(3))
    while not replica.requests:
        await asyncio.sleep(0)
    leader.cancel()
    follower.cancel()
    replica.release.set()
    outputs, _ = await other
    assert replica.requests == [3] and (outputs["y"] == 4).all()
    assert leader.cancelled() and follower.cancelled()
    replica.busy.set()
    await busy


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0)


async def _fast_replica(replica: FakeReplica, **kwargs) -> Coalescer:
    """A coalescer that has seen one request of model "m" come back at once (a fast model)."""
    coalescer = Coalescer(replica, clock=lambda: 0.0, **kwargs)
    coalescer.set_max_rows("m", 8)
    await _call(coalescer, 0)
    replica.requests.clear()
    replica.release.clear()  # from now on requests stay in flight until released
    return coalescer


async def test_calls_arriving_while_the_replica_is_busy_wait_and_go_as_one_request():
    replica = FakeReplica()
    coalescer = await _fast_replica(replica, max_in_flight=1, max_hold_s=60)
    first = asyncio.ensure_future(_call(coalescer, 1))
    await _until(lambda: replica.requests)
    later = []
    for i in range(5):  # each in its own loop iteration: not merged by the iteration alone
        later.append(asyncio.ensure_future(_call(coalescer, 10 + i)))
        for _ in range(3):
            await asyncio.sleep(0)
    assert replica.requests == [1]  # held while the replica is busy
    replica.release.set()
    answers = await asyncio.gather(first, *later)
    assert replica.requests == [1, 5]
    assert [float(out["y"][0, 0]) for out, _ in answers] == [2, 20, 22, 24, 26, 28]
    assert coalescer.groups_held == 1


async def test_a_held_group_goes_as_soon_as_it_is_full_or_its_hold_ends():
    replica = FakeReplica()
    coalescer = await _fast_replica(replica, max_in_flight=1, max_hold_s=60)
    coalescer.set_max_rows("m", 4)
    first = asyncio.ensure_future(_call(coalescer, 1))
    await _until(lambda: replica.requests)
    held = []
    for i in range(4):
        held.append(asyncio.ensure_future(_call(coalescer, i)))
        await asyncio.sleep(0)
    await _until(lambda: len(replica.requests) == 2)
    assert replica.requests == [1, 4]  # full: sent while the first is still out
    coalescer.max_hold_s = 0.001  # a replica that does not answer holds nobody for long
    late = asyncio.ensure_future(_call(coalescer, 7))
    await _until(lambda: len(replica.requests) == 3)
    assert replica.requests == [1, 4, 1]
    replica.release.set()
    await asyncio.gather(first, late, *held)


@pytest.mark.parametrize("case", ["holding off", "slow model"])
async def test_without_holding_calls_of_different_iterations_go_separately(case):
    replica = FakeReplica()
    if case == "holding off":
        coalescer = await _fast_replica(replica, max_in_flight=0)
    else:  # its requests took 1 s to come back: far longer than the 20 ms a request may wait
        ticks = iter(range(0, 1000))
        coalescer = Coalescer(replica, max_in_flight=1, clock=lambda: float(next(ticks)))
        coalescer.set_max_rows("m", 8)
        await _call(coalescer, 0)
        replica.requests.clear()
        replica.release.clear()
    calls = []
    for i in range(3):
        calls.append(asyncio.ensure_future(_call(coalescer, i)))
        await _until(lambda n=i + 1: len(replica.requests) == n)
    replica.release.set()
    await asyncio.gather(*calls)
    assert replica.requests == [1, 1, 1] and coalescer.groups_held == 0


class ReportingReplica(FakeReplica):
    """A FakeReplica whose answers report their batch's service time, as a model server's do."""

    def __init__(self, service_ms: float):
        super().__init__()
        self.service_ms = service_ms

    async def __call__(self, *args):
        outputs, _ = await super().__call__(*args)
        return outputs, BatchReport(len(outputs["y"]), self.service_ms)


@pytest.mark.parametrize("busy", [False, True])
async def test_a_replica_with_time_to_spare_gets_one_call_at_a_time_a_busy_one_two(busy):
    """Idle most of the time, the replica loses nothing by waiting for the gateway between
    batches: calls wait behind the one out (the fewest calls). Busy, it is kept fed: one
    batch running, one queued."""
    now = [0.0]
    replica = ReportingReplica(service_ms=800.0 if busy else 100.0)  # of the next 1 s
    coalescer = Coalescer(replica, max_in_flight=2, max_hold_s=60, clock=lambda: now[0])
    coalescer.set_max_rows("m", 8)
    replica.release.clear()
    first = asyncio.ensure_future(_call(coalescer, 0))
    await _until(lambda: replica.requests)
    now[0] = 1.0  # it came back after a second, in which the replica reported its service
    replica.release.set()
    await first
    replica.requests.clear()
    replica.release.clear()
    out = [asyncio.ensure_future(_call(coalescer, 1))]  # nothing out: goes at once
    await _until(lambda: replica.requests)
    out.append(asyncio.ensure_future(_call(coalescer, 2)))
    for _ in range(5):
        await asyncio.sleep(0)
    if busy:
        assert replica.requests == [1, 1]  # one running, one queued
        out.append(asyncio.ensure_future(_call(coalescer, 3)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert replica.requests == [1, 1]  # two out: the third waits
    else:
        assert replica.requests == [1]  # waits behind the one out
    replica.release.set()
    answers = await asyncio.gather(*out)
    assert [float(a["y"][0, 0]) for a, _ in answers] == [2.0 * (i + 1) for i in range(len(out))]
    assert coalescer.groups_held == 1


@pytest.fixture(scope="module")
def replica(model_repo):
    srv = ServerProcess(model_repo, "--max-queue-delay-ms", "1")
    yield srv
    srv.stop()


@pytest.mark.slow
async def test_merged_calls_to_a_real_model_server_answer_what_each_alone_would(
    model_repo, replica
):
    client = ReplicaClient()
    client.coalescer.set_max_rows("mlp", 8)
    xs = [
        np.random.default_rng(i).standard_normal((1 + i % 2, 4)).astype(np.float32)
        for i in range(5)
    ]
    try:
        answers = await asyncio.gather(*(client.infer(replica.url, "mlp", {"x": x}) for x in xs))
    finally:
        await client.close()
    # the first goes at once (nothing was out to the replica), the four behind it as one request
    assert (client.coalescer.requests_sent, client.coalescer.calls_merged) == (1, 4)
    for x, outputs in zip(xs, answers, strict=True):
        np.testing.assert_allclose(outputs["y"], _local(model_repo, "mlp", x)[0], rtol=1e-5)
