"""The embedded default dataset: a deterministic synthetic ImageNet, written in
the ILSVRC-2012 archive format so that the real ingestion path runs with no
download.

    python -m tools.prepare --synthetic --classes 10 --train-per-class 120 --raw data/synthetic

writes, exactly as the official release is laid out:

    ILSVRC2012_img_train.tar     one tar per synset, <wnid>/<wnid>_<k>.JPEG inside
    ILSVRC2012_img_val.tar       ILSVRC2012_val_<8 digits>.JPEG, flat
    ILSVRC2012_devkit_t12.tar.gz ILSVRC2012_devkit_t12/data/meta.mat (synsets) and
                                 .../data/ILSVRC2012_validation_ground_truth.txt

Each class is a coloured, textured, oriented shape (a hue, a shape, a stripe
orientation and frequency) drawn at a random position, scale and rotation
jitter on a random two-colour gradient background with noise, in images of
varied size and aspect. The classes are learnable by a convnet and the
colour/edge statistics give conv1 something to tune to; the task is far easier
than ImageNet, and its numbers are not ImageNet numbers.

The ILSVRC2012_IDs are assigned in reverse wnid order, so a parser that
confused ID order with sorted-wnid order would mislabel every class.
"""

from __future__ import annotations

import colorsys
import gzip
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

from ..progress import bar as progress_bar
from .sources import DEVKIT, TRAIN_TAR, VAL_TAR

SHAPES = ("disc", "square", "triangle", "cross", "ring", "star", "bar", "diamond")


DEFAULT_SIZE = (10, 120, 20)  # classes, train per class, val per class


def synthetic_name(classes: int, train_per_class: int, val_per_class: int, seed: int = 0) -> str:
    """Folder name for a synthetic dataset: 'synthetic' for the default, else its size."""
    if (classes, train_per_class, val_per_class, seed) == (*DEFAULT_SIZE, 0):
        return "synthetic"
    return f"synthetic-{classes}x{train_per_class}x{val_per_class}" + (f"-seed{seed}" if seed else "")


def class_spec(k: int) -> dict:
    """The fixed attributes of class k."""
    return {
        "wnid": f"n{90000000 + k:08d}",
        "shape": SHAPES[k % len(SHAPES)],
        "hue": (k * 0.6180339887) % 1.0,  # golden-ratio steps: well-separated hues
        "stripe_angle": (k * 47) % 180,
        "stripe_period": 6 + 4 * ((k // len(SHAPES)) % 3),
    }


def class_name(spec: dict) -> str:
    return f"{spec['shape']} h{int(spec['hue'] * 360):03d} s{spec['stripe_angle']:03d}"


def _shape_polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[list[tuple]]:
    """Polygons (in pixels) whose union is the shape; disc/ring are done by the caller."""
    def poly(points):
        c, s = np.cos(rot), np.sin(rot)
        return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]
    if shape == "square":
        return [poly([(-.8, -.8), (.8, -.8), (.8, .8), (-.8, .8)])]
    if shape == "triangle":
        return [poly([(0, -1), (.95, .75), (-.95, .75)])]
    if shape == "cross":
        return [poly([(-1, -.3), (1, -.3), (1, .3), (-1, .3)]), poly([(-.3, -1), (.3, -1), (.3, 1), (-.3, 1)])]
    if shape == "star":
        ang = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return [poly(list(zip(rad * np.cos(ang), rad * np.sin(ang))))]
    if shape == "bar":
        return [poly([(-1, -.25), (1, -.25), (1, .25), (-1, .25)])]
    if shape == "diamond":
        return [poly([(0, -1), (.6, 0), (0, 1), (-.6, 0)])]
    raise ValueError(shape)


def render(k: int, rng: np.random.Generator) -> Image.Image:
    """One image of class k."""
    spec = class_spec(k)
    w, h = int(rng.integers(240, 400)), int(rng.integers(240, 400))
    # background: a gradient between two random muted colours, plus noise
    c0, c1 = rng.uniform(0, 255, 3) * 0.7, rng.uniform(0, 255, 3) * 0.7
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
    bg = c0 * (1 - t) + c1 * t + rng.normal(0, 12, (h, w, 3))
    bg = np.broadcast_to(bg, (h, w, 3))

    # object mask
    r = rng.uniform(0.22, 0.42) * min(w, h)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    rot = np.deg2rad(rng.normal(0, 12))
    mask_img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask_img)
    if spec["shape"] in ("disc", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if spec["shape"] == "ring":
            draw.ellipse([cx - .55 * r, cy - .55 * r, cx + .55 * r, cy + .55 * r], fill=0)
    else:
        for p in _shape_polygon(spec["shape"], cx, cy, r, rot):
            draw.polygon(p, fill=255)
    mask = np.asarray(mask_img, dtype=np.float64)[..., None] / 255.0

    # object fill: the class hue (jittered) modulated by oriented stripes
    hue = (spec["hue"] + rng.normal(0, 0.025)) % 1.0
    rgb = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))) * 255
    theta = np.deg2rad(spec["stripe_angle"] + np.rad2deg(rot))
    yy, xx = np.mgrid[0:h, 0:w]
    period = spec["stripe_period"] * rng.uniform(0.85, 1.15) * r / 60
    phase = (xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / max(period, 3.0)
    stripes = 0.6 + 0.4 * np.sign(np.sin(phase))[..., None]
    fg = rgb * stripes + rng.normal(0, 6, (h, w, 3))

    img = bg * (1 - mask) + fg * mask
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # deterministic archives
    tar.addfile(info, io.BytesIO(data))


def _write_devkit(path: Path, specs: list[dict], val_labels: list[int]) -> None:
    n = len(specs)
    ids = {i: n - i for i in range(n)}  # ILSVRC2012_ID: reverse of sorted-wnid order
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    synsets = np.zeros((n + 1, 1), dtype=[(f, "O") for f in fields])
    for i, s in enumerate(specs):
        synsets[i, 0] = (ids[i], s["wnid"], class_name(s), "synthetic class", 0,
                         np.zeros((0,), np.uint8), 0, 0)
    # one non-leaf synset, as in the real meta.mat, which parsers must skip
    synsets[n, 0] = (n + 1, "n89999999", "synthetic root", "all classes", n,
                     np.arange(1, n + 1, dtype=np.uint16), 1, 0)
    mat = io.BytesIO()
    scipy.io.savemat(mat, {"synsets": synsets})
    # savemat stamps "Created on: <now>" into the 116-byte text header; a fixed
    # header keeps the archive byte-identical across runs (and across a second boundary)
    header = b"MATLAB 5.0 MAT-file, synthetic ILSVRC-2012 devkit (alexnet.data.synthetic)"
    mat.seek(0)
    mat.write(header.ljust(116, b" "))
    gt = "".join(f"{ids[label]}\n" for label in val_labels).encode()
    with open(path, "wb") as f, gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", mat.getvalue())
        _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", gt)


def write_synthetic_ilsvrc(out: str | os.PathLike, classes: int = 10, train_per_class: int = 120,
                           val_per_class: int = 20, seed: int = 0, progress: bool = True) -> Path:
    """Write the three ILSVRC-2012 archives of the synthetic dataset into `out`.

    Deterministic in (classes, train_per_class, val_per_class, seed): the same
    arguments give byte-identical archives. Skips the work if all three exist
    with a marker of the same arguments."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "SYNTHETIC"
    stamp = f"classes={classes} train_per_class={train_per_class} val_per_class={val_per_class} seed={seed}\n"
    if marker.exists() and marker.read_text() == stamp and all((out / f).exists() for f in (TRAIN_TAR, VAL_TAR, DEVKIT)):
        return out
    specs = [class_spec(k) for k in range(classes)]
    bar = progress_bar(total=classes * (train_per_class + val_per_class), unit="img",
                       desc="synthetic ILSVRC", enabled=progress)
    tmp = out / (TRAIN_TAR + ".tmp")
    with tarfile.open(tmp, "w") as outer:
        for k, spec in enumerate(specs):
            rng = np.random.default_rng([seed, 1, k])
            inner_buf = io.BytesIO()
            with tarfile.open(fileobj=inner_buf, mode="w") as inner:
                for j in range(train_per_class):
                    _add(inner, f"{spec['wnid']}_{j}.JPEG", _jpeg(render(k, rng)))
                    bar.update()
            _add(outer, f"{spec['wnid']}.tar", inner_buf.getvalue())
    os.replace(tmp, out / TRAIN_TAR)

    rng = np.random.default_rng([seed, 2])
    val_labels = rng.permutation(np.repeat(np.arange(classes), val_per_class)).tolist()
    tmp = out / (VAL_TAR + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        for i, label in enumerate(val_labels):
            _add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", _jpeg(render(label, rng)))
            bar.update()
    os.replace(tmp, out / VAL_TAR)
    bar.close()
    _write_devkit(out / DEVKIT, specs, val_labels)
    marker.write_text(stamp)
    return out
