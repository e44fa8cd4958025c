"""The paper's figures from a trained run.

- `conv1_kernels.png` — Figure 3: the 96 conv1 kernels (11×11×3), tower 0's 48
  on top and tower 1's 48 below, each scaled to its own range, enlarged.
- `figure4.png` — Figure 4: left, validation images with the five most probable
  labels and their probabilities; right, validation images and the six
  training images nearest in the 4096-d last-hidden-layer space (Euclidean,
  scikit-learn's NearestNeighbors, §6.1).
- `figure1_relu_tanh.png` — Figure 1: training error per epoch, ReLU solid,
  tanh dashed, with the epochs-to-25% ratio.
- `training_curves.png` — train and validation top-1 error per epoch of every run.

    python -m reproduce.figures --results results/synthetic --cache cache/synthetic --run runs/synthetic/1cnn
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from alexnet.data.cache import Cache  # noqa: E402
from alexnet.data.loader import Loader  # noqa: E402
from alexnet.engine import load_model, predict  # noqa: E402

SCALE = 6  # each 11×11 kernel drawn as 66×66 pixels


def kernel_grid(weights: torch.Tensor, cols: int = 16, gap: int = 1) -> np.ndarray:
    """K×3×11×11 → an RGB mosaic, each kernel scaled to its own [min, max]."""
    w = weights.detach().float().cpu().numpy()
    k, _, h, wd = w.shape
    rows = -(-k // cols)
    out = np.ones((rows * (h * SCALE + gap) + gap, cols * (wd * SCALE + gap) + gap, 3))
    for i in range(k):
        ker = w[i].transpose(1, 2, 0)
        ker = (ker - ker.min()) / max(ker.max() - ker.min(), 1e-12)
        ker = np.kron(ker, np.ones((SCALE, SCALE, 1)))
        r, c = divmod(i, cols)
        y, x = gap + r * (h * SCALE + gap), gap + c * (wd * SCALE + gap)
        out[y:y + h * SCALE, x:x + wd * SCALE] = ker
    return out


def conv1_kernels(model, path: Path, title: str) -> None:
    towers = model.towers
    fig, axes = plt.subplots(len(towers), 1, figsize=(12, 2.6 * len(towers) + 0.6))
    axes = np.atleast_1d(axes)
    for i, (ax, tower) in enumerate(zip(axes, towers)):
        w = tower.conv1.weight
        ax.imshow(kernel_grid(w), interpolation="nearest")
        ax.set_title(f"tower {i} (GPU {i + 1} in the paper): {w.shape[0]} kernels 11×11×3", fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _image(cache, split: str, i: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(cache.read(split, i))).convert("RGB"))


def figure4(model, cache, train_feats: np.ndarray, val_feats: np.ndarray, path: Path, title: str,
            n_left: int = 8, n_right: int = 5, k: int = 6) -> None:
    from sklearn.neighbors import NearestNeighbors

    names = [c["words"] for c in cache.classes]
    val_labels = cache.labels("val")
    loader = Loader(cache, "val", model.config, train=False, views="center", batch_size=50, workers=0,
                    device=model.devices[0])
    probs, _ = predict(model, loader)
    perm = np.random.default_rng(0).permutation(len(val_labels))
    left = perm[:n_left]  # small validation sets: fewer images, and the right side may reuse them
    right = (perm[len(left):] if len(perm) > len(left) else perm)[:n_right]
    k = min(k, len(train_feats))
    nn_index = NearestNeighbors(n_neighbors=k).fit(train_feats)
    _, nbrs = nn_index.kneighbors(val_feats[right])

    fig = plt.figure(figsize=(18, 9))
    sub = fig.subfigures(1, 2, width_ratios=[1, 1.25])
    axl = sub[0].subplots(-(-len(left) // 2), 4, gridspec_kw={"width_ratios": [1, 1.3, 1, 1.3]}, squeeze=False)
    for ax in axl.flat[2 * len(left):]:
        ax.axis("off")
    for j, i in enumerate(left):
        r, c = divmod(j, 2)
        ax_img, ax_bar = axl[r, 2 * c], axl[r, 2 * c + 1]
        ax_img.imshow(_image(cache, "val", i))
        ax_img.set_title(names[val_labels[i]], fontsize=8)
        ax_img.axis("off")
        p, top = probs[i].topk(min(5, probs.shape[1]))
        colors = ["tab:red" if t == val_labels[i] else "tab:blue" for t in top.tolist()]
        ys = list(range(len(top)))[::-1]
        ax_bar.barh(ys, p.numpy(), color=colors, alpha=0.45)
        for yy, t, pp in zip(ys, top.tolist(), p.tolist()):
            ax_bar.text(0.02, yy, f"{names[t]}  {pp:.2f}", va="center", fontsize=7)
        ax_bar.set_yticks([])
        ax_bar.set_xlim(0, 1)
        ax_bar.tick_params(axis="x", labelsize=6)
    sub[0].suptitle("five most probable labels (red: the correct one)", fontsize=10, y=0.96)
    axr = sub[1].subplots(len(right), k + 1, squeeze=False)
    for r, i in enumerate(right):
        axr[r, 0].imshow(_image(cache, "val", i))
        axr[r, 0].set_title("query", fontsize=8)
        for c, t in enumerate(nbrs[r]):
            axr[r, c + 1].imshow(_image(cache, "train", int(t)))
        for ax in axr[r]:
            ax.axis("off")
    sub[1].suptitle(f"query (left) and the six nearest training images in the {train_feats.shape[1]}-d "
                    "last hidden layer", fontsize=10, y=0.96)
    fig.suptitle(title, fontsize=11, y=0.995)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def figure1(fig1: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for act, style in (("relu", "-"), ("tanh", "--")):
        c = fig1[act]["curve"]
        ax.plot(range(1, len(c) + 1), c, style, color="k", label=f"{act} (lr {fig1[act]['lr']})")
    ax.axhline(0.25, color="gray", lw=0.8)
    ratio = fig1["ratio_tanh_over_relu"]
    ax.set_title(f"Figure 1 stand-in on {fig1['data']}\nepochs to 25%: ReLU {fig1['relu']['epochs_to_25']}, "
                 f"tanh {fig1['tanh']['epochs_to_25']}" + (f", ratio {ratio:.2f}" if ratio else "")
                 + " (paper: 6×)", fontsize=9)
    ax.set_xlabel("epochs")
    ax.set_ylabel("training error rate")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curves(logs: dict[str, list[dict]], path: Path) -> None:
    logs = {k: v for k, v in logs.items() if v}
    if not logs:
        return
    cols = min(4, len(logs))
    rows = -(-len(logs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, log) in zip(axes.flat, logs.items()):
        ep = [h["epoch"] for h in log]
        ax.plot(ep, [h["train_top1"] for h in log], "o-", label="train top-1")
        ax.plot(ep, [h["val_top1"] for h in log], "s-", label="val top-1")
        ax.plot(ep, [h["val_top5"] for h in log], "^--", label="val top-5")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(logs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def make_figures(results, cache: Cache, dataset: str = "", run=None, features=None) -> Path:
    """Every figure the results folder has the inputs for, into <results>/figures."""
    out = Path(results) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    if run:
        model, ck, path = load_model(run, "cpu")
        conv1_kernels(model, out / "conv1_kernels.png",
                      f"Figure 3: conv1 kernels of {path.parent.name} on {dataset} (epoch {ck['epoch']})")
        if features:
            tr, va = (np.load(Path(features) / f"{s}.npz") for s in ("train", "val"))
            figure4(model, cache, tr["features"], va["features"], out / "figure4.png",
                    f"Figure 4: {path.parent.name} on {dataset}")
    fig1 = Path(results) / "figure1.json"
    if fig1.exists():
        figure1(json.loads(fig1.read_text()), out / "figure1_relu_tanh.png")
    logs = {p.stem: [json.loads(x) for x in p.read_text().splitlines()]
            for p in sorted((Path(results) / "logs").glob("*.jsonl"))}
    training_curves(logs, out / "training_curves.png")
    print(f"figures → {out}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.figures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="results/<dataset>: logs/, figure1.json; figures/ is written")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--run", help="the 1cnn run directory (for Figures 3 and 4)")
    ap.add_argument("--features", help="folder with train.npz and val.npz from `alexnet.evaluate --features`")
    ap.add_argument("--dataset", default="", help="dataset name for the titles")
    args = ap.parse_args(argv)
    try:
        cache = Cache(args.cache)
    except ValueError as e:
        ap.error(str(e))
    make_figures(args.results, cache, args.dataset, args.run, args.features)
    return 0


if __name__ == "__main__":
    sys.exit(main())
