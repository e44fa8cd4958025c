"""The embedded default dataset: a deterministic synthetic ImageNet, written in
the ILSVRC-2012 archive format so that the real ingestion path runs with no
download.

    python -m tools.prepare --synthetic --classes 10 --train-per-class 120 --raw data/synthetic-g4

writes, exactly as the official release is laid out:

    ILSVRC2012_img_train.tar     one tar per synset, <wnid>/<wnid>_<k>.JPEG inside
    ILSVRC2012_img_val.tar       ILSVRC2012_val_<8 digits>.JPEG, flat
    ILSVRC2012_devkit_t12.tar.gz ILSVRC2012_devkit_t12/data/meta.mat (synsets) and
                                 .../data/ILSVRC2012_validation_ground_truth.txt

Generator 4 (the default) has the image statistics that can be measured on
ImageNet (alexnet/data/image_stats.py; `python -m tools.image_stats CACHE`
prints them beside ImageNet's): RGB PCA eigenvalue ratios λ2/λ1, λ3/λ1 near
ImageNet's 0.086 and 0.021 (luminance carries most of the variance), a
luminance power spectrum whose slope from 4 to 100 cycles per image is within
−2 ± 0.3 whether each one-cycle ring or each octave weighs the same (−2.11 and
−1.73: not a clean power law; the gratings lift 8–32 cycles up to 2.9 times the
fitted line, where crops of two photographs stay within 1.6), and pixels that do not
name the class (pixel 5-NN label agreement near chance).
Each image:
- clutter: a dead-leaves composition, opaque discs of radii p(r) ∝ r⁻³ (the
  occlusion model whose spectrum falls like photographs'), luminance 0.35–0.65,
  muted colours whose chroma grows with the disc's size (colour sits in the
  low frequencies) and mixes ImageNet's two chromatic axes in its proportions,
  with a fine texture: 1/f noise above 48 cycles per image (the discs' edges
  alone fall faster than 1/f² above ~30 cycles, their smallest radius being
  1 px: without it the slope is −3.4);
- 3–4 class objects, untextured but for their grating: the class's shape (one
  of 8) filled with a sine grating of the class's orientation and period,
  amplitude 0.3–0.45 about a mean of 0.35–0.65, in random muted colours: shape
  and texture define the class, no hue does; position, size, rotation jitter
  and period vary per object, and the period grows with the object's size (a
  class's gratings spread over most of an octave: no sharp spectral peak);
- occlusion: up to 20 discs in front of everything;
- illumination: smooth 1/f shading below 4 cycles (log gain, sd 0.35), a
  slant across the image, a brightness and a colour cast per image, then
  sensor noise.
The first 10 classes use 5 orientations 36° apart and 2 periods an octave
apart (10 and 20 pixels of the prepared image at the mean object size), so
any two differ in texture. With the object's size and the jitter, a 10-pixel
class's gratings span 6–16 pixels and a 20-pixel class's 12–31: the two
overlap, and about one object in eight of the fine classes falls under 8
pixels (twice conv1's stride of 4), where conv1's output aliases it.

Generator 3 (in git history, commit 2bafc40; results/history/ holds what it
made) had the same design with square-wave gratings of 6 and 12 pixels at
high contrast and low-contrast clutter: its spectrum peaked about ten times
above the power law at the gratings' frequencies and met the slope target
only when the rings weighed equally (−2.00; −1.26 per octave).

Generator 2 (`--generator 2`, for the results folders it made): dead-leaves
backgrounds, 0–2 distracting gratings, one object whose class sets its shape,
its grating and its hue (one hue per class: colour alone names the class).

Images vary in size and aspect. The task is far easier than ImageNet, and its
numbers are not ImageNet numbers. Generation runs on all cores; every image
is a function of (generator, seed, split, class or index, image number) alone.

The ILSVRC2012_IDs are assigned in reverse wnid order, so a parser that
confused ID order with sorted-wnid order would mislabel every class.
"""

from __future__ import annotations

import colorsys
import gzip
import io
import multiprocessing
import os
import tarfile
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.io
from PIL import Image, ImageDraw

from ..progress import bar as progress_bar
from .image_stats import LUMA  # ITU-R 601, PIL's "L"
from .sources import DEVKIT, TRAIN_TAR, VAL_TAR

SHAPES = ("disc", "square", "triangle", "cross", "ring", "star", "bar", "diamond")


DEFAULT_SIZE = (10, 120, 20)  # classes, train per class, val per class
GENERATOR_VERSION = 4  # 1: shapes on gradient backgrounds; 2: dead-leaves backgrounds, gratings, a hue
# per class; 3: low-chroma clutter, 3–4 objects, no class hue; 4: 3's with ImageNet's spectrum (issue 48)
GENERATORS = (2, 4)  # the ones this module still makes (1 and 3 are in git history: commits 0e8dad6, 2bafc40)


def synthetic_name(classes: int, train_per_class: int, val_per_class: int, seed: int = 0) -> str:
    """Results folder name for a synthetic dataset: 'synthetic' for the default, else its size."""
    if (classes, train_per_class, val_per_class, seed) == (*DEFAULT_SIZE, 0):
        return "synthetic"
    return f"synthetic-{classes}x{train_per_class}x{val_per_class}" + (f"-seed{seed}" if seed else "")


def data_name(classes: int, train_per_class: int, val_per_class: int, seed: int = 0,
              generator: int = GENERATOR_VERSION) -> str:
    """Folder name of a synthetic set's archives and cache (data/<name>, cache/<name>): its results
    name and the generator that made it, 'synthetic-g4' for the default. A new generator, a new set.
    tools.prepare and run_all both name the set by this function."""
    return f"{synthetic_name(classes, train_per_class, val_per_class, seed)}-g{generator}"


DEFAULT_DATA = data_name(*DEFAULT_SIZE)  # 'synthetic-g4': the embedded default's data and cache folder


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
        return [poly([(-1, -.3), (1, -.3), (1, .3), (-1, .3)]),
                poly([(-.3, -1), (.3, -1), (.3, 1), (-.3, 1)])]
    if shape == "star":
        ang = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return [poly(list(zip(rad * np.cos(ang), rad * np.sin(ang))))]
    if shape == "bar":
        return [poly([(-1, -.25), (1, -.25), (1, .25), (-1, .25)])]
    if shape == "diamond":
        return [poly([(0, -1), (.6, 0), (0, 1), (-.6, 0)])]
    raise ValueError(shape)


def _leaf_radii(u: np.ndarray, r_min: float, r_max: float) -> np.ndarray:
    """Dead-leaves radii from uniform draws u: the inverse CDF of p(r) ∝ r⁻³ on [r_min, r_max]."""
    return (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5


def _dead_leaves(w: int, h: int, rng: np.random.Generator, leaves: int = 500) -> Image.Image:
    """Opaque discs dropped one over another in random order, radii ∝ r⁻³ on
    [5 px, 0.4·min(w, h)], colours of random lightness and muted saturation:
    a dead-leaves image (edges at every orientation and scale, ~1/f² power)."""
    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.uniform(40, 200, 3)))
    draw = ImageDraw.Draw(img)
    r_min, r_max = 5.0, 0.4 * min(w, h)
    u = rng.random(leaves)
    radii = _leaf_radii(u, r_min, r_max)
    xs, ys = rng.uniform(0, w, leaves), rng.uniform(0, h, leaves)
    grey = rng.uniform(20, 235, (leaves, 1))
    sat = rng.uniform(0, 0.6, (leaves, 1))
    colours = grey * (1 - sat) + rng.uniform(0, 255, (leaves, 3)) * sat
    for x, y, r, c in zip(xs, ys, radii, colours):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in c))
    return img


def _wave(w: int, h: int, angle: float, period: float, phase: float) -> np.ndarray:
    """sin of a plane wave across an h×w image: crests at `angle` (radians), `period` pixels apart."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / max(period, 2.5) + phase)


def _grating(w: int, h: int, angle: float, period: float, phase: float) -> np.ndarray:
    """A square wave in [0, 1] across the image, stripes at `angle` (radians), h×w×1."""
    return (_wave(w, h, angle, period, phase) > 0).astype(np.float64)[..., None]


def _mask(w: int, h: int, draw_fn) -> np.ndarray:
    m = Image.new("L", (w, h), 0)
    draw_fn(ImageDraw.Draw(m))
    return np.asarray(m, dtype=np.float64)[..., None] / 255.0


def _shape_mask(shape: str, w: int, h: int, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    """h×w×1 in {0, 1}: the shape centred at (cx, cy), radius r, turned by rot."""
    def draw_fn(draw):
        if shape in ("disc", "ring"):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            if shape == "ring":
                draw.ellipse([cx - .55 * r, cy - .55 * r, cx + .55 * r, cy + .55 * r], fill=0)
        else:
            for p in _shape_polygon(shape, cx, cy, r, rot):
                draw.polygon(p, fill=255)
    return _mask(w, h, draw_fn)


def render_g2(k: int, rng: np.random.Generator) -> Image.Image:
    """One image of class k, generator 2."""
    spec = class_spec(k)
    w, h = int(rng.integers(240, 400)), int(rng.integers(240, 400))
    img = np.asarray(_dead_leaves(w, h, rng), dtype=np.float64)

    for _ in range(int(rng.integers(0, 3))):  # distractors: gratings of random orientation, period, colours
        pr = rng.uniform(0.08, 0.2) * min(w, h)
        px, py = rng.uniform(pr, w - pr), rng.uniform(pr, h - pr)
        m = _mask(w, h, lambda d: d.rectangle([px - pr, py - pr, px + pr, py + pr], fill=255))
        g = _grating(w, h, rng.uniform(0, np.pi), rng.uniform(4, 16), rng.uniform(0, 2 * np.pi))
        tex = g * rng.uniform(0, 255, 3) + (1 - g) * rng.uniform(0, 255, 3)
        img = img * (1 - m) + tex * m

    # the object: the class's shape, filled with the class's grating in the class's hue
    r = rng.uniform(0.2, 0.42) * min(w, h)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    rot = np.deg2rad(rng.normal(0, 12))
    mask = _shape_mask(spec["shape"], w, h, cx, cy, r, rot)
    hue = (spec["hue"] + rng.normal(0, 0.025)) % 1.0
    bright = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0))) * 255
    dark = bright * rng.uniform(0.15, 0.4)
    period = spec["stripe_period"] * rng.uniform(0.85, 1.15) * r / 60
    g = _grating(w, h, np.deg2rad(spec["stripe_angle"]) + rot, period, rng.uniform(0, 2 * np.pi))
    fg = g * bright + (1 - g) * dark
    img = img * (1 - mask) + fg * mask + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- generator 4

G4_PERIODS = (10.0, 20.0)  # grating periods at the mean object size, in pixels of the prepared 256×256 image
LEAVES, R_MIN = 3000, 1.0  # clutter discs per image; their smallest radius, in prepared pixels
CLUTTER_LUM = (0.35, 0.65)  # the clutter discs' luminance
CLUTTER_CHROMA, OBJECT_CHROMA = 0.5, 0.4  # chroma scales (_low_chroma) of clutter and objects
OBJECT_SIZE = (0.17, 0.28)  # a class object's radius, as a share of the image's shorter side
OBJECTS = (3, 5)  # class objects per image: 3 or 4
OBJECT_LUM, OBJECT_CONTRAST = (0.35, 0.65), (0.3, 0.45)  # a grating's mean luminance and its amplitude
PERIOD_JITTER = (0.8, 1.25)  # an object's period: the class's × this × its radius over the mean radius
GRAIN, GRAIN_FROM = 0.18, 48.0  # fine texture: a 1/f field's standard deviation, above this many cycles/image
SHADING, SHADING_BELOW = 0.35, 4.0  # illumination: a 1/f field's sd (log gain), below this many cycles/image
NOISE = 0.012  # sensor noise, standard deviation (pixels in 0–1)


_G4_ANGLES: list[int] = []  # class k's grating angle in degrees, made on demand by _g4_angle


def _g4_angle(k: int) -> int:
    """The grating angle of class k, in degrees. Classes 0–9: 5 orientations 36° apart. Each later
    class: the whole degree farthest from the angles of the earlier classes that share its shape and
    period (the first such degree), so that no two classes differ by the ±3° rotation jitter alone
    (100 classes: at least 22° apart; tests/test_data.py)."""
    while len(_G4_ANGLES) <= k:
        j = len(_G4_ANGLES)
        if j < 10:
            _G4_ANGLES.append((j % 5) * 36)
            continue
        same = [_G4_ANGLES[i] for i in range(j)
                if i % len(SHAPES) == j % len(SHAPES) and (i // 5) % 2 == (j // 5) % 2]
        gap = lambda a: min(min(abs(a - b), 180 - abs(a - b)) for b in same) if same else 180  # noqa: E731
        _G4_ANGLES.append(max(range(180), key=gap))
    return _G4_ANGLES[k]


def class_spec_g4(k: int) -> dict:
    """The fixed attributes of class k, generator 4: a shape and a grating (orientation, period).
    The first 10 classes: 5 orientations 36° apart × 2 periods an octave apart, so two classes
    with the same period differ by at least 36° and any two differ in texture; 8 shapes on top.
    Later classes: _g4_angle keeps those with the same shape and period apart in orientation."""
    return {
        "wnid": f"n{90000000 + k:08d}",
        "shape": SHAPES[k % len(SHAPES)],
        "stripe_angle": _g4_angle(k),
        "stripe_period": G4_PERIODS[(k // 5) % 2],
    }


def class_name_g4(spec: dict) -> str:
    return f"{spec['shape']} s{spec['stripe_angle']:03d} p{spec['stripe_period']:g}"


# ImageNet's RGB PCA directions (the lighting-noise code's eigenvectors): warm–cool, then green–magenta,
# with standard deviations in the ratio √(0.0045 / 0.0188) ≈ 0.49
CHROMA_AXES = np.array([[0.7192, -0.0045, -0.6948], [0.4009, -0.8140, 0.4203]])
CHROMA_SPREAD = np.array([1.0, 0.49])


def _low_chroma(lum: np.ndarray, chroma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n colours (n×3, 0–1) of luminance `lum`, pushed `chroma` (a scale) along a random mix of the
    two chromatic axes of ImageNet's pixels, luminance removed: colours of the given lightness and a
    muted hue, blue–yellow more often than green–magenta, as in photographs."""
    v = (rng.normal(size=(len(lum), 2)) * CHROMA_SPREAD) @ CHROMA_AXES
    v -= np.outer(v @ LUMA / (LUMA @ LUMA), LUMA)
    return np.clip(lum[:, None] + chroma[:, None] * v, 0, 1)


def _leaves(img: Image.Image, rng: np.random.Generator, n: int, r_min: float, r_max: float,
            lum: tuple[float, float], chroma: float) -> None:
    """Draw n opaque discs onto img, radii ∝ r⁻³ on [r_min, r_max], luminance uniform in `lum`,
    chroma up to `chroma`, larger for larger discs (colour sits in the low frequencies)."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    u = rng.random(n)
    radii = _leaf_radii(u, r_min, r_max)
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    size = np.log(radii / r_min) / np.log(r_max / r_min)  # 0 for the smallest disc, 1 for the largest
    colours = (_low_chroma(rng.uniform(*lum, n), chroma * rng.random(n) * size, rng) * 255).astype(int)
    for x, y, r, c in zip(xs.tolist(), ys.tolist(), radii.tolist(), colours.tolist()):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(c))


def _one_over_f(w: int, h: int, rng: np.random.Generator, above: float = 0.0,
                below: float = np.inf) -> np.ndarray:
    """h×w Gaussian noise with amplitude ∝ 1/f (power ∝ 1/f², natural images' fall-off), kept above
    `above` and below `below` cycles per image (the shorter side; smooth Gaussian edges), sd 1. Made
    on a grid of FFT-friendly size (scipy.fft.next_fast_len) and cropped."""
    H, W = scipy.fft.next_fast_len(h, real=True), scipy.fft.next_fast_len(w, real=True)
    f = np.hypot(*np.meshgrid(scipy.fft.fftfreq(H) * min(w, h), scipy.fft.rfftfreq(W) * min(w, h),
                              indexing="ij"))
    gain = (1 - np.exp(-(f / above) ** 2) if above else 1) * np.exp(-(f / below) ** 2) / np.maximum(f, 1)
    field = scipy.fft.irfft2(scipy.fft.rfft2(rng.standard_normal((H, W))) * gain, (H, W))[:h, :w]
    return field / field.std()


def render_g4(k: int, rng: np.random.Generator) -> Image.Image:
    """One image of class k, generator 4 (the module docstring describes it)."""
    spec = class_spec_g4(k)
    w, h = int(rng.integers(240, 400)), int(rng.integers(240, 400))
    s = min(w, h) / 256  # source pixels per pixel of the prepared image
    base = _low_chroma(rng.uniform(*CLUTTER_LUM, 1), np.array([0.1]), rng)[0] * 255
    canvas = Image.new("RGB", (w, h), tuple(int(c) for c in base))
    _leaves(canvas, rng, LEAVES, R_MIN * s, 0.4 * min(w, h), CLUTTER_LUM, CLUTTER_CHROMA)  # clutter
    # with fine texture (the discs' edges alone fall faster than 1/f² above ~30 cycles: R_MIN)
    grain = GRAIN * _one_over_f(w, h, rng, above=GRAIN_FROM)[..., None]
    img = np.asarray(canvas, dtype=np.float32) / 255 + grain

    mean_r = np.mean(OBJECT_SIZE) * min(w, h)
    for _ in range(int(rng.integers(*OBJECTS))):  # the class objects, drawn in their bounding boxes
        r = rng.uniform(*OBJECT_SIZE) * min(w, h)
        cx, cy = rng.uniform(0.5 * r, w - 0.5 * r), rng.uniform(0.5 * r, h - 0.5 * r)
        x0, y0 = max(0, int(cx - r) - 1), max(0, int(cy - r) - 1)
        x1, y1 = min(w, int(cx + r) + 2), min(h, int(cy + r) + 2)
        rot = np.deg2rad(rng.normal(0, 3))
        mask = _shape_mask(spec["shape"], x1 - x0, y1 - y0, cx - x0, cy - y0, r, rot)
        # a sine grating whose period grows with the object (texture scales with distance), so the
        # class's periods spread over most of an octave instead of peaking in the spectrum
        period = spec["stripe_period"] * s * rng.uniform(*PERIOD_JITTER) * r / mean_r
        angle = np.deg2rad(spec["stripe_angle"]) + rot
        g = 0.5 + 0.5 * _wave(x1 - x0, y1 - y0, angle, period, rng.uniform(0, 2 * np.pi))[..., None]
        mid, amp = rng.uniform(*OBJECT_LUM), rng.uniform(*OBJECT_CONTRAST)
        light, dark = _low_chroma(np.array([mid + amp, mid - amp]), rng.uniform(0, OBJECT_CHROMA, 2), rng)
        box = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = box * (1 - mask) + (g * light + (1 - g) * dark) * mask

    occluders = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")  # a few discs in front
    _leaves(occluders, rng, int(rng.integers(0, 21)), R_MIN * s, 0.1 * min(w, h), (0.2, 0.8), CLUTTER_CHROMA)
    img = np.asarray(occluders, dtype=np.float32) / 255
    # illumination: smooth shading, a slant across the image, a brightness and a colour cast; sensor noise
    slant = (1 + rng.normal(0, 0.12) * (np.arange(w) / w - 0.5)
             + rng.normal(0, 0.12) * (np.arange(h)[:, None] / h - 0.5))
    shade = np.exp(SHADING * _one_over_f(w, h, rng, below=SHADING_BELOW))
    gain = ((rng.uniform(0.75, 1.2) * slant * shade)[..., None] * (1 + rng.normal(0, 0.04, 3)))
    img = img * gain.astype(np.float32) + NOISE * rng.standard_normal((h, w, 3), dtype=np.float32)
    return Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8), "RGB")


RENDER = {2: render_g2, 4: render_g4}
SPEC = {2: class_spec, 4: class_spec_g4}  # a class's fixed attributes, per generator
NAME = {2: class_name, 4: class_name_g4}  # its name in meta.mat


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # deterministic archives
    tar.addfile(info, io.BytesIO(data))


def _write_devkit(path: Path, specs: list[dict], val_labels: list[int], names: list[str]) -> None:
    n = len(specs)
    ids = {i: n - i for i in range(n)}  # ILSVRC2012_ID: reverse of sorted-wnid order
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    synsets = np.zeros((n + 1, 1), dtype=[(f, "O") for f in fields])
    for i, s in enumerate(specs):
        synsets[i, 0] = (ids[i], s["wnid"], names[i], "synthetic class", 0,
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


def _train_class(args) -> bytes:
    """The inner tar of class k's training images (runs in a worker)."""
    seed, k, n, generator = args
    spec, render = SPEC[generator](k), RENDER[generator]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as inner:
        for j in range(n):
            _add(inner, f"{spec['wnid']}_{j}.JPEG", _jpeg(render(k, np.random.default_rng([seed, 1, k, j]))))
    return buf.getvalue()


def _val_image(args) -> bytes:
    seed, i, label, generator = args
    return _jpeg(RENDER[generator](label, np.random.default_rng([seed, 2, i])))


def write_synthetic_ilsvrc(out: str | os.PathLike, classes: int = 10, train_per_class: int = 120,
                           val_per_class: int = 20, seed: int = 0, progress: bool = True,
                           workers: int | None = None, generator: int = GENERATOR_VERSION) -> Path:
    """Write the three ILSVRC-2012 archives of the synthetic dataset into `out`,
    rendering on `workers` processes (default: all cores).

    Deterministic in (classes, train_per_class, val_per_class, seed, generator):
    the same arguments give byte-identical archives, whatever
    the number of workers. Skips the work if all three exist with a marker of
    the same arguments."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "SYNTHETIC"
    if generator not in GENERATORS:
        raise ValueError(f"generator {generator}: this module makes generators {GENERATORS}")
    stamp = (f"generator={generator} classes={classes} train_per_class={train_per_class} "
             f"val_per_class={val_per_class} seed={seed}\n")
    written = all((out / f).exists() for f in (TRAIN_TAR, VAL_TAR, DEVKIT))
    if marker.exists() and marker.read_text() == stamp and written:
        return out
    marker.unlink(missing_ok=True)
    specs = [SPEC[generator](k) for k in range(classes)]
    val_labels = np.random.default_rng([seed, 2]).permutation(
        np.repeat(np.arange(classes), val_per_class)).tolist()
    bar = progress_bar(total=classes * train_per_class + len(val_labels), unit="img",
                       desc="synthetic ILSVRC", enabled=progress)
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with (ctx or multiprocessing).Pool(workers or os.cpu_count() or 1) as pool:
        tmp = out / (TRAIN_TAR + ".tmp")
        with tarfile.open(tmp, "w") as outer:
            jobs = [(seed, k, train_per_class, generator) for k in range(classes)]
            for spec, inner in zip(specs, pool.imap(_train_class, jobs)):  # in class order
                _add(outer, f"{spec['wnid']}.tar", inner)
                bar.update(train_per_class)
        os.replace(tmp, out / TRAIN_TAR)
        tmp = out / (VAL_TAR + ".tmp")
        with tarfile.open(tmp, "w") as tar:
            jobs = [(seed, i, label, generator) for i, label in enumerate(val_labels)]
            for i, data in enumerate(pool.imap(_val_image, jobs, chunksize=8)):
                _add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", data)
                bar.update()
        os.replace(tmp, out / VAL_TAR)
    bar.close()
    _write_devkit(out / DEVKIT, specs, val_labels, [NAME[generator](s) for s in specs])
    marker.write_text(stamp)
    return out
