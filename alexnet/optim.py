"""The update rule of §5, which is not `torch.optim.SGD`'s.

§5: "The update rule for weight w was

    v_{i+1} := 0.9 · v_i − 0.0005 · ε · w_i − ε · ⟨∂L/∂w |_{w_i}⟩_{D_i}
    w_{i+1} := w_i + v_{i+1}"

The learning rate ε sits *inside* the velocity. PyTorch's SGD keeps
v ← μ·v + (g + λ·w) and steps w ← w − ε·v, with ε outside: the two agree while
ε is constant and differ after every change of ε (PyTorch's momentum then
carries the old gradients at the new rate). `PaperSGD` is the paper's rule.

Parameter groups (`param_groups`): every group has its own ε multiplier and
weight decay, so the `cuda-convnet` profile can give biases ε_B = 0.02 (twice
the initial 0.01), kept while the weights' ε is divided, and no decay
(layer-params-145: epsB 0.02, wc on weights only), and the schedule can cut
conv1's ε alone (epochs 67 and 72 of the recorded run).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import AlexNetConfig


class PaperSGD(torch.optim.Optimizer):
    """v ← μ·v − λ·ε·w − ε·g ;  w ← w + v   (§5), per parameter group."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"PaperSGD: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            # The same four element-wise operations per tensor, issued as one
            # multi-tensor (foreach) call per device: fewer kernel launches, the
            # same floats as a per-tensor loop (tested).
            by_device: dict[torch.device, list] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if "velocity" not in self.state[p]:
                    self.state[p]["velocity"] = torch.zeros_like(p)
                by_device.setdefault(p.device, []).append(p)
            for ps in by_device.values():
                vs, gs = [self.state[p]["velocity"] for p in ps], [p.grad for p in ps]
                torch._foreach_mul_(vs, mu)
                if wd:
                    torch._foreach_add_(vs, ps, alpha=-wd * lr)
                torch._foreach_add_(vs, gs, alpha=-lr)
                torch._foreach_add_(ps, vs)
        return loss


def param_groups(model: nn.Module, cfg: AlexNetConfig) -> list[dict]:
    """Groups named conv1.weight, conv1.bias, weight, bias (conv1 apart for the
    recorded run's conv1 cut; fc8.weight apart too when fine-tuning, whose fresh
    fc8 learns faster). Each carries `lr_mult` (bias: cfg.bias_lr_mult) and its
    weight decay; the schedule sets `lr` = ε × lr_mult × its factor."""
    buckets: dict[str, list] = {"conv1.weight": [], "conv1.bias": [], "weight": [], "bias": []}
    if cfg.lr_schedule == "finetune":
        buckets["fc8.weight"] = []
    for name, p in model.named_parameters():
        kind = "bias" if name.endswith("bias") else "weight"
        layer = name.split(".")[-2]
        group = f"{layer}.{kind}"
        buckets[group if group in buckets else kind].append(p)
    groups = []
    for name, params in buckets.items():
        bias = name.endswith("bias")
        groups.append({
            "name": name, "params": params,
            "lr_mult": cfg.bias_lr_mult if bias else 1.0,
            "weight_decay": cfg.weight_decay if (not bias or cfg.bias_weight_decay) else 0.0,
            "lr": cfg.lr * (cfg.bias_lr_mult if bias else 1.0),
        })
    return groups
