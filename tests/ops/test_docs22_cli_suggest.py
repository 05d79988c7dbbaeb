"""A misspelt command, flag or choice: one line naming the nearest right one, exit status 2.

A new user's typos (docs22): ``tidegate serve --prot 9000`` said only "unrecognized arguments",
``tidegate servee`` listed eleven commands, and ``tidegate export resnet18 --outt m`` complained
that ``--out`` was missing without naming the flag that was misspelt.
"""

from __future__ import annotations

import pytest

from ops.cli import main

TYPOS = [
    ("serve --prot 9000", "unrecognized arguments: --prot 9000", "did you mean --port?"),
    ("serve --grpc-prot 1", "unrecognized arguments: --grpc-prot 1", "did you mean --grpc-port?"),
    ("serve --data-dir=/x --replcas=2", "--replcas=2", "did you mean --replicas?"),
    ("servee", "invalid choice: 'servee'", "did you mean 'serve'?"),
    ("ledger prun", "invalid choice: 'prun'", "did you mean 'prune'?"),
    ("serve --log-level warn", "invalid choice: 'warn'", "did you mean 'warning'?"),
    ("plan m --repo r --objective latncy", "invalid choice: 'latncy'", "did you mean 'latency'?"),
    ("export resnet18 --outt m", "unrecognized arguments: --outt", "did you mean --out?"),
    ("report --formt csv", "unrecognized arguments: --formt csv", "did you mean --format?"),
]


@pytest.mark.parametrize("argv, says, hint", TYPOS)
def test_a_typo_names_the_nearest_right_spelling(capsys, argv, says, hint):
    with pytest.raises(SystemExit) as stopped:
        main(argv.split())
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert stopped.value.code == 2
    assert len(lines) == 1, err
    assert says in lines[0] and hint in lines[0], err
    assert lines[0].endswith("--help)"), err


def test_a_flag_far_from_any_gets_no_guess(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--zzzzzz"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert "unrecognized arguments: --zzzzzz" in err and "did you mean" not in err


def test_a_flag_value_that_looks_like_a_flag_is_left_alone(tmp_path, capsys):
    # the value of a flag is not a flag, whatever it starts with: only real unknowns are named
    with pytest.raises(SystemExit):
        main(["plan", "m", "--repo", str(tmp_path), "--slo-ms", "-5", "--objectve", "cost"])
    err = capsys.readouterr().err
    assert "did you mean --objective?" in err and "-5" not in err.split("error:")[1]


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"tidegate {version('tidegate')}"


def test_a_misspelt_model_name_names_the_nearest(tmp_path, capsys):
    from vmpool.export import export_zoo

    export_zoo("mlp", tmp_path / "repo", seed=0)
    assert main(["plan", "mpl", "--repo", str(tmp_path / "repo")]) == 2
    assert "did you mean 'mlp'?" in capsys.readouterr().err
    assert main(["export", "resnet19", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'resnet18'?" in err and not (tmp_path / "out" / "resnet19").exists()
