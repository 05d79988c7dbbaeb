"""Window arithmetic against brute force and against PyTorch itself."""

from __future__ import annotations

import itertools
import random

import torch
import torch.nn.functional as F

from burst.halo import avg_divisors, choose_grid, input_window, pool_out_size, split_range

torch.set_num_threads(1)


def _cases(n: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        k = rng.randint(1, 5)
        yield (
            k,
            rng.randint(1, 3),
            rng.randint(0, k // 2),
            rng.randint(1, 3),
            rng.randint(k * 3, 40),
        )


def test_output_size_matches_pytorch_pools_and_convs():
    for k, s, p, d, size in _cases(300):
        x = torch.zeros(1, 1, size)
        assert (
            pool_out_size(size, k, s, p, d)
            == F.conv1d(x, torch.zeros(1, 1, k), None, s, p, d).shape[-1]
        )
        for ceil in (False, True):
            got = pool_out_size(size, k, s, p, d, ceil)
            assert got == F.max_pool1d(x, k, s, p, d, ceil_mode=ceil).shape[-1], (k, s, p, d, size)
            if d == 1:
                assert got == F.avg_pool1d(x, k, s, p, ceil_mode=ceil).shape[-1]


def test_input_window_is_exactly_the_inputs_that_reach_the_outputs():
    for k, s, p, d, size in _cases(300, seed=1):
        out = pool_out_size(size, k, s, p, d)
        if out < 1:
            continue
        for o0, o1 in [(0, 0), (0, out - 1), (out - 1, out - 1), (out // 3, out // 2)]:
            touched = {o * s - p + j * d for o in range(o0, o1 + 1) for j in range(k)}
            (lo, hi), pad_lo, pad_hi = input_window((o0, o1), k, s, p, d, size)
            assert (lo - pad_lo, hi + pad_hi) == (min(touched), max(touched))
            # the crop is the hull clipped to the image; the rest is explicit border padding
            assert (lo, hi) == (max(min(touched), 0), min(max(touched), size - 1))
            assert lo - pad_lo == min(touched) and pad_lo == max(0, -min(touched))


def test_input_window_gradient_support_matches():
    # the input rows that get gradient from a band of output rows of a real conv
    conv = torch.nn.Conv2d(1, 1, 3, stride=2, padding=2, dilation=2, bias=False)
    torch.nn.init.constant_(conv.weight, 1.0)
    x = torch.ones(1, 1, 23, 5, requires_grad=True)
    y = conv(x)
    y[..., 3:6, :].sum().backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero().flatten().tolist()
    (lo, hi), _, _ = input_window((3, 5), 3, 2, 2, 2, 23)
    assert (lo, hi) == (rows[0], rows[-1])


def test_avg_divisors_match_pytorch_for_all_padding_modes():
    for k, s, p, _, size in _cases(300, seed=2):
        ones = torch.ones(1, 1, size, dtype=torch.float64)
        for ceil, cip in itertools.product((False, True), (False, True)):
            avg = F.avg_pool1d(ones, k, s, p, ceil_mode=ceil, count_include_pad=cip)[0, 0]
            n = avg.shape[-1]
            inside = torch.tensor(
                [sum(1 for j in range(k) if 0 <= o * s - p + j < size) for o in range(n)],
                dtype=torch.float64,
            )
            want = inside / avg  # divisor = (elements inside the image) / average of ones
            got = avg_divisors((0, n - 1), k, s, p, size, cip)
            assert torch.allclose(got, want), (k, s, p, size, ceil, cip)


def test_split_range_covers_without_overlap():
    for size, parts in [(1, 1), (7, 3), (8, 8), (5, 8), (224, 4), (13, 2)]:
        ranges = split_range(size, parts)
        assert ranges[0][0] == 0 and ranges[-1][1] == size - 1
        assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:]))
        lengths = [b - a + 1 for a, b in ranges]
        assert max(lengths) - min(lengths) <= 1 and len(ranges) == min(size, parts)


def test_grid_fits_the_map_and_the_worker_count():
    assert choose_grid(4, 56, 56) == (2, 2)
    assert choose_grid(8, 56, 56) in ((4, 2), (2, 4))
    assert choose_grid(8, 2, 2) == (2, 2)
    assert choose_grid(1, 7, 7) == (1, 1)
    assert choose_grid(3, 1, 9) == (1, 3)
