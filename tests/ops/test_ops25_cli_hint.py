"""`tidegate plan --model mlp` (simulate, tune and loadgen spell it so) says the model is the NAME
argument there; it suggested "did you mean --help?"."""

from __future__ import annotations

import pytest

from ops.cli import main


@pytest.mark.parametrize(
    "argv", [["plan", "--repo", "r", "--model", "mlp"], ["export", "--model=mlp", "--out", "r"]]
)
def test_a_model_flag_where_the_model_is_an_argument_says_so(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "the model is the NAME argument here, no flag" in err and "--help?" not in err


def test_other_misspelt_flags_still_get_the_nearest_one(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--trace", "t.csv", "--modle", "mlp"])
    assert "did you mean --model?" in capsys.readouterr().err
