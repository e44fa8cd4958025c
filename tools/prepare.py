"""Prepare a dataset once: 256×256 images (§2), mean image and RGB PCA (§4.1).

    python -m tools.prepare --synthetic                       # the embedded default: cache/synthetic-g4
    python -m tools.prepare --imagenet /data/ilsvrc2012       # the three official archives
    python -m tools.prepare --data /data/imagenette2          # any ImageFolder train/ val/ (test/)
    python -m tools.prepare --data DIR --cache cache/mine --workers 8

Resumable: killed and run again with the same arguments, it finishes the
shards that are missing and redoes nothing. Prints a report of every image
converted (CMYK, grayscale, PNG, ...) or skipped (unreadable), also kept in
<cache>/meta.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet.cli import check_at_least
from alexnet.data.prepare import check_space, format_report, prepare
from alexnet.data.sources import DatasetError, open_source
from alexnet.data.synthetic import (
    DEFAULT_SIZE,
    GENERATOR_VERSION,
    GENERATORS,
    data_name,
    write_synthetic_ilsvrc,
)

DEFAULT_SYNTHETIC = dict(zip(("classes", "train_per_class", "val_per_class"), DEFAULT_SIZE))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.prepare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", action="store_true",
                     help="generate the embedded synthetic dataset (ILSVRC-2012 "
                          "archive format) and prepare it")
    src.add_argument("--imagenet", metavar="DIR",
                     help="folder with the ILSVRC-2012 train/val tars and devkit")
    src.add_argument("--data", metavar="DIR",
                     help="an ImageFolder tree with train/ and val/ (and optional test/)")
    ap.add_argument("--cache", metavar="DIR", help="where the cache goes (default: cache/<dataset name>)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    ap.add_argument("--classes", type=int, default=DEFAULT_SYNTHETIC["classes"], help="synthetic: classes")
    ap.add_argument("--train-per-class", type=int, default=DEFAULT_SYNTHETIC["train_per_class"],
                    help="synthetic: training images per class")
    ap.add_argument("--val-per-class", type=int, default=DEFAULT_SYNTHETIC["val_per_class"],
                    help="synthetic: validation images per class")
    ap.add_argument("--seed", type=int, default=0, help="synthetic: generator seed")
    ap.add_argument("--generator", type=int, choices=GENERATORS, default=GENERATOR_VERSION,
                    help=f"synthetic: generator version (default {GENERATOR_VERSION}; 2 remakes the sets "
                         "of results folders made before it)")
    ap.add_argument("--raw", metavar="DIR", help="synthetic: where the archives go (default: data/<name>)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    check_at_least(ap, args, {"workers": 1, "classes": 2, "train_per_class": 1, "val_per_class": 1})

    if args.synthetic:
        name = data_name(args.classes, args.train_per_class, args.val_per_class, args.seed,
                         generator=args.generator)  # run_all's name too
        raw = Path(args.raw or Path("data") / name)
        write_synthetic_ilsvrc(raw, args.classes, args.train_per_class, args.val_per_class, args.seed,
                               progress=not args.no_progress, generator=args.generator)
        imagenet, folder = str(raw), None
    else:
        imagenet, folder = args.imagenet, args.data
        name = Path(imagenet or folder).resolve().name
    cache = Path(args.cache or f"cache/{name}")
    try:
        source = open_source(imagenet=imagenet, folder=folder)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        check_space(source, cache)
        report = prepare(source, cache, workers=args.workers, progress=not args.no_progress)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"cache: {cache}")
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
