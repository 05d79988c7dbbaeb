"""Azure Functions 2019 daily files joined with ``cat`` repeat the header mid-file: its minutes
("1,2,...,1440") were read as one function's per-minute counts, ~1 M requests of a function
called HashOwner added without a word (5 requests became 1,037,530). Now a one-line error says
what to do instead."""

from __future__ import annotations

import pytest

from ops.cli import main
from ops.traces import TraceError, read_trace

HEADER = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(m) for m in range(1, 1441))


def _day(function: str, counts: dict[int, int]) -> str:
    cells = [str(counts.get(m, 0)) for m in range(1, 1441)]
    return ",".join(["owner", "app", function, "http", *cells])


def test_a_header_repeated_mid_file_is_a_one_line_error(tmp_path):
    joined = tmp_path / "week.csv"
    joined.write_text("\n".join([HEADER, _day("f", {1: 3}), HEADER, _day("f", {2: 2})]) + "\n")
    with pytest.raises(TraceError, match=r"week.csv:3: the header again .*quoted glob"):
        read_trace(joined)


def test_the_cli_says_so_and_exits_non_zero(tmp_path, capsys):
    joined = tmp_path / "week.csv"
    joined.write_text("\n".join([HEADER, _day("f", {1: 3}), HEADER, _day("g", {2: 2})]) + "\n")
    assert main(["simulate", "--trace", str(joined), "--policy", "vm-peak"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the header again" in err


def test_the_days_as_a_glob_still_read_one_after_another(tmp_path):
    (tmp_path / "d01.csv").write_text(HEADER + "\n" + _day("f", {1: 3}) + "\n")
    (tmp_path / "d02.csv").write_text(HEADER + "\n" + _day("f", {2: 2}) + "\n")
    trace = read_trace(str(tmp_path / "d*.csv"))
    assert len(trace) == 5
    assert trace.arrivals_s[-1] > 86400  # the second day's


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "1,1,0,5\n2,1,0,6\n\n3,1,0,7,99\n",
            "per.csv:4: expected 4 numbers a line (as the first), got 5",
        ),
        ("1,1,0,5\n2,1,0\n", "per.csv:2: expected 4 numbers a line (as the first), got 3"),
        ("1,1,0,5\n\n\n2,1,0,x\n", "per.csv:4: expected numbers only: 'x' is not one"),
    ],
)
def test_a_per_second_file_with_an_odd_line_names_the_line(tmp_path, text, said):
    """numpy's message counted data rows (from 0 or 1 by error, blank lines not counted) and
    told the user to 'use `usecols` to select a subset', an argument of numpy's."""
    path = tmp_path / "per.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as err:
        read_trace(path, fmt="per-second")
    assert str(err.value) == f"{tmp_path}/{said}"


def test_a_mooncake_timestamp_of_true_is_refused(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 1}\n{"timestamp": true}\n')
    with pytest.raises(TraceError, match=r"mc.jsonl:2: expected a JSON object with a numeric"):
        read_trace(path, fmt="mooncake")


def test_a_per_second_file_with_a_fractional_second_is_refused(tmp_path):
    """7.5 was read as second 7 without a word; whole seconds like 8.0 still read."""
    path = tmp_path / "per.csv"
    path.write_text("7,1,0,12\n7.5,1,0,3\n")
    with pytest.raises(TraceError, match=r"per.csv: the first column is a whole second .* not 7.5"):
        read_trace(path, fmt="per-second")
    path.write_text("7,1,0,12\n8.0,1,0,3\n")
    assert len(read_trace(path, fmt="per-second")) == 15
