"""The two ways to run the net: faithful (the default) and fast (`--fast`).

Faithful: float32 arithmetic, TF32 off, so a run differs from any other
float32 implementation of the paper only by rounding. Its speed-ups change
no formula and are tested against the plain code: the LRN's hand-written
gradient (`layers._LRNFunction`), the optimizer's multi-tensor update
(`optim.PaperSGD`), the CPU loader's slice-first augmentation, cuDNN
autotuning (`cudnn.benchmark`, which picks among exact algorithms; on a GPU
it makes runs reproducible to float32 rounding rather than bit for bit).

Fast: bf16 autocast, channels-last memory layout, TF32 for what stays in
float32, and `torch.compile` (unless compile=False). Not bit-faithful: bf16
keeps 8 bits of mantissa. Every log line, checkpoint, config.json and
evaluation written by such a run carries `mode` = FAST_LABEL.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

FAITHFUL_LABEL = "faithful (float32, TF32 off)"
FAST_LABEL = "fast (bf16 autocast, channels-last{}; NOT bit-faithful)"


@dataclass(frozen=True)
class Speed:
    fast: bool = False
    compile: bool = True  # fast mode only

    @property
    def label(self) -> str:
        if not self.fast:
            return FAITHFUL_LABEL
        return FAST_LABEL.format(", torch.compile" if self.compile else "")

    def setup(self, devices) -> None:
        """Process-wide backend switches for the devices in use."""
        if any(torch.device(d).type == "cuda" for d in devices):
            torch.backends.cuda.matmul.allow_tf32 = self.fast
            torch.backends.cudnn.allow_tf32 = self.fast
            torch.backends.cudnn.benchmark = True

    def layout(self, model: nn.Module) -> nn.Module:
        """Fast mode: the model's parameters in channels-last layout (faithful: as they are). Before
        DDP wraps the model: its gradient buckets keep the strides they were built with."""
        return model.to(memory_format=torch.channels_last) if self.fast else model

    def forward_fn(self, model: nn.Module):
        """The callable that runs the model: the module itself (faithful) or, in
        fast mode, the module in channels-last layout, compiled unless compile=False."""
        if not self.fast:
            return model
        self.layout(model)
        return torch.compile(model) if self.compile else model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast(self, device: torch.device):
        if not self.fast:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
