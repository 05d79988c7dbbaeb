"""Exporting zoo models and importing user programs into a model repository."""

import tomllib

import pytest
import torch
from torch import nn

from vmpool import export, zoo
from vmpool.artifact import ArtifactError, list_models, load_artifact

torch.set_num_threads(1)

CNN_SIZE = (64, 64)  # small, so the export round trips stay quick


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """One repository with resnet18 (64x64) and mlp, exported once for the module."""
    root = tmp_path_factory.mktemp("repo")
    export.export_zoo("resnet18", root, size=CNN_SIZE)
    export.export_zoo("mlp", root, max_batch_size=4, slo_ms=25.0)
    return root


@pytest.mark.parametrize("name, size", [("resnet18", CNN_SIZE), ("mlp", None)])
@pytest.mark.parametrize("batch", [1, 3])
def test_reloaded_program_equals_eager(repo, name, size, batch):
    module = load_artifact(repo, name).load_module()
    eager = zoo.build(name)
    x = zoo.example_input(name, batch=batch, size=size, seed=11)
    with torch.no_grad():
        got, want = module(x), eager(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5


def test_config_toml_has_dynamic_batch_shapes(repo):
    raw = tomllib.loads((repo / "resnet18" / "config.toml").read_text())
    assert raw["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 64, 64]}]
    assert raw["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 1000]}]
    assert raw["max_batch_size"] == zoo.MODELS["resnet18"].max_batch_size
    assert raw["slo_ms"] == zoo.MODELS["resnet18"].slo_ms
    assert raw["parameters"] == 11_689_512
    mlp = load_artifact(repo, "mlp").config
    assert mlp.inputs[0].shape == (-1, 784) and mlp.outputs[0].shape == (-1, 10)
    assert (mlp.max_batch_size, mlp.slo_ms) == (4, 25.0)
    assert list_models(repo) == ["mlp", "resnet18"]


def test_batch_above_the_maximum_is_refused(repo):
    module = load_artifact(repo, "mlp").load_module()  # max_batch_size 4
    assert module(zoo.example_input("mlp", batch=4)).shape == (4, 10)
    with pytest.raises(AssertionError, match="<= 4"):  # torch's input guard
        module(zoo.example_input("mlp", batch=5))


def test_program_keeps_standard_aten_ops(tmp_path):
    artifact = export.export_zoo("mobilenet_v2", tmp_path, size=(32, 32), max_batch_size=2)
    ops = {str(n.target) for n in artifact.load_program().graph.nodes if n.op == "call_function"}
    allowed = {
        "aten.conv2d.default",
        "aten.batch_norm.default",
        "aten.relu.default",
        "aten.hardtanh.default",
        "aten.max_pool2d.default",
        "aten.adaptive_avg_pool2d.default",
        "aten.flatten.using_ints",
        "aten.linear.default",
        "aten.add.Tensor",
        "aten.dropout.default",
    }
    assert {"aten.conv2d.default", "aten.hardtanh.default", "aten.add.Tensor"} <= ops
    assert ops <= allowed, ops - allowed


def test_weights_file_is_used(tmp_path):
    trained = zoo.build("mlp", seed=7)
    path = tmp_path / "mlp.pth"
    torch.save(trained.state_dict(), path)
    artifact = export.export_zoo("mlp", tmp_path / "repo", weights=path)
    x = zoo.example_input("mlp", batch=3)
    with torch.no_grad():
        got = artifact.load_module()(x)
        assert (got - trained(x)).abs().max().item() <= 1e-6
        assert not torch.allclose(got, zoo.build("mlp", seed=0)(x))
    assert "mlp.pth" in artifact.config.extra["source"]


def test_checkpoint_wrappers_are_unwrapped(tmp_path):
    trained = zoo.build("mlp", seed=3)
    path = tmp_path / "ckpt.pt"
    wrapped = {f"module.{k}": v for k, v in trained.state_dict().items()}  # DataParallel keys
    torch.save({"state_dict": wrapped, "epoch": 9}, path)
    module = export.export_zoo("mlp", tmp_path / "repo", weights=path).load_module()
    x = zoo.example_input("mlp")
    with torch.no_grad():
        assert torch.allclose(module(x), trained(x), atol=1e-6)


def test_mismatched_weights_name_the_keys(tmp_path):
    state = zoo.build("resnet18").state_dict()
    del state["fc.weight"]
    state["head.weight"] = torch.zeros(3)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ArtifactError) as info:
        export.export_zoo("resnet18", tmp_path / "repo", weights=path)
    message = str(info.value)
    assert "missing 1: fc.weight" in message
    assert "unexpected 1: head.weight" in message
    assert "conv1.weight [64, 3, 3, 3] vs [64, 3, 7, 7]" in message
    assert not (tmp_path / "repo").exists()  # nothing half-written


def test_unreadable_weights_file(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="cannot read weights"):
        export.export_zoo("mlp", tmp_path, weights=path)
    with pytest.raises(ArtifactError, match="not found"):
        export.export_zoo("mlp", tmp_path, weights=tmp_path / "missing.pth")


def test_unknown_zoo_model(tmp_path):
    with pytest.raises(ArtifactError, match="known: resnet18"):
        export.export_zoo("resnet19", tmp_path)


class TwoHeads(nn.Module):
    """A user model with two inputs and two outputs of different dtypes."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 4)

    def forward(self, features, bias):
        scores = self.proj(features) + bias
        return scores, scores.argmax(dim=1)


def test_export_module_with_several_tensors(tmp_path):
    module = TwoHeads()
    features, bias = torch.randn(1, 6), torch.randn(1, 4)  # batch 1: traced at 2 anyway
    artifact = export.export_module(
        module,
        (features, bias),
        name="two",
        repo=tmp_path,
        output_names=["scores", "label"],
        max_batch_size=1,
    )
    cfg = load_artifact(tmp_path, "two").config
    assert [(t.name, t.datatype, t.shape) for t in cfg.inputs] == [
        ("input__0", "FP32", (-1, 6)),
        ("input__1", "FP32", (-1, 4)),
    ]
    assert [(t.name, t.datatype, t.shape) for t in cfg.outputs] == [
        ("scores", "FP32", (-1, 4)),
        ("label", "INT64", (-1,)),
    ]
    assert cfg.max_batch_size == 1
    scores, label = artifact.load_module()(features, bias)
    assert torch.allclose(scores, module(features, bias)[0])
    assert label.dtype == torch.int64


def test_fixed_batch_model_is_refused_clearly(tmp_path):
    class FixedBatch(nn.Module):
        def forward(self, x):
            return x.reshape(2, -1)

    with pytest.raises(ArtifactError, match="fixes the batch size"):
        export.export_module(FixedBatch(), (torch.randn(2, 3, 4),), name="fixed", repo=tmp_path)
    assert list_models(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"name": "bad name"}, "invalid model name"),
        ({"output_names": ["a", "b"]}, "2 output names for 1 outputs"),
    ],
)
def test_export_module_bad_arguments(tmp_path, kwargs, message):
    args = {"name": "m", "repo": tmp_path, **kwargs}
    with pytest.raises(ArtifactError, match=message):
        export.export_module(nn.Linear(3, 2), (torch.randn(2, 3),), **args)


def test_import_user_program(tmp_path):
    module = TwoHeads().eval()
    batch = torch.export.Dim("batch", max=16)
    program = torch.export.export(
        module, (torch.randn(2, 6), torch.randn(2, 4)), dynamic_shapes=({0: batch}, {0: batch})
    )
    path = tmp_path / "user.pt2"
    torch.export.save(program, str(path))
    artifact = export.import_program(
        path, tmp_path / "repo", "scorer", max_batch_size=32, slo_ms=120.0
    )
    assert artifact.program_path.read_bytes() == path.read_bytes()
    cfg = load_artifact(tmp_path / "repo", "scorer").config
    assert [(t.name, t.datatype, t.shape) for t in cfg.inputs] == [
        ("features", "FP32", (-1, 6)),
        ("bias", "FP32", (-1, 4)),
    ]
    assert [(t.name, t.datatype, t.shape) for t in cfg.outputs] == [
        ("output__0", "FP32", (-1, 4)),
        ("output__1", "INT64", (-1,)),
    ]
    assert cfg.max_batch_size == 16  # the program's own bound wins over the 32 asked for
    assert cfg.slo_ms == 120.0
    features, bias = torch.randn(5, 6), torch.randn(5, 4)
    got = artifact.load_module()(features, bias)
    assert torch.allclose(got[0], module(features, bias)[0])


def test_import_static_batch_program(tmp_path):
    program = torch.export.export(nn.Linear(3, 2).eval(), (torch.randn(1, 3),))
    path = tmp_path / "static.pt2"
    torch.export.save(program, str(path))
    cfg = export.import_program(path, tmp_path / "repo", "static").config
    assert cfg.inputs[0].shape == (1, 3) and cfg.outputs[0].shape == (1, 2)
    assert cfg.max_batch_size == 1
    assert cfg.extra["dynamic_batch"] is False


def test_import_rejects_files_that_are_not_programs(tmp_path):
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ArtifactError, match="not a torch.export program"):
        export.import_program(garbage, tmp_path / "repo", "g")
    state = tmp_path / "weights.pt"
    torch.save(nn.Linear(2, 2).state_dict(), state)
    with pytest.raises(ArtifactError, match="torch.save file"):
        export.import_program(state, tmp_path / "repo", "s")
    with pytest.raises(ArtifactError, match="not found"):
        export.import_program(tmp_path / "nope.pt2", tmp_path / "repo", "n")
    assert list_models(tmp_path / "repo") == []
