"""The paper's building blocks that PyTorch does not ship in the paper's form.

- `LocalResponseNorm`: §3.3, with the paper's α and the 2012 code's α/n.
- `SameMapNorm`: the 2012 code's extra 5×5 normalization after conv2
  (layers-145 `cnorm2`), which the paper does not mention.
- `PaperDropout`: §4.2 dropout, scaling by (1 − p) at test time.
- `PadToCeil`: the 2012 code's output-size rule, 224 → 55 for conv1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _channel_window_mean(t: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of t over a centred window of `size` channels (odd), zero-padded at
    both ends: Σ/size, the sum of §3.3 over j = i − size//2 … i + size//2.

    As one matrix product with the C×C band matrix (1/size where |i − j| ≤
    size//2): the same five terms per output as a sliding window, summed by a
    GEMM. On this project's 2-core CPU it is 10× faster than the
    `avg_pool3d` that `F.local_response_norm` uses (1.2 ms against 14.5 ms
    for conv1's maps at batch 16), and equal to it to float32 rounding.
    Works on both memory layouts (NCHW and channels-last) without a copy.
    """
    c = t.shape[1]
    i = torch.arange(c, device=t.device)
    band = ((i[:, None] - i[None, :]).abs() <= size // 2).to(t.dtype) / size  # symmetric
    if t.is_contiguous():
        return torch.matmul(band, t.flatten(2)).view(t.shape)
    # channels-last: the channels are the innermost dimension
    return torch.matmul(t.permute(0, 2, 3, 1), band).permute(0, 3, 1, 2)


class _LRNFunction(torch.autograd.Function):
    """y = x · d^(−β), d = k + α · mean_window(x²), with its gradient written out:

        ∂L/∂x_i = g_i · d_i^(−β) − 2αβ · x_i · mean_window(g · x · d^(−β−1))_i

    (the window is symmetric for odd sizes, so its transpose is itself). The
    same arithmetic as `torch.nn.functional.local_response_norm` up to float32
    rounding (tested), in about two thirds of its memory passes: autograd
    through the plain version keeps and re-reads a padded copy and four
    intermediates; this keeps x, d^(−β) and d.
    """

    @staticmethod
    def forward(ctx, x, size: int, alpha: float, beta: float, k: float):
        d = _channel_window_mean(x * x, size).mul_(alpha).add_(k)
        r = d.pow(-beta)
        ctx.save_for_backward(x, r, d)
        ctx.size, ctx.alpha, ctx.beta = size, alpha, beta
        return x * r

    @staticmethod
    def backward(ctx, g):
        x, r, d = ctx.saved_tensors
        t = g * r
        p = _channel_window_mean(torch.mul(t, x).div_(d), ctx.size)
        return torch.addcmul(t, x, p, value=-2.0 * ctx.alpha * ctx.beta), None, None, None, None


class LocalResponseNorm(nn.Module):
    """Local response normalization across adjacent kernel maps (§3.3).

        b[i] = a[i] / (k + α · Σ_{j = max(0, i − n/2)}^{min(N−1, i + n/2)} a[j]²)^β

    with k = 2, n = 5, α = 1e-4, β = 0.75, summed over the N maps of the
    tensor it is given (the model applies it to one tower's maps, so the two
    towers are never mixed, as in §3.3's per-GPU layout).

    `alpha_over_size=False` is the formula as printed. `alpha_over_size=True`
    divides α by n, as the 2012 code (cuda-convnet's `cmrnorm`) and
    `torch.nn.LocalResponseNorm` do; with it this module equals
    `torch.nn.LocalResponseNorm(size, alpha, beta, k)` to float32 rounding.

    `plain=False` (the default, odd n) computes it with `_LRNFunction`, a
    cheaper forward and backward of the same formula; `plain=True` calls
    `torch.nn.functional.local_response_norm` (which uses α/n, so the printed
    form passes α·n), the reference the fast one is tested against.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                 k: float = 2.0, alpha_over_size: bool = False, plain: bool = False):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.alpha_over_size = alpha_over_size
        self.plain = plain or size % 2 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha if self.alpha_over_size else self.alpha * self.size  # the α of Σ/n
        if self.plain:
            return F.local_response_norm(x, self.size, alpha=alpha, beta=self.beta, k=self.k)
        return _LRNFunction.apply(x, self.size, alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return (f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
                f"alpha_over_size={self.alpha_over_size}, plain={self.plain}")


class SameMapNorm(nn.Module):
    """The 2012 code's same-map response normalization (`cnorm2`, type rnorm).

        b = a / (1 + (scale / size²) · Σ_{size×size window around the pixel} a²)^pow

    cuda-convnet divides `scale` by size² for this layer type (layer.py,
    NormLayerParser) and uses 1 as the additive constant; the window is
    centred and zero-padded at the borders. Not in the paper; used by the
    `cuda-convnet` profile after conv2's LRN.
    """

    def __init__(self, size: int = 5, scale: float = 1e-3, power: float = 0.75):
        super().__init__()
        self.size, self.scale, self.power = size, scale, power

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # avg_pool2d with count_include_pad gives Σ/size² over the zero-padded window.
        mean_sq = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2,
                               count_include_pad=True)
        return x / (1.0 + self.scale * mean_sq).pow(self.power)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, power={self.power}"


class PaperDropout(nn.Module):
    """Dropout as §4.2 describes it, not PyTorch's "inverted" dropout.

    Training: each output is set to zero with probability p and otherwise
    passed unchanged. Test: "we use all the neurons but multiply their outputs
    by 0.5" (= 1 − p). `torch.nn.Dropout` instead scales by 1/(1 − p) while
    training; the expectations agree, the activations the next layer sees at
    each phase do not.

    The masks come from `generator` when one is set (a `torch.Generator` on the
    input's device; the trainer gives each tower its own, seeded every step from
    (seed, tower, rank, step): `engine.Trainer.seed_dropout`), else from torch's
    global generator.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p={p}: must be in [0, 1)")
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        if self.training:
            return x * keep_mask(x, 1.0 - self.p, self.generator)
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@torch.compiler.disable
def keep_mask(x: torch.Tensor, keep: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """1 with probability `keep`, else 0, independently for each element of x (x's shape, dtype and
    device), drawn from `generator` (None: the global one). Outside any `torch.compile` graph, which
    cannot hold a generator: under `--fast` the compiled net breaks here and at no other place."""
    return torch.empty_like(x).bernoulli_(keep, generator=generator)


def ceil_padding(size: int, kernel: int, stride: int) -> int:
    """Zeros to add past the right/bottom edge for the 2012 code's output size.

    cuda-convnet sizes a convolution's output as 1 + ceil((size − kernel) / stride):
    for conv1 on a 224 crop that is 1 + ceil(213 / 4) = 55, so the last window
    reads 3 px of zeros past the edge. On 227 (Caffe's crop) it is exact: 0.
    """
    out = 1 + math.ceil((size - kernel) / stride)
    return (out - 1) * stride + kernel - size


class PadToCeil(nn.Module):
    """Zero-pad right and bottom so that a following conv (kernel, stride)
    produces the 2012 code's ceil-rounded output size (see `ceil_padding`)."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_w = ceil_padding(x.shape[-1], self.kernel, self.stride)
        pad_h = ceil_padding(x.shape[-2], self.kernel, self.stride)
        if pad_w == 0 and pad_h == 0:
            return x
        return F.pad(x, (0, pad_w, 0, pad_h))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"
