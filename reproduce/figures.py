"""The paper's figures from a trained run.

- `conv1_kernels.png` — Figure 3: the 96 conv1 kernels (11×11×3), tower 0's 48
  on top and tower 1's 48 below, each scaled to its own range, enlarged; below,
  what training changed (W − W₀) and all 96 on one common scale. Beside it
  `conv1_kernels.npy` (the kernels) and `conv1_kernels.json` (per tower, final
  and initial: low-frequency share, orientedness, colour share).
- `figure4.png` — Figure 4: left, validation images with the five most probable
  labels and their probabilities; right, validation images and the six
  training images nearest in the 4096-d last-hidden-layer space (Euclidean,
  §6.1; `torch.cdist` + `topk` over the memory-mapped training features in
  chunks, on the GPU where there is one: memory does not grow with N).
- `figure1_relu_tanh.png` — Figure 1: each seed's training error against steps,
  ReLU solid, tanh dashed, with tanh's window and the ratio's verdict.
- `training_curves.png` — train and validation top-1 error per epoch of every run.

    python -m reproduce.figures --results results/synthetic --cache cache/synthetic-g4 \
        --run runs/synthetic-g4/e14-b32/1cnn
"""

from __future__ import annotations

if not __package__:  # `python reproduce/figures.py`: run as the module it is (its imports are the package's)
    import pathlib
    import runpy
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    sys.exit(runpy.run_module("reproduce.figures", run_name="__main__"))

import argparse
import io
import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402
from PIL import Image  # noqa: E402

from alexnet.atomic import atomic_write, write_text  # noqa: E402
from alexnet.data.cache import Cache  # noqa: E402
from alexnet.engine import CONV1_INIT, load_model  # noqa: E402
from alexnet.predict import classify  # noqa: E402

from .experiments import BASELINE, MAIN, PAIRED, PAIRED_SEEDS, SEED_REPLICATES, seed_run  # noqa: E402

SCALE = 6  # each 11×11 kernel drawn as 66×66 pixels


class Glyphs:
    """Which of some texts the installed fonts can draw. The families are matplotlib's default,
    then installed fonts that hold the characters it lacks (a CJK font, say): matplotlib takes
    each glyph from the first family that has it. A text no installed font covers is drawn
    another way (`or_else`), so no figure shows an empty box."""

    def __init__(self, texts: list[str]):
        default = font_manager.findfont(font_manager.FontProperties())
        self.have = set(FT2Font(default).get_charmap())
        self.families = [font_manager.FontProperties(fname=default).get_name()]
        missing = {ord(ch) for t in texts for ch in t} - self.have
        for font in font_manager.fontManager.ttflist:
            if not missing:
                break
            if font.name in self.families or font.name.startswith("Last Resort"):  # Last Resort: boxes
                continue
            try:
                cmap = set(FT2Font(font.fname).get_charmap())
            except (OSError, RuntimeError):
                continue
            if cmap & missing:
                self.families.append(font.name)
                self.have |= cmap
                missing -= cmap

    def can_draw(self, text: str) -> bool:
        return all(ord(ch) in self.have for ch in text)

    def or_else(self, text: str, other: str) -> str:
        return text if self.can_draw(text) else other

    def context(self):
        return plt.rc_context({"font.family": self.families})


def kernel_grid(weights, cols: int = 16, gap: int = 1, common: float | None = None) -> np.ndarray:
    """K×3×11×11 → an RGB mosaic. Each kernel is stretched to its own [min, max]
    (the paper's display), or, with `common` = c, all are drawn on one scale:
    0.5 + w / (2c), so grey is zero (the 2012 code's viewer)."""
    w = weights.detach().float().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    k, _, h, wd = w.shape
    rows = -(-k // cols)
    out = np.ones((rows * (h * SCALE + gap) + gap, cols * (wd * SCALE + gap) + gap, 3))
    for i in range(k):
        ker = w[i].transpose(1, 2, 0)
        if common is None:
            ker = (ker - ker.min()) / max(ker.max() - ker.min(), 1e-12)
        else:
            ker = np.clip(0.5 + ker / (2 * common), 0, 1)
        ker = np.kron(ker, np.ones((SCALE, SCALE, 1)))
        r, c = divmod(i, cols)
        y, x = gap + r * (h * SCALE + gap), gap + c * (wd * SCALE + gap)
        out[y:y + h * SCALE, x:x + wd * SCALE] = ker
    return out


# ---------------------------------------------------------------- Figure 3, measured

STAT_DEFINITIONS = {
    "low_frequency": "mean share of a kernel's power (each colour channel's spatial mean removed, summed "
                     "over RGB) at 2-D DFT frequencies of radius 1 to 2 on the 11x11 grid; white noise ~0.10",
    "orientedness": "|sum P(f) exp(2i theta_f)| / sum P(f) over the non-DC frequencies of the "
                    "grey (RGB-mean) kernel's power spectrum; noise and blobs ~0.1-0.2, a "
                    "clean edge or grating > 0.8",
    "colour_share": "power of the kernel minus its grey mean over the kernel's total power; white "
                    "noise ~0.67, a grey kernel 0",
}


def kernel_statistics(w: np.ndarray) -> dict[str, np.ndarray]:
    """Per-kernel statistics of K×3×11×11 kernels (STAT_DEFINITIONS)."""
    w = np.asarray(w, dtype=np.float64)
    n = w.shape[-1]
    f = np.fft.fftfreq(n) * n
    fy, fx = np.meshgrid(f, f, indexing="ij")
    radius, theta = np.hypot(fy, fx), np.arctan2(fy, fx)
    centred = w - w.mean(axis=(2, 3), keepdims=True)
    power = (np.abs(np.fft.fft2(centred)) ** 2).sum(axis=1)  # K×n×n, summed over RGB
    band = (radius >= 1) & (radius <= 2)
    low = power[:, band].sum(1) / np.maximum(power.sum((1, 2)), 1e-30)
    grey_power = np.abs(np.fft.fft2(w.mean(axis=1))) ** 2
    nz = radius > 0
    p = grey_power[:, nz]
    orient = np.abs((p * np.exp(2j * theta[nz])).sum(1)) / np.maximum(p.sum(1), 1e-30)
    chroma = ((w - w.mean(axis=1, keepdims=True)) ** 2).sum((1, 2, 3))
    colour = chroma / np.maximum((w ** 2).sum((1, 2, 3)), 1e-30)
    return {"low_frequency": low, "orientedness": orient, "colour_share": colour}


def kernel_summary(final: np.ndarray, init: np.ndarray | None, towers: int) -> dict:
    """The statistics averaged per tower and over all kernels, for the final weights W,
    the initial W₀, and what training changed, W − W₀."""
    out = {"definitions": STAT_DEFINITIONS, "towers": {}, "all": {}}
    change = None if init is None else final - init
    for label, w in (("final", final), ("init", init), ("change", change)):
        if w is None:
            continue
        stats = kernel_statistics(w)
        per = len(w) // towers
        for t in range(towers):
            out["towers"].setdefault(str(t), {})[label] = {
                k: round(float(v[t * per:(t + 1) * per].mean()), 4) for k, v in stats.items()}
        out["all"][label] = {k: round(float(v.mean()), 4) for k, v in stats.items()}
    return out


PAPER_FIGURE3 = ("§6.1: the kernels on GPU 1 (top) are largely colour-agnostic, those on GPU 2 (bottom) "
                 "largely colour-specific")


def conv1_kernels(final: np.ndarray, init: np.ndarray | None, towers: int, out_dir: Path, title: str,
                  stability: str | None = None) -> dict:
    """Figure 3 (`conv1_kernels.png`) in the paper's layout, tower 0's kernels on top,
    with W − W₀ and a common-scale panel; and `conv1_kernels.npy` (K×3×11×11 float32,
    tower 0 first) and `conv1_kernels.json` (kernel_summary, and the run's stability setting).
    Returns the summary."""
    out_dir = Path(out_dir)
    write_npy(out_dir / "conv1_kernels.npy", final.astype(np.float32))
    summary = kernel_summary(final, init, towers)
    summary.update({"kernels": int(len(final)), "towers_top_to_bottom": list(range(towers)), "title": title,
                    "paper": PAPER_FIGURE3, "stability": stability})
    write_text(out_dir / "conv1_kernels.json", json.dumps(summary, indent=1))

    per = len(final) // towers
    panels = [("learned kernels W, each stretched to its own range (the paper's display)", final, None)]
    if init is not None:
        panels.append(("what training changed, W − W₀, each stretched to its own range", final - init, None))
    common = float(np.abs(final).max())
    panels.append((f"W on one common scale (grey = 0, full colour = ±{common:.3g}), as the 2012 code's "
                   "viewer", final, common))
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 5.4 * len(panels) + 1.2), squeeze=False)
    for ax, (label, w, scale) in zip(axes[:, 0], panels):
        grids = [kernel_grid(w[t * per:(t + 1) * per], common=scale) for t in range(towers)]
        sep = np.ones((SCALE * 2, grids[0].shape[1], 3))
        ax.imshow(np.concatenate([g for grid in grids for g in (grid, sep)][:-1]), interpolation="nearest")
        ax.set_title(label + ("; tower 0 (GPU 1) on top, tower 1 (GPU 2) below" if towers == 2 else ""),
                     fontsize=10)
        ax.axis("off")
    colour = ", ".join(f"tower {t} {summary['towers'][str(t)]['final']['colour_share']:.2f}"
                       for t in range(towers))
    orient = summary["all"]["final"]["orientedness"]
    caption = (f"Paper {PAPER_FIGURE3}. Ours: colour share {colour}; mean orientedness {orient:.2f}"
               + (f" (initial {summary['all']['init']['orientedness']:.2f}, of W − W₀ "
                  f"{summary['all']['change']['orientedness']:.2f})" if init is not None else "")
               + ". Definitions: conv1_kernels.json.")
    fig.suptitle(title, fontsize=11)
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=9, wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 0.98))
    fig.savefig(out_dir / "conv1_kernels.png", dpi=80)
    plt.close(fig)
    return summary


def write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array))


def _image(cache, split: str, i: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(cache.read(split, i))).convert("RGB"))


def _rows(rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    """rows[start:stop] as float32. From a memory-mapped .npy by plain reads: pages read through
    the mapping would stay in this process's resident memory, up to the whole file."""
    if isinstance(rows, np.memmap) and rows.filename and rows.flags.c_contiguous:
        width, stop = int(np.prod(rows.shape[1:])), min(stop, len(rows))
        part = np.fromfile(rows.filename, rows.dtype, count=(stop - start) * width,
                           offset=rows.offset + start * width * rows.itemsize)
        return part.reshape(stop - start, *rows.shape[1:]).astype(np.float32, copy=False)
    return np.array(rows[start:stop], dtype=np.float32)


def nearest(queries: torch.Tensor, rows: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices of the k rows nearest each query (Euclidean), streaming `rows` (an array or a
    memory-mapped .npy) in chunks on the queries' device and keeping only the running top k:
    memory is one chunk (1024 × 4096 floats: 16 MiB), whatever the number of rows."""
    best_d = torch.empty(len(queries), 0, device=queries.device)
    best_i = torch.empty(len(queries), 0, dtype=torch.long, device=queries.device)
    for start in range(0, len(rows), chunk):
        part = torch.from_numpy(_rows(rows, start, start + chunk)).to(queries.device)
        d = torch.cat([best_d, torch.cdist(queries, part)], dim=1)
        ids = torch.arange(start, start + len(part), device=queries.device)
        i = torch.cat([best_i, ids.expand(len(queries), -1)], dim=1)
        best_d, at = d.topk(min(k, d.shape[1]), dim=1, largest=False)
        best_i = i.gather(1, at)
    return best_i.cpu().numpy()


def figure4(model, cache, train_feats: np.ndarray, val_feats: np.ndarray, path: Path, title: str,
            glyphs: Glyphs, n_left: int = 8, n_right: int = 5, k: int = 6) -> None:
    """The paper's Figure 4. Only the drawn images are classified, and the nearest neighbours
    stream the training features (`nearest`), so memory does not grow with the dataset. A class
    name no installed font can draw is shown as "class N"; figure4.json beside it names them."""
    words = [c["words"] for c in cache.classes]
    names = [glyphs.or_else(w, f"class {i}") for i, w in enumerate(words)]
    write_text(path.with_suffix(".json"), json.dumps(
        {"labels": words, "drawn_as_index": [i for i, w in enumerate(words) if names[i] != w],
         "fonts": glyphs.families}, ensure_ascii=False, indent=1))
    val_labels = cache.labels("val")
    perm = np.random.default_rng(0).permutation(len(val_labels))
    left = perm[:n_left]  # small validation sets: fewer images, and the right side may reuse them
    right = (perm[len(left):] if len(perm) > len(left) else perm)[:n_right]
    images = torch.stack([torch.from_numpy(_image(cache, "val", int(i)).copy()).permute(2, 0, 1)
                          for i in left])
    probs = classify(model, torch.from_numpy(cache.mean).float(), images, "center")
    queries = torch.from_numpy(np.asarray(val_feats[np.sort(right)])).to(model.devices[0]).float()
    order = np.argsort(np.argsort(right))  # val_feats rows are read in increasing order (fast on a memmap)
    nbrs = nearest(queries, train_feats, min(k, len(train_feats)))[order]
    k = nbrs.shape[1]

    fig = plt.figure(figsize=(18, 9))
    sub = fig.subfigures(1, 2, width_ratios=[1, 1.25])
    axl = sub[0].subplots(-(-len(left) // 2), 4, gridspec_kw={"width_ratios": [1, 1.3, 1, 1.3]},
                          squeeze=False)
    for ax in axl.flat[2 * len(left):]:
        ax.axis("off")
    for j, i in enumerate(left):
        r, c = divmod(j, 2)
        ax_img, ax_bar = axl[r, 2 * c], axl[r, 2 * c + 1]
        ax_img.imshow(_image(cache, "val", i))
        ax_img.set_title(names[val_labels[i]], fontsize=8)
        ax_img.axis("off")
        p, top = probs[j].topk(min(5, probs.shape[1]))
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
    fig.savefig(path, dpi=80)  # in the caller's Glyphs context: text is drawn here
    plt.close(fig)


NEIGHBOUR_IMAGES = 2000  # images per split that neighbours() compares (all up to this; evenly spaced past it)


def _spread(n: int, most: int) -> np.ndarray:
    """Up to `most` indices of range(n), evenly spaced (a class-sorted split is sampled across classes)."""
    return np.arange(n) if n <= most else np.linspace(0, n - 1, most).round().astype(int)


def neighbours(cache, train_feats: np.ndarray, val_feats: np.ndarray, path: Path, k: int = 5) -> dict:
    """§6.1 and Figure 4's claim, measured (reproduce/claims.py): for each validation image, its k nearest
    training images by Euclidean distance in the last hidden layer and in pixels (the centre 224 patch,
    0–255); the share of them in the query's class each way; and where the feature neighbours fall in
    pixel distance, as the median percentile of their distances among all the training images'
    (50: unrelated to pixels; near 0: near in pixels), beside where the query's own class sits (the
    median percentile of the training images of its class): the null of "not near in pixels". Per
    query too. Up to NEIGHBOUR_IMAGES images of each split."""
    tr, va = _spread(len(train_feats), NEIGHBOUR_IMAGES), _spread(len(val_feats), NEIGHBOUR_IMAGES)
    train_labels, val_labels = cache.labels("train")[tr], cache.labels("val")[va]
    off, s = (cache.mean.shape[-1] - 224) // 2, 224

    def pixels(split: str, rows: np.ndarray) -> torch.Tensor:
        crops = [_image(cache, split, int(i))[off:off + s, off:off + s] for i in rows]
        return torch.from_numpy(np.stack(crops).reshape(len(rows), -1)).float()

    px_train, px_val = pixels("train", tr), pixels("val", va)
    f_train = torch.from_numpy(np.asarray(train_feats[tr], dtype=np.float32))  # a memmap reads these rows
    f_val = torch.from_numpy(np.asarray(val_feats[va], dtype=np.float32))
    d_px = torch.cdist(px_val, px_train)  # queries × training images
    by_feature = torch.cdist(f_val, f_train).topk(k, largest=False).indices
    by_pixel = d_px.topk(k, largest=False).indices
    same = torch.from_numpy(train_labels)[None, :] == torch.from_numpy(val_labels)[:, None]
    agree = lambda idx: float(same.gather(1, idx).float().mean())  # noqa: E731
    # each training image's pixel distance from each query as a percentile: the share of the training
    # images nearer the query in pixels (50: unrelated to pixels; near 0: near in pixels)
    pct = 100 * (d_px.argsort(1).argsort(1).float() / d_px.shape[1])
    feature_pct = pct.gather(1, by_feature).median(1).values
    # the null of "not near in pixels": where an image of the query's class sits, whatever its features
    same_class_pct = torch.stack([row[m].median() for row, m in zip(pct, same)])
    out = {"k": k, "queries": len(va), "training_images": len(tr), "feature_agreement": agree(by_feature),
           "pixel_agreement": agree(by_pixel), "chance": float(np.mean(val_labels[:, None] == train_labels)),
           "pixel_percentile": float(feature_pct.median()),
           "same_class_percentile": float(same_class_pct.median()),
           "per_query": {  # what claims.py pairs, query by query
               "feature_agreement": same.gather(1, by_feature).float().mean(1).tolist(),
               "pixel_agreement": same.gather(1, by_pixel).float().mean(1).tolist(),
               "feature_percentile": [round(x, 2) for x in feature_pct.tolist()],
               "same_class_percentile": [round(x, 2) for x in same_class_pct.tolist()]}}
    write_text(path, json.dumps(out, indent=1))
    return out


def figure1(fig1: dict, path: Path) -> None:
    """Each measured seed's training error against steps, ReLU solid, tanh dashed, as the paper draws
    them; the 25% line and the end of tanh's window."""
    from .figure1 import TARGET_ERROR
    fig, ax = plt.subplots(figsize=(7, 5.2))
    for act, style in (("relu", "-"), ("tanh", "--")):
        f = fig1[act]
        for i, (curve, steps) in enumerate(zip(f["curves"], f["steps_to_25"])):
            x = np.arange(1, len(curve) + 1) * f["trail"]
            ax.plot(x, curve, style, color="k", lw=1, alpha=0.8,
                    label=f"{act} (lr {f['lr']}), {len(f['curves'])} seeds" if i == 0 else None)
            if steps:
                ax.plot([steps], [TARGET_ERROR], "o" if act == "relu" else "s", color="k", ms=4)
    ax.axhline(TARGET_ERROR, color="tab:red", lw=0.9)
    ax.text(0, TARGET_ERROR + 0.01, "25% training error", color="tab:red", fontsize=8)
    ax.axvline(fig1["window"], color="tab:blue", lw=0.9, ls=":")
    ax.text(fig1["window"], 0.95, f"tanh's window ({fig1['max_ratio']:.1f}× ReLU's steps)", color="tab:blue",
            fontsize=8, ha="right")
    ax.set_title(textwrap.fill(f"Figure 1 stand-in: the 2012 code's {fig1['net']}, on {fig1['data']}", 100),
                 fontsize=9)
    fig.text(0.5, 0.01, fig1["verdict"], ha="center", va="bottom", fontsize=8, wrap=True)
    ax.set_xlabel(f"steps (batches of {fig1['batch']}); error over the last {fig1['trail_images']} images")
    ax.set_ylabel("training error rate")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower left")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _lr_drops(log: list[dict]) -> list[float]:
    """Epoch boundaries (x = e + 0.5) after which the weights' ε changed."""
    lrs = [h["lr"]["weight"] for h in log]
    return [log[i]["epoch"] + 0.5 for i in range(len(lrs) - 1) if lrs[i + 1] != lrs[i]]


def setting_label(stability: str | None) -> str:
    """How a figure names the stability setting its runs trained under ("" or "paper": none)."""
    if stability is None:
        return "stability setting not recorded"
    return "§5's ε and biases" if stability in ("", "paper") else f"stability setting {stability}"


def log_setting(log: list[dict]) -> str | None:
    """The stability setting a run's log records ("paper": §5's values; None: not recorded, a log from
    before 2026-12-04)."""
    names = {h["stability"] or "paper" for h in log if h.get("stability") is not None}
    return names.pop() if len(names) == 1 else (None if not names else "mixed: " + ", ".join(sorted(names)))


def one_setting(logs: dict[str, list[dict]], stability: str | None) -> tuple[dict, str | None, dict]:
    """The logs of one stability setting: (kept, its name, {left out: its setting}). `stability`: the
    folder's ("paper" or a name); None: the logs' own, which must then be one (ValueError otherwise).
    A log that records none is kept: it cannot be told apart."""
    recorded = {name: s for name, log in logs.items() if (s := log_setting(log)) is not None}
    if stability is None:
        found = set(recorded.values())
        if len(found) > 1:
            raise ValueError(f"the logs are of {len(found)} stability settings ({', '.join(sorted(found))}): "
                             "curves of one setting only; give --stability")
        stability = found.pop() if found else None
    out = {name: s for name, s in recorded.items() if s != stability}
    return {k: v for k, v in logs.items() if k not in out}, stability, out


SEED_STYLES = (("-", "o"), ("--", "s"), (":", "^"))  # an ablation's seeds 0, 1, 2: line and marker
# tab10 with black for its grey, which the panel keeps for the baseline's replicates
ABLATION_COLOURS = tuple("k" if k == 7 else plt.get_cmap("tab10")(k) for k in range(10))


# each paired-seeds run: its ablation and its seed's place (0: the ablation's own run, 1, 2: paired-seeds')
SEED_PLACES = {seed_run(a, s).name: (a, i) for a in PAIRED for i, s in enumerate((0, *PAIRED_SEEDS))}


def _family(name: str) -> tuple[str, int]:
    """The ablation a run belongs to and its seed's place (any other run: its own, place 0)."""
    return SEED_PLACES.get(name, (name, 0))


def _ablation_styles(names: list[str]) -> dict[str, dict]:
    """Each run's line: one colour per ablation, shared by its paired seeds (ABLATION_COLOURS up to 10
    ablations; tab20's dark and light halves, each in turn, beyond), and one line style and marker per
    seed, so that an ablation's seeds read as one family and different ablations do not."""
    families = list(dict.fromkeys(_family(n)[0] for n in names))

    def style(name: str) -> dict:
        family, i = _family(name)
        k = families.index(family)
        color = (ABLATION_COLOURS[k] if len(families) <= 10
                 else plt.get_cmap("tab20")((2 * k) % 20 + k // 10 % 2))
        ls, marker = SEED_STYLES[i % len(SEED_STYLES)]
        return dict(color=color, ls=ls, marker=marker)
    return {n: style(n) for n in names}


def training_curves(logs: dict[str, list[dict]], path: Path, chance: float | None = None,
                    stability: str | None = None) -> None:
    """Top-1 error per epoch: the main run (train and validation, ε drops marked),
    the baseline's seed replicates, and the ablations against them; runs of one stability
    setting only (`stability`, or the logs' own: one_setting), named in the title."""
    logs, stability, left_out = one_setting({k: v for k, v in logs.items() if v}, stability)
    for name, other in left_out.items():
        print(f"training curves: left out {name}, trained under {setting_label(other)}, not "
              f"{setting_label(stability)}")
    if not logs:
        return
    replicates = {k: v for k, v in logs.items() if k in (BASELINE.name, *SEED_REPLICATES.runs)}
    groups = [(f"{name}: training and validation top-1 error", {name: logs[name]}, True)
              for name in logs if name not in replicates and name in MAIN.runs]
    if replicates:
        groups.append((f"the baseline's seed replicates ({BASELINE.name}, {SEED_REPLICATES.name} members): "
                       "validation", replicates, False))
    ablations = {k: logs[k] for k in sorted((k for k in logs if k not in replicates and k not in MAIN.runs),
                                             key=_family)}
    if ablations:
        groups.append(("ablations: validation top-1 (grey: the baseline's replicates)\nan ablation's seeds "
                       "0, 1, 2: solid ●, dashed ■, dotted ▲", ablations, False))
    styles = _ablation_styles(list(ablations))
    legend = 1.6 * (1 + len(ablations) // 16) if ablations else 0  # inches for the ablations' legend
    fig, axes = plt.subplots(1, len(groups), figsize=(6.2 * len(groups) + legend, 4.6), squeeze=False)
    for ax, (title, runs, with_train) in zip(axes[0], groups):
        if not with_train and runs is ablations:
            for log in replicates.values():
                ax.plot([h["epoch"] for h in log], [h["val_top1"] for h in log], "-", color="0.75", lw=1)
        for name, log in runs.items():
            ep = [h["epoch"] for h in log]
            style = dict(styles[name]) if runs is ablations else dict(ls="-", marker="o")
            if runs is ablations and chance is not None and log[-1]["val_top1"] >= chance - 0.005:
                style.update(alpha=0.45, lw=0.8)  # ended at chance: faint, under the runs that learned
            line, = ax.plot(ep, [h["val_top1"] for h in log], ms=4,
                            label=f"{name} val" if with_train else name, **style)
            if with_train:
                ax.plot(ep, [h["train_top1"] for h in log], "s--", ms=3, color=line.get_color(), alpha=0.7,
                        label=f"{name} train (running, with dropout and augmentation)")
                for i, x in enumerate(_lr_drops(log)):
                    ax.axvline(x, color="tab:red", ls=":", lw=1, label="ε ÷ 10" if i == 0 else None)
        if chance is not None:
            ax.axhline(chance, color="k", lw=0.8, ls="-.", label=f"chance ({chance:.0%})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("top-1 error")
        ax.set_ylim(0, 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if runs is ablations:  # up to 3 lines an ablation: beside the panel, in columns, long enough to
            # tell the line styles apart
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + len(runs) // 16,
                      handlelength=3.5)
        else:
            ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Training curves ({setting_label(stability)})"
                 + (f"; left out, of other settings: {', '.join(left_out)}" if left_out else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


MAIN_RUN_FIGURES = ("conv1_kernels.png", "conv1_kernels.npy", "conv1_kernels.json", "figure4.png",
                    "figure4.json", "neighbours.json")  # of 1 CNN


def make_figures(results, cache: Cache, dataset: str = "", run=None, features=None,
                 stability: str | None = None) -> Path:
    """Every figure the results folder has the inputs for, into <results>/figures. `stability`: the
    folder's setting ("paper" or a name; None: the logs'), named in the titles."""
    out = Path(results) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    glyphs = Glyphs([c["words"] for c in cache.classes] + [dataset])
    dataset = glyphs.or_else(dataset, dataset.encode("ascii", "replace").decode())  # titles: '?' for the rest
    with glyphs.context():
        _make_figures(results, cache, dataset, run, features, glyphs, stability)
    print(f"figures → {out}")
    return out


def _make_figures(results, cache: Cache, dataset: str, run, features, glyphs: Glyphs, stability) -> None:
    out = Path(results) / "figures"
    if run:
        model, ck, path = load_model(run, "cpu")
        epoch = ck["epoch"]
        final = model.conv1_kernels().numpy()
        init = np.load(Path(run) / CONV1_INIT) if (Path(run) / CONV1_INIT).exists() else None
        conv1_kernels(final, init, len(model.towers), out,
                      f"Figure 3: the {len(final)} conv1 kernels of {path.parent.name} on {dataset} "
                      f"(epoch {epoch}; {setting_label(model.config.stability)})", model.config.stability)
        if features:
            tr, va = (np.load(Path(features) / f"{s}.npy", mmap_mode="r") for s in ("train", "val"))
            figure4(model, cache, tr, va, out / "figure4.png",
                    f"Figure 4: {path.parent.name} on {dataset}", glyphs)
            neighbours(cache, tr, va, out / "neighbours.json")
    fig1 = Path(results) / "figure1.json"
    if fig1.exists() and "window" in json.loads(fig1.read_text()):  # steps counted (since 2026-12-07)
        figure1(json.loads(fig1.read_text()), out / "figure1_relu_tanh.png")
    logs = {p.stem: [json.loads(x) for x in p.read_text().splitlines()]
            for p in sorted((Path(results) / "logs").glob("*.jsonl"))}
    training_curves(logs, out / "training_curves.png", chance=1 - 1 / len(cache.classes), stability=stability)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.figures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True,
                    help="results/<dataset>: logs/, figure1.json; figures/ is written")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--run", help="the 1cnn run directory (for Figures 3 and 4)")
    ap.add_argument("--features", help="folder with train.npy and val.npy from `alexnet.evaluate --features`")
    ap.add_argument("--dataset", default="", help="dataset name for the titles")
    ap.add_argument("--stability", help="the folder's stability setting ('paper': §5's values): the training "
                                        "curves leave out runs of others (default: the logs' one setting)")
    args = ap.parse_args(argv)
    try:
        cache = Cache(args.cache)
        make_figures(args.results, cache, args.dataset, args.run, args.features, args.stability)
    except ValueError as e:
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
