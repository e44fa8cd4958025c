"""Evaluation pieces shared by training and `python -m alexnet.evaluate`:
softmax over the centre patch or averaged over §4.1's ten patches, top-1/top-5
error, ensembles ("5 CNNs": the average of several nets' softmax), and the
4096-d features of §6.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def topk_wrong_counts(logits_or_probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> torch.Tensor:
    """Number of samples whose label is not among the top k, for each k, as a
    tensor on the input's device (no wait for the GPU)."""
    k_max = min(max(ks), logits_or_probs.shape[1])
    top = logits_or_probs.topk(k_max, dim=1).indices
    hit = top == labels.to(top.device)[:, None]
    return torch.stack([(~hit[:, :min(k, k_max)].any(dim=1)).sum() for k in ks])


def topk_wrong(logits_or_probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """`topk_wrong_counts` as {k: count}."""
    return dict(zip(ks, topk_wrong_counts(logits_or_probs, labels, ks).tolist()))


@torch.no_grad()
def predict(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (N×C, CPU) and labels for a loader's split; a
    loader with views="ten" yields N×10×3×S×S and the ten softmaxes are averaged (§4.1)."""
    was = model.training
    model.eval()
    probs, labels = [], []
    try:
        for x, y in loader:
            if x.dim() == 5:
                n, v = x.shape[:2]
                p = F.softmax(model(x.flatten(0, 1)), dim=1).view(n, v, -1).mean(dim=1)
            else:
                p = F.softmax(model(x), dim=1)
            probs.append(p.float().cpu())
            labels.append(y.cpu())
    finally:
        model.train(was)
    return torch.cat(probs), torch.cat(labels)


def errors(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    wrong = topk_wrong(probs, labels)
    n = len(labels)
    return {"top1": wrong[1] / n, "top5": wrong[5] / n, "n": n}


def ensemble(prob_list: list[torch.Tensor]) -> torch.Tensor:
    """§6 "averaging the predictions of five similar CNNs": the mean softmax."""
    return torch.stack(prob_list).mean(dim=0)


@torch.no_grad()
def features(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden layer (4096-d, fc7 after ReLU) for every image, centre patch."""
    was = model.training
    model.eval()
    out, labels = [], []
    try:
        for x, y in loader:
            out.append(model.features(x).float().cpu())
            labels.append(y.cpu())
    finally:
        model.train(was)
    return torch.cat(out), torch.cat(labels)
