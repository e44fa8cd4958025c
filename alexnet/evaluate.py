"""Evaluate checkpoints: top-1/top-5 error on the centre patch and on the
average of ten patches' softmax (§4.1); several checkpoints = an ensemble
("5 CNNs": their softmax outputs averaged, §6).

    python -m alexnet.evaluate --cache cache/synthetic-g4 --checkpoint runs/1cnn --out results/eval.json
    python -m alexnet.evaluate --cache C --checkpoint runs/s1 runs/s2 runs/s3 runs/s4 runs/s5   # ensemble
    python -m alexnet.evaluate --cache C --checkpoint runs/1cnn --split test --submission test.txt
    python -m alexnet.evaluate --cache C --checkpoint runs/1cnn --split train --features feats.npy

A --checkpoint may be a run directory (its newest valid checkpoint) or a file.
--submission writes the ILSVRC format: one line per image in the split's
order, the five most probable classes as ILSVRC IDs (class indices + 1 for
datasets without IDs). --features writes the 4096-d last hidden layer
(§6.1, Figure 4) with labels and file names.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .atomic import atomic_write, write_text
from .cli import check_at_least
from .data.cache import Cache, CacheError
from .data.loader import Loader
from .engine import dropout_predictions, errors, evaluate, features, load_model
from .placement import resolve_devices


def write_submission(path: Path, probs: torch.Tensor, classes: list[dict]) -> None:
    ids = [c["ilsvrc_id"] if c.get("ilsvrc_id") is not None else i + 1 for i, c in enumerate(classes)]
    top5 = probs.topk(min(5, probs.shape[1]), dim=1).indices.tolist()
    write_text(path, "".join(" ".join(str(ids[k]) for k in row) + "\n" for row in top5))


def shown(path, root=None) -> str:
    """A path as result files record it: relative to `root` (default: the working
    directory) when inside it, so committed files name no absolute path of the machine."""
    try:
        return str(Path(path).resolve().relative_to(Path(root or Path.cwd()).resolve()))
    except ValueError:
        return str(path)


def feature_files(out) -> tuple[Path, Path]:
    """Where `save_features` writes for `out`: <stem>.npy (N×4096 float32) and <stem>.meta.npz."""
    stem = Path(out).with_suffix("")
    return stem.with_suffix(".npy"), stem.with_name(stem.name + ".meta.npz")


def save_features(cache: Cache, checkpoint_path, out, split: str = "val", devices=None, batch_size: int = 64,
                  workers: int | None = None, root=None) -> tuple[int, int]:
    """The 4096-d last hidden layer (centre patch) of a split, written batch by batch into
    <stem>.npy with plain writes after its header (so memory is one batch, whatever the split's
    size: pages written through a memory map would stay resident up to the whole file), with
    labels, names and the checkpoint in <stem>.meta.npz. Read it with np.load(path, mmap_mode="r")."""
    model, _, path = load_model(checkpoint_path, devices)
    loader = Loader(cache, split, model.config, train=False, views="center", batch_size=batch_size,
                    device=model.devices[0], workers=workers)
    npy, meta = feature_files(out)
    npy.parent.mkdir(parents=True, exist_ok=True)
    shape = (cache.size(split), model.config.last_hidden)
    tmp = npy.with_name(npy.name + ".tmp")
    labels, i = np.empty(shape[0], np.int64), 0
    with open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
        for f, y in features(model, loader):
            fh.write(np.ascontiguousarray(f.numpy(), "<f4").data)
            labels[i:i + len(f)] = y.numpy()
            i += len(f)
    if i != shape[0]:
        raise RuntimeError(f"features: {i} rows written for the {shape[0]} images of {split}")
    os.replace(tmp, npy)
    atomic_write(meta, lambda fh: np.savez(fh, labels=labels, names=cache.names(split),
                                           checkpoint=shown(path, root)))
    print(f"features {shape} → {npy} (labels and names: {meta.name})")
    return shape


def save_errors(cache: Cache, checkpoints: list, out=None, split: str = "val", views=("center", "ten"),
                devices=None, batch_size: int = 64, workers: int | None = None,
                root=None) -> tuple[dict, dict]:
    """`engine.evaluate`, printed and written as JSON (with what produced it) to `out`;
    paths are recorded relative to `root` (see `shown`)."""
    t0 = time.time()
    res, probs = evaluate(cache, checkpoints, split, views, devices, batch_size, workers)
    for entry in res["checkpoints"]:
        entry["path"] = shown(entry["path"], root)
    res.update({"cache": shown(cache.root, root), "seconds": round(time.time() - t0, 1),
                "code_version": checkpoint.code_version(), "date": time.strftime("%Y-%m-%d")})
    for v, e in res["ensemble"].items():
        label = "ensemble of %d" % len(checkpoints) if len(checkpoints) > 1 else "model"
        print(f"{label}, {v} view(s): top-1 error {e['top1']:.4f}, top-5 error "
              f"{e['top5']:.4f} ({e['n']} images)")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_text(out, json.dumps(res, indent=1))
    return res, probs


def save_dropout_mean(cache: Cache, checkpoint_path, out, split: str = "val", masks: int = 16, devices=None,
                      batch_size: int = 50, workers: int | None = None, root=None) -> dict:
    """§4.2's test-time rule against what it approximates (`engine.dropout_predictions`), centre patch:
    the errors of the net in eval mode (×0.5) and of the geometric mean of `masks` dropout networks, each
    with its top-1 per image (`engine.wrong_bits`), and the share of images where their top-1 agree;
    written as JSON with the checkpoint it read (the form run_all's `evaluated` checks)."""
    t0 = time.time()
    model, ck, path = load_model(checkpoint_path, devices)
    loader = Loader(cache, split, model.config, train=False, views="center", batch_size=batch_size,
                    device=model.devices[0], workers=workers)
    scaled, geometric, labels = dropout_predictions(model, loader, masks)
    res = {"split": split, "masks": masks, "classes": len(cache.classes),
           "checkpoints": [{"path": shown(path, root), "epoch": ck["epoch"], "saved_at": ck.get("saved_at"),
                            "config": ck["config"]}],
           "scaled": errors(scaled, labels, per_image=True),
           "geometric": errors(geometric, labels, per_image=True),
           "agreement": float((scaled.argmax(1) == geometric.argmax(1)).double().mean()),
           "seconds": round(time.time() - t0, 1), "code_version": checkpoint.code_version(),
           "date": time.strftime("%Y-%m-%d")}
    print(f"×0.5 top-1 error {res['scaled']['top1']:.4f}, geometric mean of {masks} dropout networks "
          f"{res['geometric']['top1']:.4f}; top-1 agree on {res['agreement']:.1%} of {len(labels)} images")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(res, indent=1))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alexnet.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="a prepared dataset")
    ap.add_argument("--checkpoint", nargs="+", required=True, help="run directories or checkpoint files")
    ap.add_argument("--split", default="val", help="val (default), test, or train")
    ap.add_argument("--views", choices=("center", "ten", "both"), default="both")
    ap.add_argument("--devices", help="tower devices (default: what exists)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", help="write the errors as JSON here")
    ap.add_argument("--submission", help="write ILSVRC-format top-5 predictions here")
    ap.add_argument("--features", metavar="F.npy", help="write the 4096-d features (first checkpoint, centre "
                    "patch) to F.npy, batch by batch, with labels and names in F.meta.npz")
    args = ap.parse_args(argv)
    check_at_least(ap, args, {"batch_size": 1})
    try:
        cache = Cache(args.cache)
        if args.split not in cache.splits:
            raise ValueError(f"--split {args.split}: the cache has {cache.splits}")
        devices = resolve_devices(args.devices)
        views = ("center", "ten") if args.views == "both" else (args.views,)
        if args.features:
            save_features(cache, args.checkpoint[0], args.features, args.split, devices, args.batch_size,
                          args.workers)
            return 0
        _, probs = save_errors(cache, args.checkpoint, args.out, args.split, views, devices, args.batch_size,
                               args.workers)
    except (ValueError, CacheError) as e:
        ap.error(str(e))
    if args.submission:
        write_submission(Path(args.submission), probs[views[-1]], cache.classes)
        print(f"submission ({views[-1]} views) → {args.submission}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
