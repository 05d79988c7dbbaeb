"""Models a user brings, unlike the zoo's: a transformer encoder, a text classifier on token ids,
two inputs and two outputs of different dtypes, a U-Net, a 1-D audio net, an EfficientNet-ish
block stack, odd sizes with padding modes. Plain torch, random weights from a fixed seed."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _init(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.parameters():
            t.copy_(torch.randn(t.shape, generator=g) * (0.3 if t.dim() > 1 else 0.1))
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


class Encoder(nn.Module):
    """Two pre-norm transformer blocks (LayerNorm, multi-head attention, GELU MLP, residuals)
    on [B, T, D], mean-pooled into a linear head."""

    def __init__(self, d: int = 32, heads: int = 4, depth: int = 2, classes: int = 5):
        super().__init__()
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "ln1": nn.LayerNorm(d),
                        "attn": nn.MultiheadAttention(d, heads, batch_first=True),
                        "ln2": nn.LayerNorm(d),
                        "fc1": nn.Linear(d, 4 * d),
                        "fc2": nn.Linear(4 * d, d),
                    }
                )
            )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        for b in self.blocks:
            h = b["ln1"](x)
            x = x + b["attn"](h, h, h, need_weights=False)[0]
            x = x + b["fc2"](F.gelu(b["fc1"](b["ln2"](x))))
        return self.head(self.norm(x).mean(dim=1))


class TextClassifier(nn.Module):
    """int64 token ids [B, T] -> embedding -> 1-D conv over time -> max over time -> logits."""

    def __init__(self, vocab: int = 100, d: int = 16, classes: int = 4):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.conv = nn.Conv1d(d, 24, 3, padding=1)
        self.fc = nn.Linear(24, classes)

    def forward(self, ids):
        x = self.emb(ids).transpose(1, 2)  # [B, D, T]
        x = torch.relu(self.conv(x))
        return self.fc(x.amax(dim=2))


class TwoHeads(nn.Module):
    """An image [B, 3, H, W] and a float vector [B, 6] in; float32 scores [B, 4] and an int64
    class id [B] out."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.vec = nn.Linear(6, 8)
        self.fc = nn.Linear(c + 8, 4)

    def forward(self, image, meta):
        a = torch.relu(self.conv2(torch.relu(self.conv(image)))).mean(dim=(2, 3))
        b = torch.tanh(self.vec(meta))
        scores = self.fc(torch.cat([a, b], dim=1))
        return scores, scores.argmax(dim=1)


class UNet(nn.Module):
    """Two downsamplings, a bottleneck, two nearest / transposed-conv upsamplings with skip
    concatenations, a 1x1 head."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.e1 = nn.Conv2d(3, c, 3, padding=1)
        self.e2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.mid = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(2 * c, 2 * c, 2, stride=2)
        self.d2 = nn.Conv2d(4 * c, c, 3, padding=1)
        self.d1 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.head = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        s1 = torch.relu(self.e1(x))
        s2 = torch.relu(self.e2(F.max_pool2d(s1, 2)))
        m = torch.relu(self.mid(F.max_pool2d(s2, 2)))
        y = torch.relu(self.d2(torch.cat([self.up2(m), s2], dim=1)))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = torch.relu(self.d1(torch.cat([y, s1], dim=1)))
        return self.head(y)


class Audio1d(nn.Module):
    """A 1-D conv net over [B, C, L]: strided and dilated Conv1d, BatchNorm1d, max pool, a
    global average and a linear head."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.c1 = nn.Conv1d(2, c, 9, stride=2, padding=4)
        self.bn1 = nn.BatchNorm1d(c)
        self.c2 = nn.Conv1d(c, c, 5, padding=4, dilation=2)
        self.pool = nn.MaxPool1d(3, stride=2, padding=1)
        self.c3 = nn.Conv1d(c, 2 * c, 3, padding=1)
        self.fc = nn.Linear(2 * c, 6)

    def forward(self, x):
        x = torch.relu(self.bn1(self.c1(x)))
        x = self.pool(torch.relu(self.c2(x)))
        x = torch.relu(self.c3(x))
        return self.fc(x.mean(dim=2))


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn0 = nn.BatchNorm2d(mid)
        self.dw = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.se1 = nn.Conv2d(mid, max(1, cin // 2), 1)
        self.se2 = nn.Conv2d(max(1, cin // 2), mid, 1)
        self.project = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = F.silu(self.bn0(self.expand(x)))
        y = F.silu(self.bn1(self.dw(y)))
        s = F.adaptive_avg_pool2d(y, 1)
        y = y * torch.sigmoid(self.se2(F.silu(self.se1(s))))
        y = self.bn2(self.project(y))
        return x + y if self.residual else y


class EfficientNetish(nn.Module):
    """A stem, MBConv blocks (1x1 expand, depthwise 3x3, squeeze-excitation, SiLU, BatchNorm),
    a grouped conv, a global pool and a classifier."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.b1 = _MBConv(c, c, 1)
        self.b2 = _MBConv(c, 2 * c, 2)
        self.b3 = _MBConv(2 * c, 2 * c, 1)
        self.grouped = nn.Conv2d(2 * c, 4 * c, 3, padding=1, groups=4)
        self.fc = nn.Linear(4 * c, 10)

    def forward(self, x):
        x = F.silu(self.bn(self.stem(x)))
        x = self.b3(self.b2(self.b1(x)))
        x = F.silu(self.grouped(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class OddSizes(nn.Module):
    """A 97x131 input through reflect-, replicate- and circular-padded convs, strided and dilated
    ones, an asymmetric kernel and a ceil-mode pool."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.c1 = nn.Conv2d(3, c, 5, stride=2, padding=2, padding_mode="reflect")
        self.c2 = nn.Conv2d(c, c, 3, padding=2, dilation=2, padding_mode="replicate")
        self.c3 = nn.Conv2d(c, 2 * c, 3, stride=(2, 3), padding=1, padding_mode="circular")
        self.c4 = nn.Conv2d(2 * c, 2 * c, (1, 7), padding=(0, 3))
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.c5 = nn.Conv2d(2 * c, 4, 3, padding="same")

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        x = self.pool(torch.relu(self.c4(x)))
        return self.c5(x)


# name -> (class, example inputs of one sample: (shape, dtype) each)
BYO: dict[str, tuple[type[nn.Module], list[tuple[tuple[int, ...], torch.dtype]]]] = {
    "encoder": (Encoder, [((12, 32), torch.float32)]),
    "textcls": (TextClassifier, [((20,), torch.int64)]),
    "twoheads": (TwoHeads, [((3, 24, 20), torch.float32), ((6,), torch.float32)]),
    "unet": (UNet, [((3, 32, 24), torch.float32)]),
    "audio1d": (Audio1d, [((2, 400), torch.float32)]),
    "effnet": (EfficientNetish, [((3, 48, 40), torch.float32)]),
    "oddsizes": (OddSizes, [((3, 97, 131), torch.float32)]),
}


def build(name: str, seed: int = 0, **width) -> nn.Module:
    """The model ``name``; ``width`` (``c=64``, ``d=256``) widens it beyond the tests' size."""
    cls, _ = BYO[name]
    torch.manual_seed(seed)
    return _init(cls(**width), seed)


def example(name: str, batch: int = 2, seed: int = 3, shapes=None) -> list[torch.Tensor]:
    """Example inputs (of one sample's ``shapes``, default the model's): token ids in the
    vocabulary, floats elsewhere."""
    g = torch.Generator().manual_seed(seed)
    out = []
    specs = BYO[name][1]
    for (shape, dtype), want in zip(specs, shapes or [s for s, _ in specs]):
        shape = tuple(want)
        if dtype == torch.int64:
            out.append(torch.randint(0, 100, (batch, *shape), generator=g))
        else:
            out.append(torch.randn((batch, *shape), generator=g))
    return out


def export(model: nn.Module, xs: list[torch.Tensor]):
    """torch.export with a dynamic batch dimension on every input (example batch >= 2)."""
    batch = torch.export.Dim("batch", min=1, max=8)
    return torch.export.export(model, tuple(xs), dynamic_shapes=tuple({0: batch} for _ in xs))
