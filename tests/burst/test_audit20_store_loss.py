"""A store that lost a plan's objects (a dir store's objects/ removed, a bucket emptied by a
lifecycle rule, an S3 server restarted empty): the request that finds them gone fails cleanly,
and the next one prepares the plan again. Before, every burst request of the model failed
"plans/.../plan.json is not in the store" until the gateway restarted (54 of 54 in the faults
audit). Real processes: the local function runtime and a directory store."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from burst.service_plans import forget_unstored

from .test_service import _close, _service, _until, mlp_repo  # noqa: F401 (the module's fixture)

pytestmark = pytest.mark.slow


async def test_a_plan_whose_objects_left_the_store_is_prepared_again(mlp_repo, tmp_path):  # noqa: F811
    repo, x, ref = mlp_repo
    svc = _service(repo, tmp_path)
    await svc.start()
    try:
        first = await svc.infer("mlp", {"input": x}, workers=2)
        assert _close(first.outputs["output"], ref)
        shutil.rmtree(tmp_path / "objects")  # the plans' objects are gone
        os.kill(svc.supervisor.proc.pid, signal.SIGKILL)  # and instances start cold: they read
        await _until(lambda: not svc.ready(), "readiness to drop")  # them from the store
        await _until(svc.ready, "the runtime to be restarted")
        answers, failures = [], []
        for _ in range(3):
            try:
                answers.append(await svc.infer("mlp", {"input": x}, workers=2))
            except Exception as exc:  # noqa: BLE001 - the one that found them gone
                failures.append(str(exc))
        assert len(failures) <= 1, failures
        assert all("is not in the store" in f for f in failures), failures
        assert len(answers) >= 2 and all(_close(a.outputs["output"], ref) for a in answers)
        assert (tmp_path / "objects" / "plans").is_dir()  # written again
    finally:
        await svc.close()


def test_only_a_missing_object_of_that_plan_forgets_it():
    class Plan:
        plan_id = "p1"

    plan, other = Plan(), Plan()
    plans = {("m", 2): plan, ("m", 4): other}
    assert not forget_unstored(plans, plan, RuntimeError("plans/p9/plan.json is not in the store"))
    assert not forget_unstored(plans, plan, RuntimeError("plans/p1/plan.json cannot be read"))
    assert plans == {("m", 2): plan, ("m", 4): other}
    assert forget_unstored(plans, plan, RuntimeError("x: plans/p1/s0/w1 is not in the store: y"))
    assert plans == {("m", 4): other}
