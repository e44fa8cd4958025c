"""§3.3 normalization and §4.2 dropout against plain float64 loops."""

import math

import pytest
import torch

from alexnet.layers import LocalResponseNorm, PaperDropout, SameMapNorm, ceil_padding


def lrn_loop(a, n=5, alpha=1e-4, beta=0.75, k=2.0):
    """§3.3 verbatim: b_i = a_i / (k + α Σ_{j=max(0,i−n/2)}^{min(N−1,i+n/2)} a_j²)^β."""
    a = a.double()
    b = torch.empty_like(a)
    N = a.shape[1]
    for i in range(N):
        lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
        s = (a[:, lo:hi + 1] ** 2).sum(dim=1)
        b[:, i] = a[:, i] / (k + alpha * s) ** beta
    return b


@pytest.mark.parametrize("alpha_over_size", [False, True])
def test_lrn_matches_formula(alpha_over_size):
    torch.manual_seed(0)
    a = torch.randn(2, 12, 5, 5) * 30  # large activations so the α term matters
    lrn = LocalResponseNorm(5, 1e-4, 0.75, 2.0, alpha_over_size=alpha_over_size)
    expected = lrn_loop(a, alpha=1e-4 / 5 if alpha_over_size else 1e-4)
    torch.testing.assert_close(lrn(a).double(), expected, rtol=1e-5, atol=1e-6)
    # and the two conventions really differ on such inputs
    other = lrn_loop(a, alpha=1e-4 if alpha_over_size else 1e-4 / 5)
    assert (lrn(a).double() - other).abs().max() > 1e-3


def test_lrn_alpha_over_size_equals_torch():
    torch.manual_seed(1)
    a = torch.randn(3, 48, 7, 7) * 10
    ours = LocalResponseNorm(5, 1e-4, 0.75, 2.0, alpha_over_size=True)
    theirs = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    assert torch.equal(LocalResponseNorm(5, 1e-4, 0.75, 2.0, alpha_over_size=True, plain=True)(a), theirs(a))
    torch.testing.assert_close(ours(a), theirs(a), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("alpha_over_size", [False, True])
def test_fast_lrn_equals_plain_values_and_gradients(alpha_over_size):
    """The faithful mode's cheaper LRN: same outputs and input gradients as the
    plain implementation to float32 rounding, and exact gradients in float64."""
    torch.manual_seed(3)
    a = (torch.randn(4, 48, 9, 9) * 30).requires_grad_()
    g = torch.randn(4, 48, 9, 9)
    outs = []
    for plain in (True, False):
        lrn = LocalResponseNorm(5, 1e-4, 0.75, 2.0, alpha_over_size=alpha_over_size, plain=plain)
        y = lrn(a)
        (grad,) = torch.autograd.grad(y, a, g)
        outs.append((y, grad))
    (y0, g0), (y1, g1) = outs
    torch.testing.assert_close(y1, y0, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)
    assert (g0 - g * 2.0 ** -0.75).abs().max() > 1e-3  # the α term's share of the gradient is tested
    x64 = (torch.randn(2, 7, 3, 3, dtype=torch.float64) * 30).requires_grad_()
    lrn = LocalResponseNorm(5, 1e-4, 0.75, 2.0, alpha_over_size=alpha_over_size)
    assert torch.autograd.gradcheck(lrn, (x64,))


def test_fast_lrn_channels_last_equals_contiguous():
    torch.manual_seed(4)
    a = (torch.randn(2, 48, 6, 6) * 30).requires_grad_()
    g = torch.randn(2, 48, 6, 6)
    lrn = LocalResponseNorm(5, 1e-4, 0.75, 2.0)
    y = lrn(a)
    (ga,) = torch.autograd.grad(y, a, g)
    b = a.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    yb = lrn(b)
    assert yb.is_contiguous(memory_format=torch.channels_last)
    (gb,) = torch.autograd.grad(yb, b, g.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(yb, y, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(gb, ga, rtol=1e-5, atol=1e-6)


def test_samemap_norm_matches_loop():
    torch.manual_seed(2)
    a = torch.randn(1, 2, 6, 6).double() * 20
    size, scale, power = 5, 1e-3, 0.75
    expected = torch.empty_like(a)
    for y in range(6):
        for x in range(6):
            win = a[:, :, max(0, y - 2):y + 3, max(0, x - 2):x + 3]
            denominator = (1 + scale / size ** 2 * (win ** 2).sum(dim=(2, 3))) ** power
            expected[:, :, y, x] = a[:, :, y, x] / denominator
    torch.testing.assert_close(SameMapNorm(size, scale, power)(a), expected, rtol=1e-12, atol=1e-12)


def test_paper_dropout_train_and_test():
    torch.manual_seed(0)
    x = torch.rand(200, 500) + 0.5
    drop = PaperDropout(0.5)
    y = drop.train()(x)
    kept = y != 0
    assert torch.equal(y[kept], x[kept])  # survivors pass unchanged, not ×2
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    assert torch.equal(drop.eval()(x), x * 0.5)  # test time: × (1 − p)
    assert torch.equal(PaperDropout(0.0).train()(x), x)
    with pytest.raises(ValueError):
        PaperDropout(1.0)


def test_ceil_padding_rule():
    assert ceil_padding(224, 11, 4) == 3  # 1 + ceil(213/4) = 55
    assert ceil_padding(227, 11, 4) == 0
    assert 1 + (224 + ceil_padding(224, 11, 4) - 11) // 4 == 1 + math.ceil((224 - 11) / 4) == 55
