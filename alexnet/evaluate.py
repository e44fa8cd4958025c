"""Evaluate checkpoints: top-1/top-5 error on the centre patch and on the
average of ten patches' softmax (§4.1); several checkpoints = an ensemble
("5 CNNs": their softmax outputs averaged, §6).

    python -m alexnet.evaluate --cache cache/synthetic --checkpoint runs/1cnn --out results/eval.json
    python -m alexnet.evaluate --cache C --checkpoint runs/s1 runs/s2 runs/s3 runs/s4 runs/s5   # ensemble
    python -m alexnet.evaluate --cache C --checkpoint runs/1cnn --split test --submission test.txt
    python -m alexnet.evaluate --cache C --checkpoint runs/1cnn --split train --features feats.npz

A --checkpoint may be a run directory (its newest valid checkpoint) or a file.
--submission writes the ILSVRC format: one line per image in the split's
order, the five most probable classes as ILSVRC IDs (class indices + 1 for
datasets without IDs). --features writes the 4096-d last hidden layer
(§6.1, Figure 4) with labels and file names.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .atomic import atomic_write, write_text
from .config import AlexNetConfig
from .speed import FAITHFUL_LABEL
from .data.cache import Cache, CacheError
from .data.loader import Loader
from .engine import ensemble, errors, features, predict
from .model import AlexNet


def load_model(path: str | Path, devices=None) -> tuple[AlexNet, dict, Path]:
    path = Path(path)
    if path.is_dir():
        found, ck = checkpoint.latest(path)
        if ck is None:
            raise ValueError(f"{path}: no readable checkpoint (ckpt-*.pt) inside; train first")
        path = found
    elif path.is_file():
        ck = torch.load(path, map_location="cpu", weights_only=False)
    else:
        raise ValueError(f"--checkpoint {path}: no such file or run directory")
    model = AlexNet(AlexNetConfig.from_dict(ck["config"]), devices)
    model.load_state_dict(ck["model"])
    return model.eval(), ck, path


def evaluate(cache: Cache, paths: list, split: str = "val", views=("center", "ten"), devices=None,
             batch_size: int = 64, workers: int | None = None) -> tuple[dict, dict]:
    """Errors of each checkpoint and of their ensemble, per view mode; and the
    ensemble's softmax per view mode."""
    out = {"split": split, "images": cache.size(split), "classes": len(cache.classes), "checkpoints": [],
           "ensemble": {}}
    probs: dict[str, list] = {v: [] for v in views}
    labels = None
    for p in paths:
        model, ck, path = load_model(p, devices)
        entry = {"path": str(path), "epoch": ck["epoch"], "step": ck["step"], "profile": ck["config"]["profile"],
                 "mode": ck.get("mode", FAITHFUL_LABEL)}
        for v in views:
            loader = Loader(cache, split, model.config, train=False, views=v, batch_size=batch_size,
                            device=model.devices[0], workers=workers)
            pr, labels = predict(model, loader)
            probs[v].append(pr)
            entry[v] = errors(pr, labels)
        out["checkpoints"].append(entry)
    for v in views:
        out["ensemble"][v] = errors(ensemble(probs[v]), labels)
    return out, {v: ensemble(probs[v]) for v in views}


def write_submission(path: Path, probs: torch.Tensor, classes: list[dict]) -> None:
    ids = [c["ilsvrc_id"] if c.get("ilsvrc_id") is not None else i + 1 for i, c in enumerate(classes)]
    top5 = probs.topk(min(5, probs.shape[1]), dim=1).indices.tolist()
    write_text(path, "".join(" ".join(str(ids[k]) for k in row) + "\n" for row in top5))


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
    ap.add_argument("--features", help="write the 4096-d features (first checkpoint, centre patch) here (.npz)")
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        ap.error(f"--batch-size={args.batch_size}: must be at least 1")
    try:
        cache = Cache(args.cache)
        if args.split not in cache.splits:
            raise ValueError(f"--split {args.split}: the cache has {cache.splits}")
        views = ("center", "ten") if args.views == "both" else (args.views,)
        t0 = time.time()
        if args.features:
            model, _, path = load_model(args.checkpoint[0], args.devices)
            loader = Loader(cache, args.split, model.config, train=False, views="center",
                            batch_size=args.batch_size, device=model.devices[0], workers=args.workers)
            f, y = features(model, loader)
            atomic_write(args.features, lambda fh: np.savez(
                fh, features=f.numpy(), labels=y.numpy(), names=cache.names(args.split), checkpoint=str(path)))
            print(f"features {tuple(f.shape)} → {args.features}")
            return 0
        res, probs = evaluate(cache, args.checkpoint, args.split, views, args.devices, args.batch_size, args.workers)
    except (ValueError, CacheError) as e:
        ap.error(str(e))
    res.update({"cache": str(args.cache), "seconds": round(time.time() - t0, 1),
                "code_version": checkpoint.code_version(), "date": time.strftime("%Y-%m-%d")})
    for v, e in res["ensemble"].items():
        label = "ensemble of %d" % len(args.checkpoint) if len(args.checkpoint) > 1 else "model"
        print(f"{label}, {v} view(s): top-1 error {e['top1']:.4f}, top-5 error {e['top5']:.4f} ({e['n']} images)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(res, indent=1))
    if args.submission:
        write_submission(Path(args.submission), probs[views[-1]], cache.classes)
        print(f"submission ({views[-1]} views) → {args.submission}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
