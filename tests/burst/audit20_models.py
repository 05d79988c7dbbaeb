"""Models nobody tested before session 20's audit (none repeats ``byo_models`` or
``special_models``): odd sizes through dilated kernel-7 and stride-3 convs and an asymmetric
``F.pad``, Inception and DenseNet concats, squeeze-excite with a 1x1 projection, GroupNorm and a
channels LayerNorm, transposed convs and bilinear upsampling, a 1-D sequence net, dict and
nested outputs, a positional embedding, FP16 and int64 inputs, views at odd places, one huge
Linear. Plain torch, random weights from a fixed seed."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _init(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.parameters():
            scale = 0.3 if t.dim() > 1 else 0.1
            if t.dim() > 1:
                scale = min(scale, 1.5 / max(1, t[0].numel()) ** 0.5)
            t.copy_(torch.randn(t.shape, generator=g) * scale)
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


class OddStrides(nn.Module):
    """97x131: an asymmetric F.pad, a 7x7 dilated conv of stride 3, a 5x5 dilation 3, a ceil-mode
    max pool, AdaptiveAvgPool to (3, 5), flatten and a head."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.c1 = nn.Conv2d(3, c, 7, stride=3, dilation=2)
        self.c2 = nn.Conv2d(c, c, 5, padding=6, dilation=3)
        self.c3 = nn.Conv2d(c, 2 * c, 3, stride=3, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.fc = nn.Linear(2 * c * 15, 7)

    def forward(self, x):
        x = F.pad(x, (1, 2, 0, 3))
        x = F.gelu(self.c1(x))
        x = F.hardswish(self.c2(x))
        x = self.pool(torch.relu(self.c3(x)))
        x = F.adaptive_avg_pool2d(x, (3, 5))
        return self.fc(torch.flatten(x, 1))


class Inception(nn.Module):
    """Four branches (1x1, 3x3, 5x5, pool then 1x1) concatenated on channels, GroupNorm, then a
    DenseNet-style block that concatenates each layer's output onto its input."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.b1 = nn.Conv2d(c, c, 1)
        self.b3 = nn.Conv2d(c, c, 3, padding=1)
        self.b5 = nn.Conv2d(c, c, 5, padding=2)
        self.bp = nn.Conv2d(c, c, 1)
        self.gn = nn.GroupNorm(4, 4 * c)
        self.d1 = nn.Conv2d(4 * c, c, 3, padding=1)
        self.d2 = nn.Conv2d(5 * c, c, 3, padding=1)
        self.head = nn.Conv2d(6 * c, 3, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        p = self.bp(F.max_pool2d(x, 3, stride=1, padding=1))
        x = torch.cat([self.b1(x), self.b3(x), self.b5(x), p], dim=1)
        x = F.silu(self.gn(x))
        x = torch.cat([x, torch.relu(self.d1(x))], dim=1)
        x = torch.cat([x, torch.relu(self.d2(x))], dim=1)
        return self.head(x)


class SEResidual(nn.Module):
    """Residual blocks with a strided 1x1 projection, BatchNorm in eval, squeeze-excite (global
    pool, two 1x1s, multiply), a channels LayerNorm (permute, LayerNorm, permute back)."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c)
        self.a = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False)
        self.bna = nn.BatchNorm2d(2 * c)
        self.b = nn.Conv2d(2 * c, 2 * c, 3, padding=1, bias=False)
        self.bnb = nn.BatchNorm2d(2 * c)
        self.proj = nn.Conv2d(c, 2 * c, 1, stride=2, bias=False)
        self.se1 = nn.Linear(2 * c, c)
        self.se2 = nn.Linear(c, 2 * c)
        self.ln = nn.LayerNorm(2 * c)
        self.fc = nn.Linear(2 * c, 5)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        y = self.bnb(self.b(torch.relu(self.bna(self.a(x)))))
        s = y.mean(dim=(2, 3))
        s = torch.sigmoid(self.se2(torch.relu(self.se1(s))))
        y = y * s[:, :, None, None]
        x = torch.relu(y + self.proj(x))
        x = self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.fc(x.amax(dim=(2, 3)))


class Upsampler(nn.Module):
    """A decoder: transposed conv (stride 2, output_padding 1), bilinear by 2, nearest by 3,
    a depthwise conv and a 1x1 head."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.enc = nn.Conv2d(3, 2 * c, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.head = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        x = torch.relu(self.enc(x))
        x = torch.relu(self.up(x))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.silu(self.dw(x))
        x = F.interpolate(x, scale_factor=3, mode="nearest")
        return self.head(x)


class Sequence1d(nn.Module):
    """[B, C, L] with L = 301: a kernel-7 dilation-3 Conv1d of stride 3, GroupNorm, a grouped
    Conv1d, an adaptive pool to 5 and a flatten."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.c1 = nn.Conv1d(4, c, 7, stride=3, dilation=3, padding=5)
        self.gn = nn.GroupNorm(4, c)
        self.c2 = nn.Conv1d(c, c, 5, padding=2, groups=4)
        self.c3 = nn.Conv1d(c, 2 * c, 3, stride=2)
        self.fc = nn.Linear(2 * c * 5, 6)

    def forward(self, x):
        x = F.silu(self.gn(self.c1(x)))
        x = F.gelu(self.c2(x)) + x
        x = F.adaptive_avg_pool1d(torch.relu(self.c3(x)), 5)
        return self.fc(x.flatten(1))


class DictOut(nn.Module):
    """Two images in (of different sizes), a dict of two outputs out."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.a = nn.Conv2d(3, c, 3, padding=1)
        self.b = nn.Conv2d(1, c, 5, stride=2, padding=2)
        self.seg = nn.Conv2d(2 * c, 3, 1)
        self.cls = nn.Linear(2 * c, 4)

    def forward(self, rgb, depth):
        a = torch.relu(self.a(rgb))
        b = torch.relu(self.b(depth))
        x = torch.cat([a, b], dim=1)
        return {"mask": self.seg(x), "logits": self.cls(x.mean(dim=(2, 3)))}


class Nested(nn.Module):
    """A nested tuple out: (features, (logits, the class id as int64))."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.fc = nn.Linear(c, 3)

    def forward(self, x):
        f = torch.relu(self.conv(x))
        y = self.fc(f.mean(dim=(2, 3)))
        return f, (y, y.argmax(dim=1))


class PosEmbed(nn.Module):
    """Constants broadcast against a feature map: a normalising mean [1, 3, 1, 1], a learned
    positional embedding [1, C, H, W] and a per-column scale [W] (vary along H and W), and a
    weight used by two convs."""

    def __init__(self, c: int = 8, hw: tuple[int, int] = (20, 16)):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.pos = nn.Parameter(torch.zeros(1, c, *hw))
        self.column = nn.Parameter(torch.ones(hw[1]))
        self.c1 = nn.Conv2d(3, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)
        self.c3 = nn.Conv2d(c, 4, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.c1(x - self.mean)) + self.pos
        y = torch.relu(self.c2(y)) * self.column
        y = F.conv2d(y, self.c2.weight, self.c2.bias, padding=1)  # c2's weight again
        return self.c3(torch.relu(y))


class Half(nn.Module):
    """FP16 image in (cast to float inside), int64 class ids in (an embedding added per
    channel): a conditional conv net."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.emb = nn.Embedding(10, c)
        self.c1 = nn.Conv2d(3, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, image, label):
        x = torch.relu(self.c1(image.float()))
        x = x + self.emb(label)[:, :, None, None]
        return self.c2(x)


class Views(nn.Module):
    """Python scalars and views at odd places: a scale and shift, a channel shuffle
    (view, transpose, reshape), a flatten to [B, C*H*W] and back with view."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.c1 = nn.Conv2d(3, c, 3, padding=1)
        self.g = nn.Conv2d(c, c, 3, padding=1, groups=2)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)
        self.fc = nn.Linear(c * 6 * 5, 4)

    def forward(self, x):
        x = self.c1(x * 0.5 + 1.0)
        b, c, h, w = x.shape
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        x = torch.relu(self.g(x))
        flat = x.flatten(1) * 2.0
        x = flat.view(b, c, h, w)
        x = F.avg_pool2d(self.c2(x), 2, ceil_mode=True)
        return self.fc(x.reshape(b, -1)) / 3.0


class HugeMLP(nn.Module):
    """One huge Linear (2048 -> 6144, 48 MB of weights) between two small ones."""

    def __init__(self, d: int = 2048, wide: int = 6144):
        super().__init__()
        self.a = nn.Linear(64, d)
        self.big = nn.Linear(d, wide)
        self.out = nn.Linear(wide, 10)

    def forward(self, x):
        return self.out(F.gelu(self.big(F.silu(self.a(x)))))


class Branches(nn.Module):
    """A data-dependent branch (``torch.cond``): the VM path runs it, the burst path cannot
    (not in MODELS, which every split runs)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.a, self.b = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return torch.cond(y.mean() > 0, lambda t: self.a(t), lambda t: self.b(t), (y,))


# name -> (class, inputs of one sample: (shape, dtype) each)
MODELS: dict[str, tuple[type[nn.Module], list[tuple[tuple[int, ...], torch.dtype]]]] = {
    "oddstrides": (OddStrides, [((3, 97, 131), torch.float32)]),
    "inception": (Inception, [((3, 29, 23), torch.float32)]),
    "seresidual": (SEResidual, [((3, 33, 27), torch.float32)]),
    "upsampler": (Upsampler, [((3, 17, 13), torch.float32)]),
    "sequence1d": (Sequence1d, [((4, 301), torch.float32)]),
    "dictout": (DictOut, [((3, 20, 18), torch.float32), ((1, 40, 36), torch.float32)]),
    "nested": (Nested, [((3, 15, 11), torch.float32)]),
    "posembed": (PosEmbed, [((3, 20, 16), torch.float32)]),
    "half": (Half, [((3, 21, 19), torch.float16), ((), torch.int64)]),
    "views": (Views, [((3, 12, 10), torch.float32)]),
    "hugemlp": (HugeMLP, [((64,), torch.float32)]),
}


def build(name: str, seed: int = 0, **width) -> nn.Module:
    """The model ``name``; ``width`` (``c=48``) widens it beyond the tests' size."""
    cls, _ = MODELS[name]
    torch.manual_seed(seed)
    return _init(cls(**width), seed)


def example(name: str, batch: int = 2, seed: int = 3, shapes=None) -> list[torch.Tensor]:
    """Inputs of ``batch`` samples (of one sample's ``shapes``, default the model's): class ids
    below 10, floats elsewhere."""
    g = torch.Generator().manual_seed(seed)
    out = []
    specs = MODELS[name][1]
    for (_, dtype), shape in zip(specs, shapes or [s for s, _ in specs]):
        if dtype == torch.int64:
            out.append(torch.randint(0, 10, (batch, *shape), generator=g))
        else:
            out.append(torch.randn((batch, *shape), generator=g).to(dtype))
    return out


def export(model: nn.Module, xs: list[torch.Tensor]):
    """torch.export with a dynamic batch dimension on every input (example batch >= 2)."""
    batch = torch.export.Dim("batch", min=1, max=8)
    return torch.export.export(model, tuple(xs), dynamic_shapes=tuple({0: batch} for _ in xs))
