"""Per-step diagnostics: what each layer did in one SGD step.

    probe = LayerProbe(net)                   # forward hooks on every weight layer and dropout
    stats = train_step(net, opt, x, y)
    row = probe.row()                         # {"act_max": {...}, "grad_norm": {...}, "logit_norm": ...}
    probe.close()

`python -m alexnet.train --log-steps` writes one such row per step to
<run_dir>/steps.jsonl, with the step's loss and ε; `python -m tools.replay`
uses the same probe to replay a step in float64 beside the run's own dtype.

Two numbers are read off fc8's input h (fc7's output after dropout) at the first
step (`reproduce/PAPER.md`, "Stability"). §5's biases of 1 in fc6 and fc7 make h
nearly the same vector for every image at the start (‖h‖² ≈ 3,000 with dropout,
7,500 without), so the first steps can only learn class frequencies:

- the kick, ε·‖h‖²·√(p(1−p)/B) with p = 1/C: the step moves class c's logit
  by ε·‖h‖²·(f_c − p̄_c), where f_c, class c's share of a batch of B, varies
  from batch to batch by √(p(1−p)/B). Momentum adds up the kicks. This is the
  one that predicts: in the study every cell with a kick of 1 nat or more
  diverged in two or three runs of three, none at 0.8 or less in its first 40
  steps (`results/stability/`);
- the curvature number, ε·‖h‖²/C: fc8's curvature along its weights is
  ‖h‖²/C while the softmax is uniform, and heavy-ball SGD with momentum μ is
  stable on a quadratic only while ε·λ < 2(1 + μ) = 3.8. Measured, it does not
  predict: runs diverged at 0.71 and 1.9, far under 3.8. It is kept as the
  study's record of that refuted hypothesis.

`fc8_input_sq` records ‖h‖² (mean over the batch) on every step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from .layers import PaperDropout
from .model import AlexNet


def kick(lr: float, fc8_input_sq: float, classes: int, batch: int) -> float:
    """ε·‖h‖²·√(p(1−p)/B), p = 1/C: how far one step moves a logit by the batch's class mix alone (nats)."""
    p = 1.0 / classes
    return lr * fc8_input_sq * math.sqrt(p * (1 - p) / batch)


def curvature_number(lr: float, fc8_input_sq: float, classes: int) -> float:
    """ε·‖h‖²/C: ε times fc8's curvature while the softmax is uniform. Heavy-ball SGD on a quadratic is
    unstable above momentum_limit; the study refuted it as the predictor of divergence (see above)."""
    return lr * fc8_input_sq / classes


def momentum_limit(momentum: float) -> float:
    """The largest ε·λ for which heavy-ball SGD stays stable on a quadratic: 2(1 + μ)."""
    return 2.0 * (1.0 + momentum)


def weight_layers(net: AlexNet) -> dict[str, nn.Module]:
    """'t0.conv1' … 't1.fc7', 'fc8': every layer with weights, by a short name."""
    layers = {f"t{i}.{n}": m for i, t in enumerate(net.towers) for n, m in t.weight_layers().items()}
    layers["fc8"] = net.fc8
    return layers


class LayerProbe:
    """Forward hooks on an AlexNet's weight layers (largest |output| of each,
    fc8's input norm, the logits' norm) and on its dropout layers (their masks,
    which `replay_masks` can impose on a twin net). Values are kept as tensors
    on their device until `row()` reads them, so the probe adds no waits of its own."""

    def __init__(self, net: AlexNet, record_masks: bool = False):
        self.layers = weight_layers(net)
        self.act_max: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.replay: dict[str, torch.Tensor] | None = None
        self.fc8_input_sq = self.logit_norm = None
        self.handles = [m.register_forward_hook(self._on_layer(name)) for name, m in self.layers.items()]
        dropouts = {f"t{i}.{n}": m for i, t in enumerate(net.towers) for n, m in t.named_children()
                    if isinstance(m, PaperDropout) and m.p > 0}
        self.handles += [m.register_forward_hook(self._on_dropout(name, record_masks))
                         for name, m in dropouts.items()]

    def _on_layer(self, name: str):
        def hook(module, inputs, out):
            out = out.detach()
            self.act_max[name] = out.abs().amax()
            if name == "fc8":
                self.fc8_input_sq = inputs[0].detach().double().square().sum(1).mean()
                self.logit_norm = out.double().norm(dim=1).mean()
        return hook

    def _on_dropout(self, name: str, record: bool):
        def hook(module, inputs, out):
            if not module.training:
                return None
            if self.replay is not None:  # a twin's masks: the same units dropped
                return inputs[0] * self.replay[name].to(inputs[0])
            # where the input was 0 (ReLU) the mask cannot be read back: kept, which changes nothing
            if record:
                x = inputs[0].detach()
                self.masks[name] = ((out.detach() != 0) | (x == 0)).to(torch.uint8)
            return None
        return hook

    def row(self) -> dict:
        """The last step's numbers as plain floats: largest |output| and gradient norm per layer."""
        grads = {name: torch.linalg.vector_norm(torch.stack([
            torch.linalg.vector_norm(p.grad.double()).to(self.fc8_input_sq.device)
            for p in m.parameters() if p.grad is not None])) for name, m in self.layers.items()}
        return {"logit_norm": float(self.logit_norm), "fc8_input_sq": float(self.fc8_input_sq),
                "act_max": {k: float(v) for k, v in self.act_max.items()},
                "grad_norm": {k: float(v) for k, v in grads.items()}}

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class StepLog:
    """<run_dir>/steps.jsonl: one line per step. Reopened on resume, it drops the
    lines past the checkpoint's step, which the resumed run writes again."""

    NAME = "steps.jsonl"

    def __init__(self, run_dir: Path, resumed_step: int = 0):
        self.path = Path(run_dir) / self.NAME
        kept = [ln for ln in read_steps(self.path) if ln["step"] <= resumed_step] if resumed_step else []
        self.f = open(self.path, "w")
        for ln in kept:
            self.write(ln)

    def write(self, row: dict) -> None:
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def read_steps(path: Path) -> list[dict]:
    """The rows of a JSON-lines file: a steps.jsonl, or a run's log.jsonl (none if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
