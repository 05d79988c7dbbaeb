"""Small models that exercise the awkward corners of spatial and output splitting."""

from __future__ import annotations

import torch
import torch.nn as nn


def _init(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.parameters():
            t.copy_(torch.randn(t.shape, generator=g) * (0.3 if t.dim() > 1 else 0.1))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


class Dilated(nn.Module):
    """Dilated and strided convs on an odd-sized input, then avg pool with ceil_mode."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=2, dilation=2)
        self.c2 = nn.Conv2d(8, 8, 5, stride=1, padding=4, dilation=2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)
        self.c3 = nn.Conv2d(8, 12, (3, 1), stride=(1, 2), padding=(1, 0))

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.bn(self.c2(x)))
        return self.c3(self.pool(x))


class PoolZoo(nn.Module):
    """Avg pools with and without count_include_pad, max pool with ceil_mode, divisor override."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 6, 3, padding=1)
        self.a1 = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.m1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.a2 = nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=True)
        self.a3 = nn.AvgPool2d(3, stride=1, padding=1, divisor_override=5)
        self.m2 = nn.MaxPool2d(2, stride=2, ceil_mode=True, dilation=1)

    def forward(self, x):
        x = self.c(x) - 0.5  # negative values make -inf padding matter
        x = self.a1(x)
        x = self.m1(x)
        x = self.a2(x)
        x = self.a3(x)
        return self.m2(x)


class Grouped(nn.Module):
    """Depthwise and grouped convs, channel concatenation, a stride-2 residual downsample."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.gc = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.branch = nn.Conv2d(16, 8, 1)
        self.down_main1 = nn.Conv2d(40, 24, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.down_main2 = nn.Conv2d(24, 24, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(24)
        self.down_skip = nn.Conv2d(40, 24, 1, stride=2, bias=False)
        self.bn3 = nn.BatchNorm2d(24)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        a = torch.nn.functional.relu6(self.dw(x))
        b = self.gc(x)
        x = torch.cat([a, b, self.branch(x)], dim=1)
        y = torch.relu(self.bn1(self.down_main1(x)))
        y = self.bn2(self.down_main2(y))
        x = torch.relu(y + self.bn3(self.down_skip(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class AdaptiveEven(nn.Module):
    """An adaptive avg pool whose windows divide the map evenly (tileable) and one that does not."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.even = nn.AdaptiveAvgPool2d((8, 4))
        self.odd = nn.AdaptiveAvgPool2d((3, 3))

    def forward(self, x):
        return self.odd(self.even(torch.relu(self.c(x))))


SPECIAL = {
    "dilated": (Dilated, (3, 227, 227)),
    "poolzoo": (PoolZoo, (3, 37, 41)),
    "grouped": (Grouped, (3, 30, 30)),
    "adaptive": (AdaptiveEven, (3, 32, 16)),
}


def build(name: str, seed: int = 0) -> nn.Module:
    cls, _ = SPECIAL[name]
    torch.manual_seed(seed)
    return _init(cls(), seed)


def input_shape(name: str) -> tuple[int, ...]:
    return SPECIAL[name][1]


def export(model: nn.Module, example: torch.Tensor):
    """torch.export with a dynamic batch dimension (example batch must be >= 2)."""
    batch = torch.export.Dim("batch", min=1, max=8)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
