"""Session 22 (ops22): `simulate --model NAME` where nothing describes NAME. Before, a synthetic
trace with `--model nosuchmodel` simulated on ResNet-18's figures, with only "(nothing measured
for nosuchmodel)" in the banner: a typo gave another model's cost at exit 0."""

from __future__ import annotations

import json

from ops.cli import main

SYNTH = "synth:steady:duration_s=20,rps=2"


def test_a_model_no_profile_knows_is_a_one_line_error(capsys):
    for command in ("simulate", "tune"):
        assert main([command, "--trace", SYNTH, "--model", "nosuchmodel"]) == 2
        err = capsys.readouterr().err
        assert "'nosuchmodel' is not in the reference profile" in err
        assert "tidegate profile nosuchmodel" in err and len(err.strip().splitlines()) == 1


def test_zoo_models_and_a_traces_own_names_still_simulate(tmp_path, capsys):
    out = tmp_path / "sim.json"
    argv = ["simulate", "--trace", SYNTH, "--model", "mobilenet_v2", "--policy", "vm-peak"]
    assert main([*argv, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == "mobilenet_v2"
    trace = tmp_path / "t.csv"  # the trace names its model: the target's figures, as said
    trace.write_text("timestamp_s,model,tenant\n" + "".join(f"{i},m1,a\n" for i in range(10)))
    argv = ["simulate", "--trace", str(trace), "--model", "m1", "--policy", "vm-peak"]
    assert main([*argv, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["requests"] == 10
    assert "nothing measured for m1" in capsys.readouterr().err
