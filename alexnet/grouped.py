"""The two-tower AlexNet as one single-device module with grouped convolutions.

This is the layout Caffe's reference net and most later code use: conv2, conv4
and conv5 with `groups=2` (each half reads only its own half of the maps),
conv3 and the fully-connected layers over both halves. `tools/export.py`
fills it from a trained `alexnet.model.AlexNet` and copies this file beside
the weights, so it imports nothing but torch: an export loads without this
package.

    import json, torch
    from grouped import GroupedAlexNet                   # this file, copied by the export
    net = GroupedAlexNet(**json.load(open("config.json")))
    net.load_state_dict(torch.load("weights.pt", weights_only=True))
    net.eval()

Input: a 3×224×224 patch of 0–255 RGB minus the mean image (`mean.npy` beside
the weights), as in training. Output: the fc8 logits.

What the layout changes, and how the export keeps the logits the same:
- Local response normalization runs over each half's maps separately, as the
  two towers did (a plain `nn.LocalResponseNorm` over all 96 maps would mix
  the halves at their border, which is what Caffe does).
- Dropout is `nn.Dropout` (scaled by 1/(1 − p) in training), where the paper
  multiplies by 1 − p at test time; the export folds that 1 − p into the
  weights of fc7 and fc8, so eval-mode logits are the paper net's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupedAlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, widths: tuple = (96, 256, 384, 384, 256),
                 fc_width: int = 4096, groups: int = 2, conv6_width: int = 0, pool_kernel: int = 3,
                 pool_stride: int = 2, activation: str = "relu",
                 dropout: float = 0.5, lrn: dict | None = None, lrn1_before_relu: bool = False,
                 samemap: dict | None = None):
        """`lrn`: {"size", "alpha", "beta", "k"} with alpha as `F.local_response_norm` takes it
        (it divides by size); None: no LRN. `samemap`: the 2012 code's 5×5 same-map norm after
        conv2, {"size", "scale", "power"}; None: none (the paper profile)."""
        super().__init__()
        w = widths
        self.groups, self.lrn, self.samemap = groups, lrn, samemap
        self.lrn1_before_relu = lrn1_before_relu
        self.conv1 = nn.Conv2d(3, w[0], 11, stride=4)
        self.conv2 = nn.Conv2d(w[0], w[1], 5, padding=2, groups=groups)
        self.conv3 = nn.Conv2d(w[1], w[2], 3, padding=1)
        self.conv4 = nn.Conv2d(w[2], w[3], 3, padding=1, groups=groups)
        self.conv5 = nn.Conv2d(w[3], w[4], 3, padding=1, groups=groups)
        self.conv6 = nn.Conv2d(w[4], conv6_width, 3, padding=1) if conv6_width else None
        self.pool = nn.MaxPool2d(pool_kernel, pool_stride)
        self.act = nn.ReLU() if activation == "relu" else nn.Tanh()
        self.fc6 = nn.Linear((conv6_width or w[4]) * 6 * 6, fc_width)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.fc8 = nn.Linear(fc_width, num_classes)
        self.drop = nn.Dropout(dropout)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """Local response normalization within each group's maps."""
        if self.lrn is None:
            return x
        return torch.cat([F.local_response_norm(h, **self.lrn) for h in x.chunk(self.groups, dim=1)], dim=1)

    def same_map_norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.samemap is None:
            return x
        size = self.samemap["size"]
        mean_sq = F.avg_pool2d(x * x, size, stride=1, padding=size // 2, count_include_pad=True)
        return x / (1.0 + self.samemap["scale"] * mean_sq).pow(self.samemap["power"])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 4096-d last hidden layer (fc7 after ReLU)."""
        # the 2012 code's 224 → 55
        pad = [(1 + math.ceil((s - 11) / 4) - 1) * 4 + 11 - s for s in x.shape[-2:]]
        x = self.conv1(F.pad(x, (0, pad[1], 0, pad[0])))
        x = self.act(self.norm(x)) if self.lrn1_before_relu else self.norm(self.act(x))
        x = self.pool(x)
        x = self.pool(self.same_map_norm(self.norm(self.act(self.conv2(x)))))
        x = self.act(self.conv5(self.act(self.conv4(self.act(self.conv3(x))))))
        x = self.pool(x)
        if self.conv6 is not None:
            x = self.act(self.conv6(x))
        x = self.drop(self.act(self.fc6(x.flatten(1))))
        return self.act(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.drop(self.features(x)))
