"""Function instances run convs on packed weights in channels-last: the same results as
``F.conv2d`` for every conv geometry the zoo uses, and ops that read the layout still work."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from burst.packed_conv import conv2d, plain_inputs

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "cin,cout,k,stride,pad,dil,groups,hw",
    [
        (3, 16, 7, 2, 3, 1, 1, (33, 40)),  # a stem, odd sizes
        (16, 32, 3, 1, 1, 1, 1, (9, 14)),  # a half-height tile
        (32, 32, 3, 2, 0, 1, 1, (15, 16)),  # strided, no padding (a tile's conv)
        (32, 32, 3, 1, 2, 2, 1, (12, 12)),  # dilated
        (32, 32, 3, 1, 1, 1, 32, (14, 14)),  # depthwise (MobileNet)
        (32, 64, 3, 1, 1, 1, 4, (7, 7)),  # grouped
        (64, 128, 1, 1, 0, 1, 1, (4, 7)),  # a 1x1 on a small map
    ],
)
def test_packed_convs_equal_plain_ones(cin, cout, k, stride, pad, dil, groups, hw):
    torch.manual_seed(0)
    x = torch.randn(1, cin, *hw)
    w = torch.randn(cout, cin // groups, k, k)
    b = torch.randn(cout)
    want = F.conv2d(x, w, b, stride, pad, dil, groups)
    for _ in range(2):  # the second call reuses the packed weight
        got = conv2d(x, w, b, stride, pad, dil, groups)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # another input shape gets its own packing, and no bias is fine too
    x2 = torch.randn(1, cin, hw[0] + 3, hw[1])
    torch.testing.assert_close(
        conv2d(x2, w, None, stride, pad, dil, groups),
        F.conv2d(x2, w, None, stride, pad, dil, groups),
        rtol=1e-4,
        atol=1e-4,
    )


def test_layout_reading_ops_get_plain_tensors():
    x = torch.randn(1, 8, 5, 5)
    y = conv2d(x, torch.randn(8, 8, 3, 3), None, 1, 1)
    (flat_in,) = plain_inputs("aten.view.default", [y])
    assert flat_in.is_contiguous()
    assert flat_in.view(1, -1).shape == (1, 200)
    # layout-free ops keep whatever they are given
    assert plain_inputs("aten.relu.default", [y])[0] is y


def test_other_dtypes_run_plain():
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    w = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(conv2d(x, w, None, 1, 1), F.conv2d(x, w, None, 1, 1))


def test_packed_copies_are_paid_from_the_weight_cache_and_refused_when_they_do_not_fit():
    from burst import packed_conv
    from burst.weights import LruCache

    torch.manual_seed(0)
    x = torch.randn(1, 16, 10, 10)
    w = torch.randn(32, 16, 3, 3)  # 18,432 bytes: its packed copy costs as much again
    wbytes = w.numel() * w.element_size()
    want = F.conv2d(x, w, None, 1, 1)
    cache = LruCache(budget_bytes=wbytes + wbytes // 2)  # the weight fits, a second copy not
    cache.put("old-plan", object(), wbytes // 2)
    cache.put("plan", {"w": w}, wbytes)
    packed_conv.set_room(cache.grow_newest)
    try:
        torch.testing.assert_close(conv2d(x, w, None, 1, 1), want, rtol=1e-4, atol=1e-4)
        assert not hasattr(w, "_tidegate_packed") or not any(w._tidegate_packed.values())
        assert cache.used_bytes == wbytes + wbytes // 2  # refused: nothing charged or evicted

        roomy = LruCache(budget_bytes=2 * wbytes + wbytes // 2)
        roomy.put("old-plan", object(), wbytes)
        roomy.put("plan", {"w": w}, wbytes)
        packed_conv.set_room(roomy.grow_newest)
        torch.testing.assert_close(conv2d(x, w, None, 1, 1), want, rtol=1e-4, atol=1e-4)
        # the older plan's weights made way for the packed copy, charged to the plan in use
        assert "old-plan" not in roomy and roomy.used_bytes == 2 * wbytes
    finally:
        packed_conv.set_room(None)
