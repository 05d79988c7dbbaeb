"""Model families first tried in session 21's audit (none repeats ``audit20_models``,
``byo_models`` or ``special_models``): a small ViT (attention through
``F.scaled_dot_product_attention`` and through explicit matmul + softmax), a text encoder over
int64 token ids (with and without an attention mask), a UNet at an odd size, EfficientNet- and
MobileNetV3-style blocks, a feature-pyramid detector head with two outputs of different shapes,
and recurrent nets (LSTM, GRU). Plain torch, random weights from a fixed seed."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 50


def _init(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.parameters():
            scale = 0.1
            if t.dim() > 1:
                scale = min(0.3, 1.5 / max(1, t[0].numel()) ** 0.5)
            t.copy_(torch.randn(t.shape, generator=g) * scale)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if isinstance(m, nn.LayerNorm):
                m.weight.data.add_(1.0)
    return model.eval()


class Attention(nn.Module):
    """Multi-head self-attention; ``sdpa`` picks F.scaled_dot_product_attention over explicit
    matmul + softmax. ``mask`` ([B, L], 1 keep / 0 pad) masks keys."""

    def __init__(self, d: int, heads: int, sdpa: bool):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x, mask=None):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = None
        if mask is not None:
            bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -1e9
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            a = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
            if bias is not None:
                a = a + bias
            y = a.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """A pre-norm transformer layer: LayerNorm, attention, residual, LayerNorm, GELU MLP."""

    def __init__(self, d: int, heads: int, sdpa: bool):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads, sdpa)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x, mask=None):
        x = x + self.attn(self.n1(x), mask)
        return x + self.fc2(F.gelu(self.fc1(self.n2(x))))


class ViT(nn.Module):
    """32x32 images, 4x4 patches by a strided conv, a class token concatenated in front, a
    learned position embedding, two layers, the class token's LayerNorm into a head."""

    def __init__(self, d: int = 32, heads: int = 4, sdpa: bool = True, classes: int = 10):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 65, d))
        self.blocks = nn.ModuleList([Block(d, heads, sdpa) for _ in range(2)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, 0]))


class ViTMatmul(ViT):
    def __init__(self, d: int = 32, heads: int = 4):
        super().__init__(d, heads, sdpa=False)


class TextEncoder(nn.Module):
    """int64 token ids [B, L] -> embedding + position -> two layers -> mean over tokens."""

    def __init__(self, d: int = 32, heads: int = 4, max_len: int = 64):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList([Block(d, heads, True) for _ in range(2)])
        self.norm = nn.LayerNorm(d)

    def encode(self, ids, mask=None):
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.emb(ids) + self.pos(pos)[None]
        for blk in self.blocks:
            x = blk(x, mask)
        return self.norm(x)

    def forward(self, ids):
        return self.encode(ids).mean(dim=1)


class MaskedTextEncoder(TextEncoder):
    """As TextEncoder, with an int64 attention mask [B, L]: masked keys and a masked mean."""

    def forward(self, ids, mask):
        x = self.encode(ids, mask)
        m = mask.to(x.dtype)[:, :, None]
        return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class UNet(nn.Module):
    """Two downs (max pool), a bottleneck, two ups (ConvTranspose2d stride 2) each concatenated
    with its skip; odd-size inputs are padded to a multiple of 4 and cropped back."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.e1 = nn.Sequential(_conv_bn(3, c), nn.ReLU())
        self.e2 = nn.Sequential(_conv_bn(c, 2 * c), nn.ReLU())
        self.mid = nn.Sequential(_conv_bn(2 * c, 4 * c), nn.ReLU())
        self.u2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.d2 = nn.Sequential(_conv_bn(4 * c, 2 * c), nn.ReLU())
        self.u1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.d1 = nn.Sequential(_conv_bn(2 * c, c), nn.ReLU())
        self.head = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % 4, 0, (-h) % 4))
        s1 = self.e1(x)
        s2 = self.e2(F.max_pool2d(s1, 2))
        m = self.mid(F.max_pool2d(s2, 2))
        y = self.d2(torch.cat([self.u2(m), s2], dim=1))
        y = self.d1(torch.cat([self.u1(y), s1], dim=1))
        return self.head(y)[:, :, :h, :w]


class SE(nn.Module):
    def __init__(self, c: int, r: int, gate=torch.sigmoid, act=F.silu):
        super().__init__()
        self.down, self.up = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)
        self.gate, self.act = gate, act

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.up(self.act(self.down(s))))


class MBConv(nn.Module):
    """Expand 1x1, depthwise kxk (stride 1 or 2), SE, project 1x1; residual when shapes match."""

    def __init__(self, cin, cout, stride, k=3, expand=4, act=F.silu, gate=torch.sigmoid):
        super().__init__()
        mid = cin * expand
        self.expand, self.dw = _conv_bn(cin, mid, 1), _conv_bn(mid, mid, k, stride, groups=mid)
        self.se = SE(mid, max(4, cin // 4), gate, act if act is not F.hardswish else F.relu)
        self.project = _conv_bn(mid, cout, 1)
        self.act, self.residual = act, stride == 1 and cin == cout

    def forward(self, x):
        y = self.act(self.expand(x))
        y = self.project(self.se(self.act(self.dw(y))))
        return x + y if self.residual else y  # stochastic depth off (eval)


class EfficientNetish(nn.Module):
    def __init__(self, c: int = 8, act=F.silu, gate=torch.sigmoid, classes: int = 10):
        super().__init__()
        self.stem, self.act = _conv_bn(3, c, 3, 2), act
        self.blocks = nn.Sequential(
            MBConv(c, c, 1, 3, 1, act, gate),
            MBConv(c, 2 * c, 2, 3, 4, act, gate),
            MBConv(2 * c, 2 * c, 1, 5, 4, act, gate),
            MBConv(2 * c, 3 * c, 2, 5, 4, act, gate),
        )
        self.head = nn.Linear(3 * c, classes)

    def forward(self, x):
        x = self.blocks(self.act(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MobileNetV3ish(EfficientNetish):
    """Hardswish activations, hardsigmoid SE gating."""

    def __init__(self, c: int = 8):
        super().__init__(c, act=F.hardswish, gate=F.hardsigmoid)


class Detector(nn.Module):
    """A backbone of three strides, a feature pyramid (1x1 laterals, nearest upsampling + add,
    3x3 smoothing) and shared heads: boxes [B, N, 4] and scores [B, N, C] over every level's
    anchors (N = A * sum of H*W)."""

    def __init__(self, c: int = 8, anchors: int = 2, classes: int = 3):
        super().__init__()
        self.b1 = nn.Sequential(_conv_bn(3, c, 3, 2), nn.ReLU())
        self.b2 = nn.Sequential(_conv_bn(c, 2 * c, 3, 2), nn.ReLU())
        self.b3 = nn.Sequential(_conv_bn(2 * c, 4 * c, 3, 2), nn.ReLU())
        self.lat = nn.ModuleList([nn.Conv2d(k * c, c, 1) for k in (1, 2, 4)])
        self.smooth = nn.Conv2d(c, c, 3, padding=1)
        self.box = nn.Conv2d(c, anchors * 4, 3, padding=1)
        self.cls = nn.Conv2d(c, anchors * classes, 3, padding=1)
        self.classes = classes

    def forward(self, x):
        f1 = self.b1(x)
        f2 = self.b2(f1)
        f3 = self.b3(f2)
        p3 = self.lat[2](f3)
        p2 = self.lat[1](f2) + F.interpolate(p3, size=f2.shape[-2:], mode="nearest")
        p1 = self.lat[0](f1) + F.interpolate(p2, scale_factor=2, mode="nearest")
        boxes, scores = [], []
        for p in (p1, p2, p3):
            p = F.relu(self.smooth(p))
            b = p.shape[0]
            boxes.append(self.box(p).permute(0, 2, 3, 1).reshape(b, -1, 4))
            scores.append(self.cls(p).permute(0, 2, 3, 1).reshape(b, -1, self.classes))
        return torch.cat(boxes, dim=1), torch.cat(scores, dim=1).sigmoid()


class Recurrent(nn.Module):
    """[B, T, F] -> LSTM (or GRU) of two layers -> the last step into a head."""

    def __init__(self, hidden: int = 16, gru: bool = False):
        super().__init__()
        rnn = nn.GRU if gru else nn.LSTM
        self.rnn = rnn(6, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


class GRUNet(Recurrent):
    def __init__(self, hidden: int = 16):
        super().__init__(hidden, gru=True)


class TorchEncoder(nn.Module):
    """torch's own layers: nn.TransformerEncoder (batch first, a key padding mask from the int64
    mask) over embedded token ids, mean over tokens."""

    def __init__(self, d: int = 32, heads: int = 4):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, ids, mask):
        return self.enc(self.emb(ids), src_key_padding_mask=mask == 0).mean(dim=1)


class PatchMHA(nn.Module):
    """A conv patch embedding into nn.MultiheadAttention (its in-projection makes a 4-D
    [3, T, B, E] value, the batch third), returning the logits and the attention weights."""

    def __init__(self, d: int = 32, heads: int = 4):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.mha = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = nn.Linear(d, 5)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        y, weights = self.mha(t, t, t)
        return self.head(y.mean(dim=1)), weights


F32, I64 = torch.float32, torch.int64
# name -> (class, inputs of one sample: (shape, dtype) each)
MODELS: dict[str, tuple[type[nn.Module], list[tuple[tuple[int, ...], torch.dtype]]]] = {
    "vit": (ViT, [((3, 32, 32), F32)]),
    "vitmatmul": (ViTMatmul, [((3, 32, 32), F32)]),
    "textenc": (TextEncoder, [((12,), I64)]),
    "textmask": (MaskedTextEncoder, [((12,), I64), ((12,), I64)]),
    "unet": (UNet, [((3, 100, 140), F32)]),
    "effnet": (EfficientNetish, [((3, 37, 45), F32)]),
    "mbv3": (MobileNetV3ish, [((3, 37, 45), F32)]),
    "detector": (Detector, [((3, 48, 64), F32)]),
    "torchenc": (TorchEncoder, [((12,), I64), ((12,), I64)]),
    "patchmha": (PatchMHA, [((3, 32, 32), F32)]),
}
# not partitionable (the burst path refuses them by name); the VM path serves them
RECURRENT: dict[str, type[nn.Module]] = {"lstm": Recurrent, "gru": GRUNet}


def build(name: str, seed: int = 0, **width) -> nn.Module:
    """The model ``name``; ``width`` (``c=48``) widens it beyond the tests' size."""
    cls = MODELS[name][0] if name in MODELS else RECURRENT[name]
    torch.manual_seed(seed)
    return _init(cls(**width), seed)


def example(name: str, batch: int = 2, seed: int = 3, shapes=None) -> list[torch.Tensor]:
    """Inputs of ``batch`` samples: token ids below VOCAB, a mask of ones then zeros (each
    sample keeps at least one token), floats elsewhere."""
    g = torch.Generator().manual_seed(seed)
    specs = MODELS[name][1] if name in MODELS else [((9, 6), F32)]
    out = []
    for i, ((_, dtype), shape) in enumerate(zip(specs, shapes or [s for s, _ in specs])):
        if dtype == I64 and i == 1:  # the attention mask
            keep = torch.randint(1, shape[0] + 1, (batch, 1), generator=g)
            out.append((torch.arange(shape[0])[None] < keep).to(I64))
        elif dtype == I64:
            out.append(torch.randint(0, VOCAB, (batch, *shape), generator=g))
        else:
            out.append(torch.randn((batch, *shape), generator=g).to(dtype))
    return out


def export(model: nn.Module, xs: list[torch.Tensor], seq: bool = False):
    """torch.export with a dynamic batch dimension on every input (example batch >= 2) and, with
    ``seq``, a dynamic sequence length (dimension 1)."""
    batch = torch.export.Dim("batch", min=1, max=8)
    dims = {0: batch}
    if seq:
        dims[1] = torch.export.Dim("seq", min=2, max=64)
    return torch.export.export(model, tuple(xs), dynamic_shapes=tuple(dict(dims) for _ in xs))
