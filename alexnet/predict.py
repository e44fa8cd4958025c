"""Classify images with a trained checkpoint: the top-5 classes with probabilities.

    python -m alexnet.predict --checkpoint runs/1cnn cat.jpg dog.png
    python -m alexnet.predict --checkpoint runs/1cnn/ckpt-e014-s000518.pt --views ten photo.jpg

Each image, of any size and mode (CMYK, grayscale, palette, RGBA …), is made
what the network saw in training (§2): converted to RGB, its shorter side
rescaled to 256, the central 256×256 kept; then the mean image of the
training set is subtracted and the centre 224×224 patch is classified, or
with `--views ten` the softmax is averaged over §4.1's ten patches (four
corners and centre, and their mirror images).

The mean image and class names come from the checkpoint (runs of this
version store them), else from `--cache`, else from the cache its run
directory's config.json names. An image that cannot be read is named and
skipped; the exit status is 1 only when no image could be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError

from . import engine
from .data.augment import Normalizer
from .data.cache import Cache, CacheError
from .data.prepare import to_rgb_256
from .placement import resolve_devices


def dataset_of(ck: dict, path: Path, cache: str | None = None) -> tuple[torch.Tensor, list[dict]]:
    """The mean image (3×256×256 float32, 0–255) and class list a checkpoint was trained with."""
    if cache is None and "dataset" in ck:
        return ck["dataset"]["mean"].float(), ck["dataset"]["classes"]
    if cache is None:
        config = path.parent / "config.json"
        cache = json.loads(config.read_text()).get("cache") if config.exists() else None
        if cache is None or not Path(cache).exists():
            raise ValueError(f"{path} holds no mean image (trained by an older version) and its run's cache "
                             f"{cache or '(unknown)'} is not here: pass --cache DIR, the prepared dataset "
                             "it was trained on")
    c = Cache(cache)
    return torch.from_numpy(c.mean.astype(np.float32)), c.classes


def read_image(path: str | Path) -> torch.Tensor:
    """A file → uint8 3×256×256 RGB, as prepare stored training images (§2). Raises on unreadable data."""
    img, _ = to_rgb_256(Path(path).read_bytes())
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def classify(model, mean: torch.Tensor, images: torch.Tensor, views: str = "center") -> torch.Tensor:
    """Softmax (N×C, CPU) of uint8 N×3×256×256 images: mean image off, then the
    centre patch or the average over ten patches (engine.predict)."""
    dims = mean.shape[0]
    norm = Normalizer(mean, torch.ones(dims), torch.eye(dims), model.config, device=model.devices[0])
    x = norm.test_batch(images, views)
    probs, _ = engine.predict(model, [(x, torch.zeros(len(x), dtype=torch.long))])
    return probs


def describe(probs: torch.Tensor, classes: list[dict], k: int = 5) -> list[dict]:
    """The k most probable classes of one image: rank, probability, class index, wnid, name."""
    p, idx = probs.topk(min(k, len(probs)))
    return [{"rank": r + 1, "probability": float(pi), "index": int(i), "wnid": classes[i]["wnid"],
             "name": classes[i]["words"]} for r, (pi, i) in enumerate(zip(p.tolist(), idx.tolist()))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alexnet.predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG or anything PIL reads")
    ap.add_argument("--checkpoint", required=True, help="a run directory (its newest checkpoint) or a file")
    ap.add_argument("--views", choices=("center", "ten"), default="center",
                    help="center: the central 224 patch; ten: §4.1's ten patches, softmax averaged")
    ap.add_argument("--top", type=int, default=5, help="classes shown per image (default 5)")
    ap.add_argument("--cache", help="the prepared dataset it was trained on (only for checkpoints without a "
                    "mean image)")
    ap.add_argument("--devices", help="tower devices (default: what exists)")
    ap.add_argument("--json", action="store_true", help="one JSON line per image instead of text")
    args = ap.parse_args(argv)
    try:
        model, ck, path = engine.load_model(args.checkpoint, resolve_devices(args.devices))
        mean, classes = dataset_of(ck, path, args.cache)
    except (ValueError, CacheError) as e:
        ap.error(str(e))
    read = 0
    for name in args.images:
        try:
            image = read_image(name)
        except UnidentifiedImageError:
            print(f"{name}: skipped, not an image format PIL reads", file=sys.stderr)
            continue
        except Exception as e:  # noqa: BLE001 — any unreadable file is skipped, named
            print(f"{name}: skipped, cannot read it as an image ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        read += 1
        top = describe(classify(model, mean, image[None], args.views)[0], classes, args.top)
        if args.json:
            print(json.dumps({"image": name, "views": args.views, "top": top}))
            continue
        print(f"{name} ({args.views} view{'s' if args.views == 'ten' else ''}):")
        for t in top:
            print(f"  {t['rank']}. {t['probability']:.4f}  {t['wnid']:<12} {t['name']}")
    if not read:
        print("no image could be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
