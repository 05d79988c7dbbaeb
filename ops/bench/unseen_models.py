"""Models the bundled reference profile never measured, for ``ops/bench/unseen_accuracy.py``:
a small ViT (patch-embed conv, class token, multi-head attention, LayerNorm, GELU), a
DenseNet-ish concat net, and the tests' user-brought models widened to sizes a user serves
(an EfficientNet-ish depthwise + SE + SiLU stack, a U-Net, a transformer encoder, an Inception
block, an upsampling decoder, residual SE blocks). Plain torch, seeded random weights."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ViTish(nn.Module):
    """Patch embedding (conv 16x16 stride 16), a class token, positional embedding, pre-norm
    blocks (LayerNorm, multi-head attention, GELU MLP), the class token's head."""

    def __init__(self, d: int = 192, heads: int = 3, depth: int = 4, image: int = 224):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 16, stride=16)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, (image // 16) ** 2 + 1, d))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x[:, 0]))


class DenseNetish(nn.Module):
    """A stem, two dense blocks (each layer BN-ReLU-1x1-BN-ReLU-3x3 concatenated onto its
    input) with a transition (BN, 1x1, average pool) between them, a global pool and a head."""

    def __init__(self, growth: int = 16, layers: int = 4, c: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 7, stride=2, padding=3, bias=False)
        self.block1, c = self._block(c, growth, layers)
        self.trans = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)
        )
        self.block2, c = self._block(c // 2, growth, layers)
        self.norm = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, 10)

    @staticmethod
    def _block(c: int, growth: int, layers: int) -> tuple[nn.ModuleList, int]:
        mods = nn.ModuleList()
        for i in range(layers):
            cin = c + i * growth
            mods.append(
                nn.Sequential(
                    nn.BatchNorm2d(cin),
                    nn.ReLU(),
                    nn.Conv2d(cin, 4 * growth, 1, bias=False),
                    nn.BatchNorm2d(4 * growth),
                    nn.ReLU(),
                    nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
                )
            )
        return mods, c + layers * growth

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, stride=2, padding=1)
        for layer in self.block1:
            x = torch.cat([x, layer(x)], dim=1)
        x = self.trans(x)
        for layer in self.block2:
            x = torch.cat([x, layer(x)], dim=1)
        x = F.adaptive_avg_pool2d(F.relu(self.norm(x)), 1)
        return self.head(torch.flatten(x, 1))


def _init(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.parameters():
            t.copy_(torch.randn(t.shape, generator=g) * (0.05 if t.dim() > 1 else 0.02))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.fill_(1.0)
    return model.eval()


def _tests_model(module: str, name: str, **width):
    from importlib import import_module

    return import_module(f"tests.burst.{module}").build(name, **width)


# name -> (what builds it, one sample's input shape)
UNSEEN = {
    "vit_tiny": (lambda: _init(ViTish(), 0), (3, 224, 224)),
    "densenetish": (lambda: _init(DenseNetish(), 0), (3, 224, 224)),
    "effnetish": (lambda: _tests_model("byo_models", "effnet", c=24), (3, 224, 224)),
    "unetish": (lambda: _tests_model("byo_models", "unet", c=24), (3, 160, 160)),
    "encoder": (lambda: _tests_model("byo_models", "encoder", d=128), (64, 128)),
    "inception": (lambda: _tests_model("audit20_models", "inception", c=16), (3, 112, 112)),
    "upsampler": (lambda: _tests_model("audit20_models", "upsampler", c=16), (3, 96, 96)),
    "seresidual": (lambda: _tests_model("audit20_models", "seresidual", c=32), (3, 112, 112)),
}


def export_unseen(name: str, repo) -> None:
    """Export ``name`` to REPO/NAME (dynamic batch, one float input)."""
    from vmpool.export import export_module

    build, shape = UNSEEN[name]
    module = build()
    example = torch.randn((2, *shape), generator=torch.Generator().manual_seed(3))
    export_module(module, (example,), name=name, repo=repo, slo_ms=5000.0)
