"""§4.1 data augmentation and §2 mean subtraction, on batches, on any device.

Training (§4.1): "extracting random 224 × 224 patches (and their horizontal
reflections) from the 256×256 images", and "to each training image we add
multiples of the found principal components, with magnitudes proportional to
the corresponding eigenvalues times a random variable drawn from a Gaussian
with mean zero and standard deviation 0.1":

    I_xy += [p1, p2, p3] [α1 λ1, α2 λ2, α3 λ3]ᵀ ,  α_i ~ N(0, 0.1), once per image per use.

Test (§4.1): "extracting five 224 × 224 patches (the four corner patches and
the center patch) as well as their horizontal reflections ... averaging the
predictions" — torchvision's `ten_crop` order.

All random numbers of a batch are drawn first, on the CPU, into `Draws`;
`train_batch` then applies them on whatever device holds the images, so the
CPU and GPU loaders give the same crops, flips and noise for the same draws.

Choices the paper leaves open, by profile (config fields in brackets):

- Pixel scale and λ versus √λ [`pca_noise`]. The network sees 0–255 values
  minus the mean image in both profiles (as in the 2012 code).
  "paper": λ are eigenvalues of the covariance of RGB values scaled to [0, 1]
  (with 0–255 values λ1 is in the thousands and α·λ would swamp the image);
  the noise P·(α∘λ) is added in [0, 1] units, i.e. 255·P·(α∘λ/255²) on 0–255.
  "cuda-convnet" (convdata.py): P·(α∘√λ) on 0–255 values (√λ = the
  components' standard deviations), then the whole image divided by 1.1 —
  and only while the noise is on (the 2012 code skips both when it is off).
- Mean patch [`mean_crop`]. "same": subtract the 256×256 mean image, then
  crop/flip (the mean patch at the crop's offset, mirrored with the image).
  "center": the 2012 code subtracts the mean's *central* patch from every
  crop, unflipped.
- Crops per image or per chunk [`crop_chunk`]: 1, or 32 consecutive images
  sharing one offset and flip, as the 2012 code did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as TF

from ..config import AlexNetConfig


@dataclass
class Draws:
    """The random numbers of one training batch (CPU tensors)."""
    top: torch.Tensor  # N, int64: crop row offset in [0, 256 − S]
    left: torch.Tensor  # N, int64: crop column offset
    flip: torch.Tensor  # N, bool: horizontal reflection
    alpha: torch.Tensor  # N×3, float32: α ~ N(0, σ) for PCA lighting

    def select(self, rows) -> "Draws":
        return Draws(self.top[rows], self.left[rows], self.flip[rows], self.alpha[rows])


def draw(n: int, cfg: AlexNetConfig, generator: torch.Generator, image_size: int = 256) -> Draws:
    m = -(-n // cfg.crop_chunk)  # chunks of crop_chunk images share offset and flip
    span = image_size - cfg.crop_size + 1
    top = torch.randint(0, span, (m,), generator=generator)
    left = torch.randint(0, span, (m,), generator=generator)
    flip = torch.randint(0, 2, (m,), generator=generator).bool()
    alpha = torch.randn(n, 3, generator=generator) * cfg.pca_std
    if not cfg.random_crops:  # the ablation no-crop: the centre patch, unflipped (the same draws taken)
        top, left = torch.full_like(top, span // 2), torch.full_like(left, span // 2)
        flip = torch.zeros_like(flip)
    expand = lambda t: t.repeat_interleave(cfg.crop_chunk)[:n]  # noqa: E731
    return Draws(expand(top), expand(left), expand(flip), alpha)


def batch_buffer(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An empty batch; in a DataLoader worker, allocated in shared memory
    as `default_collate` does for its batches, so handing it to the main process
    copies nothing (a 128-image float batch is 77 MB: the copy cost a fifth of the CPU
    pipeline's time on 2 cores)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    elem = torch.empty(0, dtype=dtype)
    storage = elem._typed_storage()._new_shared(math.prod(shape))  # as default_collate
    return elem.new(storage).view(shape)


class Normalizer:
    """The dataset constants (mean image, PCA) on one device, and the §2/§4.1
    arithmetic that uses them."""

    def __init__(self, mean, eigvals, eigvecs, cfg: AlexNetConfig, device="cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device)  # 3×256×256
        s, off = cfg.crop_size, (self.mean.shape[-1] - cfg.crop_size) // 2
        self.mean_center = self.mean[:, off:off + s, off:off + s]
        self.mean_flipped = self.mean.flip(-1)  # for flipped crops on the CPU, sliced without a copy
        self.eigvecs = torch.as_tensor(eigvecs, dtype=torch.float32, device=device)  # 3×3, columns
        lam = torch.as_tensor(eigvals, dtype=torch.float64).clamp(min=0)
        # per-component magnitude in 0–255 units, times α gives the noise coefficients
        mag = lam / 255.0 if cfg.pca_noise == "paper" else lam.sqrt()
        self.magnitude = mag.float().to(device)

    def lighting(self, alpha: torch.Tensor) -> torch.Tensor:
        """N×3 RGB offsets, 0–255 units: P·(α∘λ) (paper, see module doc) or P·(α∘√λ)."""
        return (alpha.to(self.device) * self.magnitude) @ self.eigvecs.T

    def train_batch(self, x, d: Draws, lighting: bool | None = None) -> torch.Tensor:
        """uint8 N×3×256×256 (a tensor, or a list of 3×256×256) → float N×3×S×S:
        crop, flip, mean, PCA lighting.

        Two ways to the same numbers (the same float operations in the same
        order, so equal bit for bit; tested): on the CPU a loop over images that
        slices first and converts only the S×S patch, while it is in cache; on a
        GPU one gather for the whole batch, one kernel instead of N.
        """
        lighting = self.cfg.pca_lighting if lighting is None else lighting
        light = self.lighting(d.alpha) if lighting else None  # N×3, or None
        if self.device.type == "cpu":
            return self._sliced(x, d, light)
        return self._gathered(x, d, light)

    def _finish(self, v: torch.Tensor, light: torch.Tensor | None) -> torch.Tensor:
        """In place, on one float patch (3×S×S) or a batch: central mean, lighting."""
        if self.cfg.mean_crop == "center":
            v -= self.mean_center
        if light is not None:
            v += light[..., None, None]
            if self.cfg.pca_noise == "cuda-convnet":
                v /= 1.0 + self.cfg.pca_std  # convdata.py: cropped /= 1.0 + color_noise_coeff
        return v

    def _sliced(self, x, d: Draws, light: torch.Tensor | None) -> torch.Tensor:
        s, size, same = self.cfg.crop_size, self.mean.shape[-1], self.cfg.mean_crop == "same"
        out = batch_buffer((len(x), 3, s, s))
        for i, (img, t, l, f) in enumerate(zip(x, d.top.tolist(), d.left.tolist(), d.flip.tolist())):
            patch = img[:, t:t + s, l:l + s]
            if f:
                patch = patch.flip(-1)
            out[i].copy_(patch)  # uint8 → float32 (a mixed-dtype subtraction is 3× slower)
            if same:  # the mean patch at the crop's offset, mirrored with the image
                if f:
                    out[i] -= self.mean_flipped[:, t:t + s, size - l - s:size - l]
                else:
                    out[i] -= self.mean[:, t:t + s, l:l + s]
            self._finish(out[i], None if light is None else light[i])
        return out

    def _gathered(self, x, d: Draws, light: torch.Tensor | None) -> torch.Tensor:
        s = self.cfg.crop_size
        x = torch.stack(list(x)) if isinstance(x, (list, tuple)) else x
        x = x.to(self.device).float()
        if self.cfg.mean_crop == "same":
            x = x - self.mean
        n, dev = x.shape[0], x.device
        ar = torch.arange(s, device=dev)
        rows = d.top.to(dev)[:, None] + ar  # N×S
        cols = torch.where(d.flip.to(dev)[:, None], d.left.to(dev)[:, None] + s - 1 - ar,
                           d.left.to(dev)[:, None] + ar)  # N×S, reversed when flipped
        x = x[torch.arange(n, device=dev)[:, None, None, None],
              torch.arange(3, device=dev)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]]  # N×3×S×S
        return self._finish(x, light)

    def test_batch(self, x: torch.Tensor, views: str = "center") -> torch.Tensor:
        """uint8 N×3×256×256 (or a list) → N×3×S×S (centre patch) or N×10×3×S×S (§4.1's ten)."""
        s = self.cfg.crop_size
        x = torch.stack(list(x)) if isinstance(x, (list, tuple)) else x
        x = x.to(self.device).float()
        same = self.cfg.mean_crop == "same"
        if same:
            x = x - self.mean
        if views == "center":
            x = TF.center_crop(x, [s, s])
        elif views == "ten":
            x = torch.stack(TF.ten_crop(x, [s, s]), dim=1)  # N×10×3×S×S
        else:
            raise ValueError(f"views={views!r}: 'center' or 'ten'")
        return (x if same else x - self.mean_center).contiguous()
