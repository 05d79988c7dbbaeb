"""Traces an ops person brings that our own tests did not: compressed files (the public traces
ship as .csv.gz / .xz), several models in one trace, several days of the Azure 2019 trace."""

from __future__ import annotations

import bz2
import gzip
import lzma

import numpy as np
import pytest

from ops.cli import main
from ops.traces import TraceError, read_trace

PLAIN = "timestamp_s,model,tenant\n" + "".join(
    f"{t * 0.25:.2f},mlp,{'acme' if t % 3 else 'beta'}\n" for t in range(40)
)
AZURE_2021 = "app,func,end_timestamp,duration\n" + "".join(
    f"a{i % 2},f,{(i * 7919) % 97 + 0.125:.3f},0.0625\n" for i in range(60)
)


@pytest.mark.parametrize("opener", [gzip.open, lzma.open, bz2.open], ids=["gz", "xz", "bz2"])
@pytest.mark.parametrize("text", [PLAIN, AZURE_2021], ids=["csv", "azure2021"])
def test_a_compressed_trace_reads_as_the_plain_file(tmp_path, opener, text):
    plain = tmp_path / "trace.csv"
    plain.write_text(text)
    packed = tmp_path / "trace.csv.packed"
    with opener(packed, "wt") as f:
        f.write(text)
    want, got = read_trace(plain), read_trace(packed)
    assert len(got) == len(want) > 0
    np.testing.assert_array_equal(got.arrivals_s, want.arrivals_s)
    assert got.tenants == want.tenants and got.models == want.models


def test_a_truncated_archive_is_one_line(tmp_path, capsys):
    whole = gzip.compress(PLAIN.encode() * 50)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(TraceError, match="cannot decompress"):
        read_trace(cut)
    assert main(["simulate", "--trace", str(cut), "--policy", "burst-only"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.startswith("tidegate simulate: error:")


def test_tune_refuses_a_trace_of_several_models_naming_them(tmp_path, capsys):
    """Tune tunes one model's fleet: a two-model trace without --model was run as if every
    request were the first model's (alphabetically), with its profile, silently."""
    trace = tmp_path / "two.csv"
    trace.write_text(
        "".join(f"{i * 0.1:.1f},{'mlp' if i % 2 else 'resnet18'}\n" for i in range(50))
    )
    argv = ["tune", "--trace", str(trace), "--policy", "threshold"]
    argv += ["--trials", "2", "--out", str(tmp_path / "tuned.toml")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "2 models" in err and "mlp 25" in err and "--model" in err
    assert not (tmp_path / "tuned.toml").exists()


def _azure2019_day(path, functions: int, per_minute: int) -> None:
    head = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(map(str, range(1, 1441)))
    rows = [
        f"o{f % 2},app{f},fn{f},http," + ",".join([str(per_minute)] * 600 + ["0"] * 840)
        for f in range(functions)
    ]
    path.write_text("\n".join([head, *rows]) + "\n")


def test_azure2019_days_by_pattern_follow_each_other(tmp_path, capsys):
    """A week of the 2019 trace is 14 files (...anon.d01.csv .. d14.csv): a quoted glob reads
    them as one trace, each at its day (d03 missing: a day without requests)."""
    for day, n in ((1, 1), (2, 2), (4, 3)):
        _azure2019_day(tmp_path / f"invocations_per_function_md.anon.d{day:02d}.csv", n, 2)
    trace = read_trace(str(tmp_path / "invocations_per_function_md.anon.d*.csv"))
    per_day = np.bincount((trace.arrivals_s // 86400).astype(int))
    assert per_day.tolist() == [1200, 2400, 0, 3600]
    assert np.all(np.diff(trace.arrivals_s) >= 0)
    (tmp_path / "other.csv").write_text("timestamp_s,model\n1,mlp\n")
    with pytest.raises(TraceError, match="Azure 2019 daily files"):
        read_trace(str(tmp_path / "*.csv"))
    with pytest.raises(TraceError, match="does not exist"):
        read_trace(str(tmp_path / "nothing*.csv"))


def test_blank_lines_in_azure_files_are_skipped(tmp_path):
    """As the CSV, gaps and LLM readers skip them (a file saved with a blank last line was
    'expected 1444 columns, got 0')."""
    day = tmp_path / "d.csv"
    _azure2019_day(day, 1, 1)
    day.write_text(day.read_text() + "\n\n")
    assert len(read_trace(day)) == 600
    calls = tmp_path / "a.csv"
    calls.write_text(AZURE_2021.replace("\n", "\n\n", 3) + "\n")
    assert len(read_trace(calls)) == 60


def test_epoch_milliseconds_are_refused_not_read_as_a_month(tmp_path):
    """An hour of requests stamped in epoch ms (as many loggers write them) read as seconds
    was a 41-day trace at 1/1000 of its rate, silently."""
    path = tmp_path / "ms.csv"
    path.write_text("".join(f"{1_764_500_000_000 + i * 1000},mlp\n" for i in range(3600)))
    with pytest.raises(TraceError, match="epoch milliseconds"):
        read_trace(path)
    path.write_text("".join(f"{1_764_500_000 + i},mlp\n" for i in range(3600)))
    assert read_trace(path).duration_s == 3599.0  # epoch seconds still read (rebased)


def test_llm_timestamps_with_an_offset_read_quietly_in_utc(tmp_path):
    """The 2024 Azure LLM release writes '2024-05-10 00:00:00.009930+00:00': each read printed
    numpy's timezone UserWarning."""
    import warnings

    path = tmp_path / "llm.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2024-05-10 00:00:00.5+02:00,10,1\n2024-05-09 22:00:02+00:00,10,1\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace = read_trace(path)
    assert trace.arrivals_s.tolist() == [0.0, 1.5]


def test_the_trace_tables_format_and_seed_are_used(tmp_path):
    """[trace] format and seed were accepted and ignored: the run used auto-detection and
    seed 0, whatever the config said."""
    import argparse

    from ops.commands.simulate import add_arguments, load_inputs

    day = tmp_path / "d.csv"
    _azure2019_day(day, 2, 3)
    config = tmp_path / "sim.toml"
    config.write_text('[trace]\nformat = "azure2019"\nseed = 5\n')
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--trace", str(day), "--config", str(config)])
    trace = load_inputs(args)[0]
    np.testing.assert_array_equal(trace.arrivals_s, read_trace(day, seed=5).arrivals_s)
    assert args.seed == 5  # the runs' draws too
    args = parser.parse_args(["--trace", str(day), "--config", str(config), "--seed", "0"])
    np.testing.assert_array_equal(load_inputs(args)[0].arrivals_s, read_trace(day).arrivals_s)
    gaps = tmp_path / "g.csv"
    gaps.write_text("0.5,1\n0.5,1\n")  # two columns: read as CSV unless the config says gaps
    config.write_text('[trace]\nformat = "gaps"\n')
    args = parser.parse_args(["--trace", str(gaps), "--config", str(config)])
    assert load_inputs(args)[0].arrivals_s.tolist() == [0.0, 0.5]
    config.write_text('[trace]\nformat = "azure2020"\n')
    with pytest.raises(Exception, match="format 'azure2020'"):
        load_inputs(parser.parse_args(["--trace", str(gaps), "--config", str(config)]))
