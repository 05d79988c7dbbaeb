"""Model zoo: the registry of plain-torch copies of torchvision architectures plus a small MLP.

The architectures live in ``vmpool.arch`` (one module per family); this module names them,
seeds their weights and makes their inputs. Layer layouts and state-dict keys match torchvision exactly, so a user's torchvision
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

from .arch.mlp import MLP
from .arch.mobilenet import MobileNetV2
from .arch.resnet import BasicBlock, Bottleneck, ResNet
from .arch.vgg import VGG, VGG_CFGS
from .delay_op import DelayModel

MIN_IMAGE_SIZE = 32  # every CNN here downsamples by 32


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
            lambda: VGG(VGG_CFGS["vgg11"]),
            (3, 224, 224),
            4,
            1500.0,
            "VGG-11 without batch norm, 132.9M params, ImageNet classifier",
        ),
        ZooEntry(
            "vgg16",
            lambda: VGG(VGG_CFGS["vgg16"]),
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
