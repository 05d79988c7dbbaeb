"""Exact window arithmetic for splitting convolutions and pools into output tiles.

Ranges are inclusive ``(start, end)`` pairs of global coordinates along one spatial axis.
"""

from __future__ import annotations

import torch


def pool_out_size(in_size: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    """PyTorch's output size for a conv or pool along one axis."""
    span = in_size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    # a window may not start inside the right padding (PyTorch drops it)
    if ceil_mode and (out - 1) * s >= in_size + p:
        out -= 1
    return out


def input_window(
    out_range: tuple[int, int], k: int, s: int, p: int, d: int, in_size: int
) -> tuple[tuple[int, int], int, int]:
    """Input rows needed for output rows ``out_range``: (clipped range, pad_lo, pad_hi).

    ``pad_lo``/``pad_hi`` are how many rows of the window lie outside the image; the caller adds
    them as explicit border padding and runs the op with padding 0.
    """
    o0, o1 = out_range
    lo = o0 * s - p
    hi = o1 * s - p + d * (k - 1)
    c_lo, c_hi = max(lo, 0), min(hi, in_size - 1)
    return (c_lo, c_hi), c_lo - lo, hi - c_hi


def avg_divisors(
    out_range: tuple[int, int], k: int, s: int, p: int, in_size: int, count_include_pad: bool
) -> torch.Tensor:
    """Per-position window sizes along one axis, as PyTorch's avg_pool2d counts them."""
    sizes = []
    for o in range(out_range[0], out_range[1] + 1):
        start = o * s - p
        end = min(start + k, in_size + p)
        if not count_include_pad:
            start, end = max(start, 0), min(end, in_size)
        sizes.append(end - start)
    return torch.tensor(sizes, dtype=torch.float64)


def split_range(size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` near-equal inclusive ranges covering ``[0, size)``."""
    parts = max(1, min(parts, size))
    base, extra = divmod(size, parts)
    out, start = [], 0
    for i in range(parts):
        n = base + (1 if i < extra else 0)
        out.append((start, start + n - 1))
        start += n
    return out


def hull(a: tuple[int, int] | None, b: tuple[int, int]) -> tuple[int, int]:
    return b if a is None else (min(a[0], b[0]), max(a[1], b[1]))


def choose_grid(workers: int, height: int, width: int) -> tuple[int, int]:
    """The most-square ``gh x gw`` with ``gh*gw <= workers`` tiles that fit the map."""
    best = (1, 1)
    for gh in range(1, workers + 1):
        for gw in range(1, workers // gh + 1):
            if gh > height or gw > width:
                continue
            cand = (gh, gw)
            key = (gh * gw, -abs(gh - gw), gh)
            if key > (best[0] * best[1], -abs(best[0] - best[1]), best[0]):
                best = cand
    return best
