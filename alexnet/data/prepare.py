"""Prepare once: every image → 256×256 (§2) in a compact random-access cache,
with the training set's mean image and RGB PCA computed in the same pass.

§2: "Given a rectangular image, we first rescaled the image such that the
shorter side was of length 256, and then cropped out the central 256×256
patch from the resulting image ... [we subtract] the mean activity over the
training set from each pixel." `PIL.ImageOps.fit` does the rescale and central
crop in one call.

Cache format (a directory):

    meta.json                     classes, per-split counts, shard sizes, report, source, and
                                  image_stats: the data's RGB PCA ratios, spectrum slope and
                                  pixel 5-NN label agreement (alexnet/data/image_stats.py)
    <split>-<unit:05d>.bin        JPEG bytes (quality 90, RGB, 256×256) back to back
    <split>.index.npz             per image: shard, offset, length, label, name
    mean.npy                      float64 3×256×256: per-pixel mean of the training images
    pca.npz                       cov (3×3), eigvals (descending), eigvecs (columns),
                                  all on 0–255 RGB values of every training pixel

Mean and covariance are computed on the pixels the network will see (the
stored JPEGs decoded), exactly: per shard, integer sums in float64.

Resumable: each unit of work (one synset tar, or 500 files) becomes one shard,
written to a temporary name and renamed when complete, with its index and
statistics beside it. Killed and started again, prepare skips finished shards;
meta.json is written last, so a cache without it is unfinished.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..atomic import atomic_write as _atomic_write
from ..atomic import is_disk_full
from ..progress import bar as progress_bar
from . import image_stats
from .cache import FORMAT_VERSION
from .sources import Source, read_unit

SIZE = 256  # §2
QUALITY = 90


def to_rgb_256(data: bytes) -> tuple[Image.Image, list[str]]:
    """Decode any image PIL reads, convert to RGB, rescale the shorter side to
    256 and take the central 256×256 (§2). Returns the image and the list of
    conversions done (e.g. ["CMYK→RGB"], ["PNG named .JPEG"]). Raises on
    corrupt or truncated data."""
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        img.load()  # raises OSError on truncated data
    if img.format != "JPEG":
        notes.append(f"{img.format} file")
    if img.mode != "RGB":
        notes.append(f"{img.mode}→RGB")
        img = img.convert("RGB")
    return ImageOps.fit(img, (SIZE, SIZE), method=Image.BILINEAR, centering=(0.5, 0.5)), notes


def _do_unit(args) -> dict:
    """Worker: one unit → one shard (.bin + .npz). Returns the shard's summary."""
    out, split, k, unit, with_stats = args
    out = Path(out)
    offsets, lengths, labels, names, notes, skipped = [], [], [], [], [], []
    pix_sum = np.zeros((SIZE, SIZE, 3), np.float64)
    rgb_sum, rgb_outer = np.zeros(3, np.float64), np.zeros((3, 3), np.float64)
    blob = io.BytesIO()
    for name, data, label in read_unit(unit):
        try:
            img, conv = to_rgb_256(data)
        except Exception as e:  # noqa: BLE001 — any decoder failure skips this one image
            skipped.append([name, f"{type(e).__name__}: {e}"])
            continue
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=QUALITY)
        enc = buf.getvalue()
        offsets.append(blob.tell())
        lengths.append(len(enc))
        labels.append(label)
        names.append(name)
        blob.write(enc)
        notes += [[name, c] for c in conv]
        if with_stats:
            px = np.asarray(Image.open(io.BytesIO(enc)).convert("RGB"), dtype=np.float64)
            pix_sum += px
            flat = px.reshape(-1, 3)
            rgb_sum += flat.sum(0)
            rgb_outer += flat.T @ flat
    stem = out / f"{split}-{k:05d}"
    _atomic_write(stem.with_suffix(".bin"), lambda f: f.write(blob.getvalue()))
    _atomic_write(stem.with_suffix(".npz"), lambda f: np.savez(
        f, offset=np.array(offsets, np.int64), length=np.array(lengths, np.int64),
        label=np.array(labels, np.int64), name=np.array(names, dtype=str),
        pix_sum=pix_sum if with_stats else np.zeros(0), rgb_sum=rgb_sum, rgb_outer=rgb_outer,
        notes=np.array(json.dumps(notes)), skipped=np.array(json.dumps(skipped))))
    return {"split": split, "k": k, "count": len(offsets)}


def prepare(source: Source, out: str | os.PathLike, workers: int | None = None,
            progress: bool = True) -> dict:
    """Build (or finish) the cache for `source` in `out`; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = hashlib.sha256(json.dumps([source.root, source.classes, source.units]).encode()).hexdigest()
    if (out / "meta.json").exists():
        meta = json.loads((out / "meta.json").read_text())
        if meta.get("fingerprint") == fingerprint:
            return meta["report"]
        raise ValueError(f"{out} already holds a cache of another dataset or another version of it "
                         f"({meta.get('source')}); choose another --cache or delete {out}")
    jobs = []
    for split, units in source.units.items():
        for k, unit in enumerate(units):
            if not (out / f"{split}-{k:05d}.npz").exists():
                jobs.append((str(out), split, k, unit, split == "train"))
    total = sum(len(u) for u in source.units.values())
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    t0, done_images = time.time(), 0
    bar = progress_bar(total=total, initial=total - len(jobs), unit="shard", desc=f"prepare → {out}",
                       enabled=progress)
    if jobs:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            try:
                for res in pool.imap_unordered(_do_unit, jobs):
                    done_images += res["count"]
                    bar.update()
                    bar.set_postfix(img_s=f"{done_images / max(time.time() - t0, 1e-9):.0f}", refresh=False)
            except OSError as e:
                if not is_disk_full(e):
                    raise
                shards = list(out.glob("*.bin"))
                per_shard = sum(p.stat().st_size for p in shards) / max(len(shards), 1)
                left = total - len(list(out.glob("*.npz")))
                raise ValueError(f"no space left writing the cache in {out}: about "
                                 f"{per_shard * left / 2**20:.0f} MiB more are needed for {left} shard(s), "
                                 f"{shutil.disk_usage(out).free / 2**20:.0f} MiB are free. Finished shards "
                                 "are kept: free space and run the same command again.") from None
    bar.close()
    report = _finish(source, out, fingerprint)
    report["seconds_this_run"] = round(time.time() - t0, 1)
    report["shards_done_before_this_run"] = total - len(jobs)
    return report


def _finish(source: Source, out: Path, fingerprint: str) -> dict:
    """Merge shard indexes and statistics; write mean.npy, pca.npz, meta.json."""
    meta = {"format_version": FORMAT_VERSION, "kind": source.kind, "source": source.root,
            "fingerprint": fingerprint, "image_size": SIZE, "jpeg_quality": QUALITY,
            "classes": source.classes, "splits": {}}
    report = {"images": {}, "converted": {}, "skipped": [], "converted_examples": []}
    pix_sum = np.zeros((SIZE, SIZE, 3), np.float64)
    rgb_sum, rgb_outer = np.zeros(3, np.float64), np.zeros((3, 3), np.float64)
    for split, units in source.units.items():
        cols = {c: [] for c in ("shard", "offset", "length", "label", "name")}
        shard_sizes = []
        for k in range(len(units)):
            z = np.load(out / f"{split}-{k:05d}.npz")
            n = len(z["offset"])
            cols["shard"].append(np.full(n, k, np.int32))
            for c in ("offset", "length", "label", "name"):
                cols[c].append(z[c])
            shard_sizes.append((out / f"{split}-{k:05d}.bin").stat().st_size)
            for name, note in json.loads(str(z["notes"])):
                report["converted"][note] = report["converted"].get(note, 0) + 1
                if len(report["converted_examples"]) < 50:
                    report["converted_examples"].append([name, note])
            report["skipped"] += json.loads(str(z["skipped"]))
            if split == "train" and n:
                pix_sum += z["pix_sum"]
                rgb_sum += z["rgb_sum"]
                rgb_outer += z["rgb_outer"]
        index = {c: np.concatenate(v) if v else np.zeros(0) for c, v in cols.items()}
        _atomic_write(out / f"{split}.index.npz", lambda f, index=index: np.savez(f, **index))
        meta["splits"][split] = {"count": int(len(index["offset"])), "shards": len(units),
                                 "shard_bytes": shard_sizes}
        report["images"][split] = int(len(index["offset"]))
    n_train = report["images"].get("train", 0)
    if n_train == 0:
        raise ValueError(f"{source.root}: no training image could be read "
                         f"({len(report['skipped'])} skipped); see the skipped list")
    mean = (pix_sum / n_train).transpose(2, 0, 1)  # 3×256×256, 0–255
    n_px = n_train * SIZE * SIZE
    mu = rgb_sum / n_px
    cov = rgb_outer / n_px - np.outer(mu, mu)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    _atomic_write(out / "mean.npy", lambda f: np.save(f, mean))
    _atomic_write(out / "pca.npz", lambda f: np.savez(f, cov=cov, eigvals=eigvals[order],
                                                       eigvecs=eigvecs[:, order], rgb_mean=mu))
    meta["report"] = report
    _atomic_write(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    # measured on the finished cache, then added (killed before: `python -m tools.image_stats` still works)
    try:
        meta["image_stats"] = image_stats.of_cache(out)
    except ValueError as e:  # a statistic this set cannot give: the cache is whole without it
        warnings.warn(f"{out}: no image statistics ({e})", stacklevel=2)
        return report
    _atomic_write(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return report


def check_space(source: Source, cache: str | os.PathLike) -> None:
    """ValueError, before any work, when the disk cannot hold the cache (about a third of the source)."""
    cache = Path(cache)
    need = sum(p.stat().st_size for p in Path(source.root).rglob("*") if p.is_file()) // 3
    free = shutil.disk_usage(cache.parent if cache.parent.exists() else ".").free
    if free < need:
        raise ValueError(f"{cache.parent}: {free / 2**30:.1f} GiB free, the cache needs about "
                         f"{need / 2**30:.1f} GiB (a third of the source); free space or "
                         "choose --cache elsewhere")


def format_report(report: dict) -> str:
    lines = ["images: " + ", ".join(f"{s} {n:,}" for s, n in report["images"].items())]
    conv = report["converted"]
    lines.append("converted: " + (", ".join(f"{k} {v}" for k, v in sorted(conv.items())) or "none"))
    lines.append(f"skipped (unreadable): {len(report['skipped'])}")
    lines += [f"  {name}: {why}" for name, why in report["skipped"][:20]]
    if len(report["skipped"]) > 20:
        lines.append(f"  ... and {len(report['skipped']) - 20} more (meta.json lists all)")
    return "\n".join(lines)
