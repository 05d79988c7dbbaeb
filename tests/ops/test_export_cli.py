"""`tidegate export` through the real dispatcher: progress lines, artifacts, one-line errors."""

import tomllib

import pytest
import torch
from torch import nn

import ops.cli
from vmpool import zoo
from vmpool.artifact import load_artifact

torch.set_num_threads(1)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tidegate export: error: ")
    return err


def test_export_zoo_model(tmp_path, capsys):
    rc = ops.cli.main(
        ["export", "mlp", "--out", str(tmp_path), "--batch", "16", "--slo-ms", "40", "--seed", "4"]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "exporting mlp (0.5M params) ..." in out
    assert f"wrote {tmp_path / 'mlp' / 'model.pt2'} (" in out and "config.toml" in out
    assert "input FP32[-1,784]" in out and "output FP32[-1,10]" in out
    artifact = load_artifact(tmp_path, "mlp")
    assert (artifact.config.max_batch_size, artifact.config.slo_ms) == (16, 40.0)
    x = zoo.example_input("mlp", batch=16)
    with torch.no_grad():
        assert torch.allclose(artifact.load_module()(x), zoo.build("mlp", seed=4)(x), atol=1e-6)


def test_export_cnn_with_size_and_name(tmp_path, capsys):
    rc = ops.cli.main(
        [
            "export",
            "resnet18",
            "--out",
            str(tmp_path),
            "--size",
            "48x64",
            "--batch",
            "2",
            "--name",
            "resnet18-small",
        ]
    )
    assert rc == 0
    assert "exporting resnet18 (11.7M params) ..." in capsys.readouterr().out
    raw = tomllib.loads((tmp_path / "resnet18-small" / "config.toml").read_text())
    assert raw["inputs"][0]["shape"] == [-1, 3, 48, 64]
    assert raw["max_batch_size"] == 2


def test_export_with_weights(tmp_path, capsys):
    path = tmp_path / "w.pth"
    torch.save(zoo.build("mlp", seed=9).state_dict(), path)
    assert (
        ops.cli.main(["export", "mlp", "--out", str(tmp_path / "r"), "--weights", str(path)]) == 0
    )
    x = zoo.example_input("mlp")
    with torch.no_grad():
        got = load_artifact(tmp_path / "r", "mlp").load_module()(x)
        assert torch.allclose(got, zoo.build("mlp", seed=9)(x), atol=1e-6)

    torch.save(nn.Linear(3, 3).state_dict(), path)
    assert (
        ops.cli.main(["export", "mlp", "--out", str(tmp_path / "r2"), "--weights", str(path)]) == 2
    )
    err = one_line_error(capsys)
    assert "weights do not fit" in err and "layers.0.weight" in err


def test_import_program_file(tmp_path, capsys):
    batch = torch.export.Dim("batch", max=64)
    program = torch.export.export(
        nn.Linear(5, 2).eval(), (torch.randn(2, 5),), dynamic_shapes=({0: batch},)
    )
    path = tmp_path / "my_model.pt2"
    torch.export.save(program, str(path))
    assert ops.cli.main(["export", str(path), "--out", str(tmp_path / "repo")]) == 0
    out = capsys.readouterr().out
    assert "importing" in out and "as my_model" in out
    assert "input FP32[-1,5]" in out
    assert (
        ops.cli.main(
            ["export", str(path), "--name", "lin", "--out", str(tmp_path / "repo"), "--batch", "4"]
        )
        == 0
    )
    assert load_artifact(tmp_path / "repo", "lin").config.max_batch_size == 4

    assert ops.cli.main(["export", str(path), "--out", str(tmp_path), "--size", "32x32"]) == 2
    assert "zoo models only" in one_line_error(capsys)


def test_garbage_file_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "model.pt2"
    path.write_text("hello")
    assert ops.cli.main(["export", str(path), "--out", str(tmp_path / "repo")]) == 2
    assert "not a torch.export program" in one_line_error(capsys)
    assert not (tmp_path / "repo" / "model").exists()


def test_unknown_name_lists_the_zoo(tmp_path, capsys):
    assert ops.cli.main(["export", "resnet19", "--out", str(tmp_path)]) == 2
    err = one_line_error(capsys)
    assert "'resnet19' is neither a zoo model nor a file" in err
    assert all(name in err for name in zoo.MODELS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["resnet18", "--size", "224"], "--size must look like HxW"),
        (["resnet18", "--size", "axb"], "--size must look like HxW"),
        (["resnet18", "--size", "16x16"], "at least 32x32"),
        (["mlp", "--size", "32x32"], "--size applies to image models"),
        (["mlp", "--batch", "0"], "--batch must be >= 1"),
        (["mlp", "--slo-ms", "-5"], "--slo-ms must be positive"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    assert ops.cli.main(["export", *argv, "--out", str(tmp_path)]) == 2
    assert message in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_zoo(capsys):
    with pytest.raises(SystemExit) as info:
        ops.cli.main(["export", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--batch N" in out and "dynamic" in out
    assert all(name in out for name in zoo.MODELS)


def test_import_says_when_it_changes_what_was_asked(tmp_path, capsys):
    batch = torch.export.Dim("batch", max=16)
    bounded = torch.export.export(
        nn.Linear(5, 2).eval(), (torch.randn(2, 5),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(bounded, str(tmp_path / "bounded.pt2"))
    assert (
        ops.cli.main(
            ["export", str(tmp_path / "bounded.pt2"), "--out", str(tmp_path / "r"), "--batch", "32"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "warning: max batch size 32 capped at 16" in out
    assert load_artifact(tmp_path / "r", "bounded").config.max_batch_size == 16

    fixed = torch.export.export(nn.Linear(3, 2).eval(), (torch.randn(1, 3),))
    torch.export.save(fixed, str(tmp_path / "fixed.pt2"))
    assert ops.cli.main(["export", str(tmp_path / "fixed.pt2"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "warning: max batch size set to 1, not 8: the program has a fixed batch size" in out

    assert (
        ops.cli.main(
            [
                "export",
                str(tmp_path / "bounded.pt2"),
                "--out",
                str(tmp_path / "r"),
                "--batch",
                "4",
                "--name",
                "quiet",
            ]
        )
        == 0
    )
    assert "warning" not in capsys.readouterr().out  # nothing changed, nothing said


class _WithMeta(nn.Module):
    """A user model with a submodule named ``meta``: torch.export saves it, but
    ``program.module()`` (what the server loads) fails on it."""

    def __init__(self):
        super().__init__()
        self.meta = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.meta(x))


def test_a_program_the_server_cannot_rebuild_is_refused_before_writing(tmp_path, capsys):
    batch = torch.export.Dim("batch", max=64)
    program = torch.export.export(
        _WithMeta().eval(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},)
    )
    path = tmp_path / "with_meta.pt2"
    torch.export.save(program, str(path))
    assert ops.cli.main(["export", str(path), "--out", str(tmp_path / "repo")]) == 2
    err = one_line_error(capsys)
    assert "submodule 'meta'" in err and "rename" in err, err
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


class _Scaled(nn.Module):
    def forward(self, x, scale):
        return x * scale


def test_an_input_without_a_batch_dimension_is_named_when_batching_is_off(tmp_path, capsys):
    """x batches, a per-request ``scale [1]`` does not: the warning said the program had "a
    fixed batch size (x [-1, 4], scale [1])", which x has not."""
    batch = torch.export.Dim("batch", max=16)
    program = torch.export.export(
        _Scaled().eval(), (torch.randn(2, 4), torch.ones(1)), dynamic_shapes=({0: batch}, None)
    )
    torch.export.save(program, str(tmp_path / "scaled.pt2"))
    assert ops.cli.main(["export", str(tmp_path / "scaled.pt2"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "input scale [1] has no batch dimension, so requests are not batched" in out
    assert "fixed batch size" not in out
    assert load_artifact(tmp_path / "r", "scaled").config.max_batch_size == 1
