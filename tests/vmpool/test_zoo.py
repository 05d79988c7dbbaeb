"""The model zoo: torchvision-exact architectures with seeded, non-trivial weights."""

import pytest
import torch

from vmpool import zoo

torch.set_num_threads(1)

# torchvision's own figures (torchvision.models.*(weights=None))
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "wide_resnet50_2": 68_883_240,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "mobilenet_v2": 3_504_872,
}

# a few state-dict keys and shapes per model, as torchvision names them
TORCHVISION_KEYS = {
    "resnet18": {
        "conv1.weight": (64, 3, 7, 7),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer4.1.bn2.running_var": (512,),
        "fc.weight": (1000, 512),
    },
    "resnet50": {
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.running_mean": (256,),
        "layer3.5.conv2.weight": (256, 256, 3, 3),
        "fc.weight": (1000, 2048),
    },
    "wide_resnet50_2": {
        "layer1.0.conv1.weight": (128, 64, 1, 1),
        "layer4.2.conv3.weight": (2048, 1024, 1, 1),
    },
    "vgg16": {
        "features.0.weight": (64, 3, 3, 3),
        "features.28.bias": (512,),
        "classifier.0.weight": (4096, 25088),
        "classifier.6.weight": (1000, 4096),
    },
    "vgg11": {"features.18.weight": (512, 512, 3, 3), "classifier.3.weight": (4096, 4096)},
    "mobilenet_v2": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.17.conv.3.running_var": (320,),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    },
}


# the `delay` load-test model is an identity with no torchvision twin: tests/vmpool/test_delay_model.py
@pytest.mark.parametrize("name", [name for name in zoo.MODELS if name != "delay"])
def test_each_model_matches_torchvision_and_runs(name):
    model = zoo.build(name)
    state = model.state_dict()
    if name in TORCHVISION_PARAMS:
        assert zoo.param_count(model) == TORCHVISION_PARAMS[name]
        assert zoo.param_count(name) == TORCHVISION_PARAMS[name]  # meta-device count agrees
    for key, shape in TORCHVISION_KEYS.get(name, {}).items():
        assert tuple(state[key].shape) == shape, key
    assert not model.training
    size = None if name == "mlp" else (32, 32)
    x = zoo.example_input(name, batch=2, size=size)
    with torch.no_grad():
        y = model(x)
    classes = 10 if name == "mlp" else 1000
    assert y.shape == (2, classes)
    assert torch.isfinite(y).all()
    # a sane scale: neither collapsed to zero nor blown up, and samples differ
    assert 1e-3 < y.std().item() < 1e3
    assert not torch.allclose(y[0], y[1])


def test_mlp_layout():
    state = zoo.build("mlp").state_dict()
    assert [tuple(state[f"layers.{i}.weight"].shape) for i in (0, 2, 4)] == [
        (512, 784),
        (256, 512),
        (10, 256),
    ]


def test_build_is_deterministic_per_seed():
    x = zoo.example_input("resnet18", batch=1, size=(32, 32))
    with torch.no_grad():
        a = zoo.build("resnet18", seed=0)(x)
        b = zoo.build("resnet18", seed=0)(x)
        c = zoo.build("resnet18", seed=1)(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    zoo.build("mobilenet_v2", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_batch_norm_is_not_an_identity():
    model = zoo.build("resnet18")
    bn = model.bn1
    assert bn.running_mean.abs().max() > 0.01
    assert (bn.running_var.min() >= 0.5) and (bn.running_var.max() <= 1.5)
    assert bn.running_var.std() > 0.1
    # eval mode uses those stats: resetting them changes the output
    x = zoo.example_input("resnet18", size=(32, 32))
    with torch.no_grad():
        before = model(x)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
        assert not torch.allclose(before, model(x))


def test_weights_follow_the_torchvision_init():
    model = zoo.build("vgg11")
    conv = model.features[0].weight  # kaiming normal, fan_out = 64 * 3 * 3
    assert conv.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    assert model.classifier[0].weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert model.classifier[0].bias.abs().max() == 0


def test_example_input_shapes_and_seed():
    assert zoo.example_input("resnet50").shape == (1, 3, 224, 224)
    assert zoo.example_input("mlp", batch=4).shape == (4, 784)
    assert zoo.example_input("vgg11", batch=2, size=(64, 96)).shape == (2, 3, 64, 96)
    assert torch.equal(zoo.example_input("mlp", seed=3), zoo.example_input("mlp", seed=3))
    assert not torch.equal(zoo.example_input("mlp", seed=3), zoo.example_input("mlp", seed=4))


def test_unknown_model_names_the_known_ones():
    with pytest.raises(KeyError, match="resnet18.*mlp"):
        zoo.build("resnet19")
    with pytest.raises(KeyError, match="mobilenet_v2"):
        zoo.example_input("alexnet")


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("resnet18", {"size": (16, 64)}, "at least 32x32"),
        ("mlp", {"size": (32, 32)}, "CNNs only"),
        ("mlp", {"batch": 0}, "batch must be >= 1"),
    ],
)
def test_bad_example_input_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.example_input(name, **kwargs)
