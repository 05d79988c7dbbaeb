"""Models users bring, unlike the zoo's (``byo_models``): each is planned, split and run as the
burst path runs it, and must answer what the model answers.

A transformer encoder exported with a dynamic batch was refused outright (``tidegate plan``:
"unsupported call target <built-in function mul>", the int arithmetic attention does on the
batch size); once built, the planner priced its attention projections at negative MACs (the
batch is not the first dim of [T, B, D]) and found "no plan fits" at 2 or 4 workers; and bytes of
a [T, heads * B, D] view were counted for one batch, not ``heads``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import byo_models as bm  # noqa: E402
from exported_models import assert_same, check_split_every_way, exported, run_split  # noqa: E402

from burst.candidates import stage_candidate  # noqa: E402
from burst.execute import worker_input  # noqa: E402
from burst.graph import GraphError, build_graph, program_weights, run_graph, run_node  # noqa: E402
from burst.plan import make_plan  # noqa: E402
from burst.planning import PlanRequest, load_profile, perf_model  # noqa: E402
from ops.cli import main  # noqa: E402

torch.set_num_threads(1)


def _model(name: str):
    return exported(bm, name)


def test_an_attention_model_with_a_dynamic_batch_builds_and_runs_at_any_batch():
    """Its graph holds ``view(x, [T, 4 * batch, 8])``: the size is computed per request, not
    the traced batch of 2 baked in."""
    module, _, graph, weights = _model("encoder")
    assert any(n.op == "operator.mul" for n in graph.nodes)
    for batch in (1, 3):
        xs = bm.example("encoder", batch=batch, seed=5)
        with torch.no_grad():
            assert_same(run_graph(graph, xs, weights), module(*xs), f"batch {batch}")


def test_an_attention_models_work_and_stage_times_are_never_negative():
    _, _, graph, _ = _model("encoder")
    assert all(n.macs >= 0 for n in graph.nodes)
    for workers in (2, 4):
        plan = make_plan(graph, workers=workers, split="output", batch=2)
        model = perf_model(graph, PlanRequest(workers=workers, batch=2), load_profile())
        for st in plan.stages:
            assert model.stage(stage_candidate(st)).mean_ms >= 0, st.nodes


@pytest.mark.parametrize("workers", [2, 4])
def test_the_planner_plans_an_attention_model_and_its_plan_runs_equal(workers):
    """It said "no plan of encoder fits" for any plan of more than one worker."""
    module, _, graph, weights = _model("encoder")
    xs = bm.example("encoder", batch=2, seed=5)
    plan = make_plan(graph, workers=workers, split="auto", batch=2)
    with torch.no_grad():
        assert_same(run_split(graph, plan, weights, xs), module(*xs), f"auto x{workers}")


def test_a_split_stages_bytes_are_what_its_workers_are_sent():
    """``tidegate plan``'s "in MB/worker" of the attention's output projection, whose input is
    the [T * batch, D] reshape: it was a twelfth of what was sent (one batch, not T)."""
    _, _, graph, weights = _model("encoder")
    batch = 3
    xs = bm.example("encoder", batch=batch, seed=5)
    plan = make_plan(graph, workers=2, split="output", batch=batch)
    env = dict(zip(graph.inputs, xs))
    checked = 0
    with torch.no_grad():
        for n in graph.nodes:
            env[n.name] = run_node(n, env, weights)
    for st in plan.stages:
        if st.split == "serial":
            continue
        for j in range(st.workers):
            sent = worker_input(st, j, env[st.input])
            assert st.bytes_in[j] == sent.numel() * sent.element_size(), (st.input, j)
        checked += 1
    assert checked >= 4


# every model, every way the burst path may split it, at the traced batch and another
@pytest.mark.parametrize("name", list(bm.BYO))
def test_each_model_split_every_way_equals_the_model(name):
    ways = (("spatial", 2), ("spatial", 4), ("output", 3), ("auto", 4))
    check_split_every_way(bm, name, (1, 2), ways)


def _cli(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_tidegate_plan_plans_a_users_attention_model(tmp_path):
    """As the README says: save the program, ``tidegate export`` it, ``tidegate plan`` it."""
    _, program, _, _ = _model("encoder")
    torch.export.save(program, str(tmp_path / "encoder.pt2"))
    repo = tmp_path / "models"
    assert (
        _cli("export", str(tmp_path / "encoder.pt2"), "--name", "enc", "--out", str(repo))[0] == 0
    )
    for args in (("--workers", "4"), ("--workers", "2", "--split", "output")):
        code, out, err = _cli("plan", "enc", "--repo", str(repo), *args, "--json")
        assert code == 0, err
        plan = json.loads(out)
        assert plan["model"] == "enc" and plan["stages"]


def _sequence_model():
    """The text classifier exported with its sequence length dynamic too."""
    batch, seq = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=4, max=64)
    return torch.export.export(
        bm.build("textcls"), tuple(bm.example("textcls")), dynamic_shapes=({0: batch, 1: seq},)
    )


def test_a_model_with_a_dynamic_sequence_length_is_refused_in_one_line(tmp_path):
    """Its plan took the sequence length for the batch: every burst request failed in the
    master ("shape [1, 20] does not fit the plan (expects [1, 1])"), a 503 after a paid
    invocation; ``tidegate plan`` printed that plan. Now both say why, before any function runs."""
    program = _sequence_model()
    with pytest.raises(GraphError, match="dynamic dimension 1 besides the batch"):
        build_graph(program, "text")
    torch.export.save(program, str(tmp_path / "text.pt2"))
    repo = tmp_path / "models"
    assert _cli("export", str(tmp_path / "text.pt2"), "--name", "text", "--out", str(repo))[0] == 0
    code, out, err = _cli("plan", "text", "--repo", str(repo), "--workers", "2")
    assert code != 0 and not out
    assert "dynamic dimension 1" in err and "Traceback" not in err and err.count("\n") == 1


def test_a_model_exported_with_a_fixed_batch_is_planned_and_runs_equal():
    """No ``torch.export.Dim`` (the README asks for one; users forget): batch 1 only."""
    module = bm.build("unet")
    x = bm.example("unet", batch=1, seed=5)
    program = torch.export.export(module, tuple(x))
    graph, weights = build_graph(program, "unet1"), program_weights(program)
    assert graph.input_shapes == [[1, 3, 32, 24]]
    with torch.no_grad():
        want = module(*x)
    for split in ("spatial", "output", "auto"):
        plan = make_plan(graph, workers=4, split=split, batch=1)
        assert_same(run_split(graph, plan, weights, x), want, split)


def test_tidegate_profile_refuses_a_sequence_length_model_in_one_line(tmp_path):
    """It ended in a traceback of GraphError."""
    program = _sequence_model()
    torch.export.save(program, str(tmp_path / "text.pt2"))
    repo = tmp_path / "models"
    assert _cli("export", str(tmp_path / "text.pt2"), "--name", "text", "--out", str(repo))[0] == 0
    code, _, err = _cli("profile", "text", "--repo", str(repo), "--reps", "2", "--cold-reps", "0")
    assert code == 2 and "dynamic dimension 1" in err and err.count("\n") == 1
    assert not (repo / "text" / "profile.json").exists()
