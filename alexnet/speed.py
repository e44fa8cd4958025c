"""The two ways to run the net: faithful (the default) and fast (`--fast`).

Faithful: float32 arithmetic, TF32 off, so a run differs from any other
float32 implementation of the paper only by rounding. Its speed-ups change
no formula and are tested against the plain code: the LRN's hand-written
gradient (`layers._LRNFunction`), the optimizer's multi-tensor update
(`optim.PaperSGD`), the CPU loader's slice-first augmentation. cuDNN runs
deterministic, without autotuning (`cudnn.deterministic`, not `benchmark`):
its heuristics pick the same algorithms every time on the same GPU, cuDNN
and torch, so a run and its resume repeat bit for bit there. Those algorithms
may be FFT or Winograd ones, in float32: they round differently from a direct
convolution, and another GPU model or cuDNN version may pick others
(`python -m tools.bench` measures what determinism costs).

Fast: bf16 autocast, channels-last memory layout, TF32 for what stays in
float32, cuDNN autotuning, and `torch.compile` (unless compile=False). Not bit-faithful: bf16
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

    def setup(self) -> dict:
        """The process-wide backend switches of this mode, the one place that sets them: for training
        (engine.Trainer, tools.bench), evaluation (engine.load_model), Figure 1 and the compute plan.
        Returns them as `backend()` reads them, for the results to record."""
        torch.backends.cuda.matmul.allow_tf32 = self.fast
        torch.backends.cudnn.allow_tf32 = self.fast
        torch.backends.cudnn.benchmark = self.fast
        torch.backends.cudnn.deterministic = not self.fast
        return backend()

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


def backend() -> dict:
    """The backend switches in force now (what `Speed.setup` sets), as results record them."""
    return {"matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic}
