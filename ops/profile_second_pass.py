"""``tidegate profile``'s second pass: plan with the profile just fitted, and where the latency
plan is one the first pass did not measure, measure it and fit again (once at most).

The first pass runs the "auto" plans that the repository's PREVIOUS profile makes (the burst
service plans with what it finds in the repository). When that profile said "no split", the new
one had no planned split to read the split stages' scale from (only forced plans set it, and only
upward), so a profile that once said "no split" kept saying it. The second pass runs the plans
the new profile makes, beside one function in the same minutes, and calibrates on both passes.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path


@asynccontextmanager
async def scratch_service(profile, artifact, repo, workers: list[int], memory_mb: int, start=True):
    """A burst service that plans with ``profile``: a scratch repository links the model's
    files beside it, so the user's repository is not written."""
    from burst.service import BurstService

    with tempfile.TemporaryDirectory(prefix="tidegate-profile-pass-") as tmp:
        scratch = Path(tmp) / "repo" / artifact.name
        scratch.mkdir(parents=True)
        for f in (Path(repo) / artifact.name).iterdir():
            if f.name != "profile.json":
                (scratch / f.name).symlink_to(f.resolve())
        (scratch / "profile.json").write_text(json.dumps(profile.to_json()))
        svc = BurstService(
            scratch.parent,
            platform={"kind": "local"},
            store={"kind": "dir", "root": str(Path(tmp) / "objects")},
            memory_mb=memory_mb,
            concurrency=max(workers) + 4,
            keep_alive_s=600,
            function_timeout_s=300,
            log_dir=Path(tmp) / "logs",
            max_workers=max(*workers, 2),
        )
        if start:
            await svc.start()
        try:
            yield svc
        finally:
            if start:
                await svc.close()


def unmeasured_plans(profile, graph, artifact, svc, workers: list[int], runs) -> dict:
    """``{workers: plan}`` of the latency plans ``profile`` makes that no run measured."""
    from burst.planning import model_plan

    ran = {plan.plan_id for plan, _ in runs}
    out = {}
    for k in workers:
        if k < 2:
            continue
        plan = model_plan(graph, artifact.config, svc.plan_request(k, 1, "auto"), profile)
        if plan.plan_id not in ran:
            out[k] = plan
    return out


def _describe(plans: dict) -> str:
    return ", ".join(
        f"x{k} {sum(1 for s in p.stages if s.split != 'serial')} split stages"
        for k, p in sorted(plans.items())
    )


async def second_pass(measured, fitted, graph, artifact, repo, runs, config, x, say):
    """``fitted`` (the first pass's calibration of ``measured`` on ``runs``), or, where it
    plans a latency plan that was not measured, ``measured`` calibrated on the first pass's runs
    and the second pass's (those plans and one function, in turns). ``config`` is
    ``(workers, reps, memory_mb)``."""
    from ops.profile_calibrate import PlanRuns, calibrate, run_plans

    workers, reps, memory_mb = config
    async with scratch_service(fitted, artifact, repo, workers, memory_mb, start=False) as svc:
        todo = unmeasured_plans(fitted, graph, artifact, svc, workers, runs)
    if not todo:
        say("second pass: not needed (the new profile plans what was measured)")
        return fitted
    say(f"second pass: the new profile plans {_describe(todo)}, not measured; measuring them")
    async with scratch_service(fitted, artifact, repo, workers, memory_mb) as svc:
        plans = [(1, "none")] + [(k, "auto") for k in sorted(todo)]
        more = await run_plans(svc, artifact, graph, x, plans, reps, say)
    both = PlanRuns(
        list(runs) + list(more),
        list(getattr(runs, "host_ms", [])) + more.host_ms,
        _mean_node_ms(getattr(runs, "node_ms", {}), more.node_ms),
    )
    say("second pass: fitting again on both passes")
    refit = calibrate(measured, graph, svc, both, say)
    still = unmeasured_plans(refit, graph, artifact, svc, workers, both)
    if still:
        say(f"second pass: now plans {_describe(still)}; not measured (one extra pass at most)")
    return refit


def _mean_node_ms(a: dict, b: dict) -> dict:
    """Per node, the mean of the two passes' window times (each a median of its passes)."""
    if not a or set(a) != set(b):
        return b or a
    return {n: statistics.mean((a[n], b[n])) for n in a}
