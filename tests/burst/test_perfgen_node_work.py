"""What the performance model prices a node by: the bytes it reads and writes and the MACs of
products whose operands are both activations (the graph counts one per output element)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from burst.graph import build_graph
from burst.node_work import node_works


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(16, 48)

    def forward(self, x):  # [B, 10, 16]
        q, k, v = self.qkv(x).view(x.shape[0], 10, 3, 2, 8).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # [B, 2, 10, 8]
        s = q @ k.transpose(-2, -1)  # [B, 2, 10, 10], 8 MACs an element
        return a.sum() + s.sum()


def _works(batch: int):
    x = torch.randn(2, 10, 16)
    program = torch.export.export(
        _Attention().eval(), (x,), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=8)},)
    )
    works = node_works(build_graph(program, "attn"), batch)
    return {w.op.split(".")[1]: w for w in works if w.op.startswith("aten.")}


def test_node_bytes_and_weights_at_the_batch():
    for batch in (1, 3):
        w = _works(batch)["linear"]
        # reads [B, 10, 16] and writes [B, 10, 48] float32; its weights [48, 16] + [48]
        assert w.act_bytes == batch * 10 * (16 + 48) * 4
        assert w.weight_bytes == (48 * 16 + 48) * 4
        assert w.macs == batch * 10 * 48 * 16


def test_products_of_activations_count_their_reduced_dim():
    w = _works(2)
    matmul = next(v for k, v in w.items() if k in ("matmul", "bmm"))
    assert matmul.macs == 2 * (2 * 10 * 10) * 8
    # attention: q k^T and the weights times v, each 10 keys x 8 per output element
    attention = w["scaled_dot_product_attention"]
    assert attention.macs == 2 * (2 * 10 * 8) * 2 * 10
    assert attention.act_bytes == 2 * 4 * (4 * 2 * 10 * 8)  # q, k, v read, the output written
