"""Model zoo: plain-torch copies of torchvision architectures plus a small MLP.

Layer layouts and state-dict keys match torchvision exactly, so a user's torchvision
``state_dict`` loads. ``build(name, seed)`` returns an eval-mode module with deterministic seeded
weights; ``example_input(name, ...)`` a matching seeded input. Only ops that ``torch.export``
lowers to standard ATen are used (conv2d, batch_norm, relu, hardtanh, max_pool2d,
adaptive_avg_pool2d, flatten, linear, add, dropout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .delay_op import DelayModel

MIN_IMAGE_SIZE = 32  # every CNN here downsamples by 32


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


# ---------------------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        base_width: int = 64,
    ):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        base_width: int = 64,
    ):
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)  # stride on the 3x3, as torchvision (v1.5)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(
        self, block: type, layers: list[int], num_classes: int = 1000, width_per_group: int = 64
    ):
        super().__init__()
        self.inplanes = 64
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.base_width)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, base_width=self.base_width) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ------------------------------------------------------------------------------------------- VGG

_VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ],
}


class VGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU()]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ------------------------------------------------------------------------------------ MobileNetV2


class ConvBNReLU6(nn.Sequential):
    """torchvision's Conv2dNormActivation with BatchNorm2d and ReLU6 (keys 0, 1, 2)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ):
        super().__init__(
            nn.Conv2d(
                in_ch,
                out_ch,
                kernel_size,
                stride,
                (kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, oup, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, first stride s), as in the paper and torchvision
    SETTINGS = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        in_ch, last_ch = 32, 1280
        features: list[nn.Module] = [ConvBNReLU6(3, in_ch, stride=2)]
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(in_ch, c, s if i == 0 else 1, t))
                in_ch = c
        features.append(ConvBNReLU6(in_ch, last_ch, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last_ch, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


# ------------------------------------------------------------------------------------------- MLP


class MLP(nn.Module):
    """A small fully connected classifier (MNIST-sized by default)."""

    def __init__(self, sizes: tuple[int, ...] = (784, 512, 256, 10)):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


# ------------------------------------------------------------------------------------------ zoo


@dataclass(frozen=True)
class ZooEntry:
    name: str
    builder: Callable[[], nn.Module]  # architecture only; build() gives the seeded weights
    input_size: tuple[int, ...]  # per-sample shape: (C, H, W) or (features,)
    max_batch_size: int
    slo_ms: float
    description: str

    @property
    def is_image(self) -> bool:
        return len(self.input_size) == 3


MODELS: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "resnet18",
            lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
            (3, 224, 224),
            8,
            300.0,
            "ResNet-18, 11.7M params, ImageNet classifier",
        ),
        ZooEntry(
            "resnet34",
            lambda: ResNet(BasicBlock, [3, 4, 6, 3]),
            (3, 224, 224),
            8,
            500.0,
            "ResNet-34, 21.8M params, ImageNet classifier",
        ),
        ZooEntry(
            "resnet50",
            lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
            (3, 224, 224),
            8,
            800.0,
            "ResNet-50 (v1.5), 25.6M params, ImageNet classifier",
        ),
        ZooEntry(
            "wide_resnet50_2",
            lambda: ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=128),
            (3, 224, 224),
            4,
            2000.0,
            "Wide ResNet-50-2, 68.9M params, ImageNet classifier",
        ),
        ZooEntry(
            "vgg11",
            lambda: VGG(_VGG_CFGS["vgg11"]),
            (3, 224, 224),
            4,
            1500.0,
            "VGG-11 without batch norm, 132.9M params, ImageNet classifier",
        ),
        ZooEntry(
            "vgg16",
            lambda: VGG(_VGG_CFGS["vgg16"]),
            (3, 224, 224),
            4,
            2500.0,
            "VGG-16 without batch norm, 138.4M params, ImageNet classifier",
        ),
        ZooEntry(
            "mobilenet_v2",
            MobileNetV2,
            (3, 224, 224),
            8,
            200.0,
            "MobileNetV2, 3.5M params, ImageNet classifier",
        ),
        ZooEntry(
            "mlp", MLP, (784,), 32, 50.0, "MLP 784-512-256-10, 0.5M params, MNIST-sized classifier"
        ),
        ZooEntry(
            "delay",
            DelayModel,
            (16,),
            8,
            360.0,
            "load-test model: identity whose forward waits delay_ms + per_item_ms * batch",
        ),
    ]
}

# Options a zoo model's builder takes (``tidegate export delay --delay-ms 50 --per-item-ms 5``).
OPTIONS = {"delay": ("delay_ms", "per_item_ms")}


def default_slo_ms(name: str, options: dict | None = None) -> float:
    """The SLO written to a zoo model's config; for ``delay``, four times a full batch's wait."""
    zoo_entry = entry(name)
    if name == "delay":
        opts = {"delay_ms": 50.0, "per_item_ms": 5.0, **(options or {})}
        return 4.0 * (opts["delay_ms"] + opts["per_item_ms"] * zoo_entry.max_batch_size)
    return zoo_entry.slo_ms


def entry(name: str) -> ZooEntry:
    """The zoo entry for ``name``; KeyError naming the known models otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown zoo model {name!r}; known: {', '.join(MODELS)}") from None


@torch.no_grad()
def _init_weights(module: nn.Module, gen: torch.Generator, *, mlp: bool) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.Linear):
            if mlp:
                # 0.01 would shrink an all-linear net's output to ~1e-4; keep it O(1)
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
            else:
                nn.init.normal_(m.weight, 0.0, 0.01, generator=gen)
            m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
            # non-trivial running stats so eval-mode BN is not an identity
            m.running_mean.normal_(0.0, 0.1, generator=gen)
            m.running_var.uniform_(0.5, 1.5, generator=gen)
            m.num_batches_tracked.zero_()


def build(name: str, seed: int = 0, **options) -> nn.Module:
    """Zoo model ``name`` in eval mode with deterministic weights drawn from ``seed``;
    ``options`` go to the builder of models that take them (see ``OPTIONS``)."""
    zoo_entry = entry(name)
    unknown = set(options) - set(OPTIONS.get(name, ()))
    if unknown:
        raise ValueError(f"zoo model {name!r} takes no option {', '.join(sorted(unknown))}")
    # build on the meta device so the default init is skipped (it would cost seconds for VGG and
    # advance the global RNG); every tensor is then set by _init_weights
    with torch.device("meta"):
        module = zoo_entry.builder(**options)
    module = module.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(int(seed))
    _init_weights(module, gen, mlp=not zoo_entry.is_image)
    return module.eval()


def input_shape(name: str, batch: int = 1, size: tuple[int, int] | None = None) -> tuple[int, ...]:
    """Full input shape for ``name``: (batch, C, H, W) or (batch, features)."""
    zoo_entry = entry(name)
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if size is None:
        return (int(batch), *zoo_entry.input_size)
    if not zoo_entry.is_image:
        raise ValueError(f"model {name!r} takes a feature vector; size (H, W) applies to CNNs only")
    height, width = (int(v) for v in size)
    if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image size must be at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}, got {height}x{width}"
        )
    return (int(batch), zoo_entry.input_size[0], height, width)


def example_input(
    name: str, batch: int = 1, size: tuple[int, int] | None = None, seed: int = 0
) -> torch.Tensor:
    """A seeded standard-normal float32 input for ``name``."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(input_shape(name, batch, size), generator=gen)


def param_count(module_or_name: nn.Module | str) -> int:
    """Parameter count of a module, or of zoo model ``name`` (without allocating its weights)."""
    if isinstance(module_or_name, str):
        with torch.device("meta"):
            module_or_name = entry(module_or_name).builder()
    return sum(p.numel() for p in module_or_name.parameters())
