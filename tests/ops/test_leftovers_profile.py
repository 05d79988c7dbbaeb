"""``tidegate profile``'s flags checked before anything is measured: a bad ``--sqs-endpoint``
URL, an SQS it cannot reach or sign for (each a traceback at the END of the whole run), a batch
size of 0 (timed as 1) or past the model's max_batch_size (dropped without a word), and
``--sqs-region`` without ``--sqs-endpoint`` (ignored). A queue that fails after the check costs
the fit, not the rest of the run."""

from __future__ import annotations

import json
import socket

import boto3
import pytest

from ops.cli import main
from policies.profile import Profile
from tests.support.s3_server import S3_TEST_REGION, s3_endpoint  # noqa: F401
from vmpool.export import export_zoo


class Measured(Exception):
    """Raised by the stand-in measurement: how far a run got."""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    export_zoo("resnet18", root, size=(32, 32), max_batch_size=4)
    return root


@pytest.fixture
def measured(monkeypatch):
    """The batches a run would time; the stand-in stops it there (nothing slow runs)."""
    from ops.commands import profile_measure

    seen: list[list[int]] = []

    def stand_in(artifact, reps, batches, say):
        seen.append(batches)
        raise Measured

    monkeypatch.setattr(profile_measure, "measure_compute", stand_in)
    return seen


def _run(repo, *flags) -> list[str]:
    return ["profile", "resnet18", "--repo", str(repo), "--reps", "2", *flags]


def _exit(argv) -> int:
    """main's status, or argparse's (a flag refused as it is read exits)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--sqs-endpoint", "notaurl"], "must be an http(s) URL"),
        (["--sqs-endpoint", "http://127.0.0.1:port"], "http://127.0.0.1:port"),
        (["--vm-batches", "0"], "--vm-batches must be batch sizes of at least 1, got '0'"),
        (["--vm-batches", "2,64"], "--vm-batches 64 is past resnet18's max_batch_size 4"),
        (["--sqs-region", "eu-west-1"], "--sqs-region goes with --sqs-endpoint"),
        (["--reps", "1"], "--reps must be at least 2"),
        (["--memory-mb", "64"], "--memory-mb must be 128-10240"),
        (
            ["--sqs-endpoint", "https://sqs.eu-west-1.amazonaws.com", "--sqs-region", "us-east-1"],
            "is in eu-west-1",
        ),
    ],
)
def test_a_bad_flag_is_one_line_before_anything_is_measured(repo, measured, capsys, flags, says):
    assert _exit(_run(repo, *flags)) == 2
    assert says in _one_line(capsys)
    assert measured == []


def test_batch_sizes_given_are_timed_and_the_default_stops_at_the_models_max(repo, measured):
    with pytest.raises(Measured):
        main(_run(repo, "--vm-batches", "3,1"))
    with pytest.raises(Measured):
        main(_run(repo))
    assert measured == [[1, 3], [1, 2, 4]]


def test_help_names_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 6," in text and "else us-east-1)" in text
    assert "(default 1,2,4,8 up to max_batch_size)" in text


@pytest.mark.parametrize("credentials", [False, True])
def test_an_sqs_it_cannot_use_is_one_line_before_measuring(
    repo, measured, capsys, monkeypatch, tmp_path, credentials
):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    if credentials:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    assert main(_run(repo, "--sqs-endpoint", endpoint)) == 2
    err = _one_line(capsys)
    assert f"--sqs-endpoint {endpoint}: " in err and "nothing measured" in err
    assert ("Could not connect" if credentials else "Unable to locate credentials") in err
    assert measured == []


def _base_profile(out) -> None:
    from burst.planning import load_profile

    out.write_text(json.dumps(load_profile().to_json()))


def test_the_fit_is_measured_through_a_reachable_sqs(repo, tmp_path, capsys, s3_endpoint):  # noqa: F811
    out = tmp_path / "profile.json"
    _base_profile(out)
    args = ["--compute-only", "--vm-batches", "1", "--out", str(out), "--sqs-endpoint", s3_endpoint]
    assert main(_run(repo, *args)) == 0
    assert "transfer sqs:" in capsys.readouterr().out
    profile = Profile.from_json(json.loads(out.read_text()))
    assert "sqs" in profile.transfer and len(profile.models["resnet18"].node_ms) > 50
    sqs = boto3.client("sqs", endpoint_url=s3_endpoint, region_name=S3_TEST_REGION)
    assert not [u for u in sqs.list_queues().get("QueueUrls", []) if "/tgprof" in u]


def test_an_sqs_failing_after_the_check_keeps_what_was_measured(
    repo,
    tmp_path,
    capsys,
    monkeypatch,
    s3_endpoint,  # noqa: F811
):
    from burst.store.base import StoreError
    from ops import queue_fit

    async def gone(cfg, reps):  # the queue service went away during the run
        raise StoreError("sqs send failed after retries: Could not connect to the endpoint URL")

    monkeypatch.setattr(queue_fit, "measure_sqs_fit", gone)
    out = tmp_path / "profile.json"
    _base_profile(out)
    args = ["--compute-only", "--vm-batches", "1", "--out", str(out), "--sqs-endpoint", s3_endpoint]
    assert main(_run(repo, *args)) == 1
    err = _one_line(capsys)
    assert "the SQS fit at" in err and "Could not connect" in err and "no transfer.sqs" in err
    profile = Profile.from_json(json.loads(out.read_text()))
    assert "sqs" not in profile.transfer and len(profile.models["resnet18"].node_ms) > 50
