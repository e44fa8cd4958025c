"""Where images come from: the official ILSVRC-2012 archives, or any ImageFolder
tree (Imagenette, ILSVRC-2010 arranged by class, your own classes).

A source is turned into `Source`: the class list (sorted by wnid / folder name,
as `torchvision.datasets.ImageNet` and `ImageFolder` order them) and, per split,
a list of *units* of work that `prepare` can do in parallel and resume one by
one. A unit only *describes* where its bytes are; reading happens in workers:

    ("inner_tar", tar_path, offset, size, label)   one synset tar inside the train tar
    ("tar_members", tar_path, [(name, offset, size, label), ...])   val images
    ("files", [(path, label), ...])                an ImageFolder chunk

ILSVRC-2012 archives are read in place (no extraction). The devkit is parsed
as `torchvision.datasets.imagenet.parse_devkit_archive` does (leaf synsets of
meta.mat, one ILSVRC2012_ID per validation image), but torchvision's parsers
are nested in a function that insists on the official archive's md5 and drops
the ILSVRC2012_IDs that a submission file needs, so they are not reusable here.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import scipy.io

# The official ILSVRC-2012 file names
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
UNIT_SIZE = 500  # images per unit for flat lists (val tar, ImageFolder)


class DatasetError(ValueError):
    """A dataset path or file that cannot be used; the message says what to do."""


@dataclass
class Source:
    kind: str  # "ilsvrc2012" or "folder"
    root: str
    classes: list[dict]  # [{"wnid", "words", "ilsvrc_id"}] in label order
    units: dict[str, list[tuple]] = field(default_factory=dict)  # split → units


def _chunks(items: list, n: int = UNIT_SIZE) -> list[list]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def ilsvrc2012(root: str | os.PathLike) -> Source:
    """The three official archives in `root` (ILSVRC2012_img_train.tar,
    ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--imagenet {root}: no such directory; give the folder that holds "
                           f"{TRAIN_TAR}, {VAL_TAR} and {DEVKIT}")
    missing = [f for f in (TRAIN_TAR, VAL_TAR, DEVKIT) if not (root / f).is_file()]
    if missing:
        raise DatasetError(f"{root}: missing {', '.join(missing)}; download them from image-net.org "
                           f"(ILSVRC2012, 'Training images (Task 1 & 2)', 'Validation images', "
                           f"'Development kit (Task 1 & 2)') into this folder")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tarfile.open(root / DEVKIT) as tar:
                tar.extractall(tmp, filter="data")
            data = Path(tmp) / "ILSVRC2012_devkit_t12" / "data"
            synsets = scipy.io.loadmat(data / "meta.mat", squeeze_me=True)["synsets"]
            leaves = [s for s in synsets if int(s["num_children"]) == 0]
            idx_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves}
            wnid_to_classes = {str(s["WNID"]): str(s["words"]) for s in leaves}
            truth = (data / "ILSVRC2012_validation_ground_truth.txt").read_text()
            val_ids = [int(line) for line in truth.split()]
        except (OSError, tarfile.TarError, KeyError, ValueError) as e:
            raise DatasetError(f"{root / DEVKIT}: not a usable ILSVRC-2012 devkit "
                               f"(needs data/meta.mat and data/ILSVRC2012_validation_ground_truth.txt): {e}; "
                               "download it again") from None
    wnids = sorted(wnid_to_classes)
    label_of = {w: i for i, w in enumerate(wnids)}
    id_of = {w: i for i, w in idx_to_wnid.items()}
    classes = [{"wnid": w, "words": wnid_to_classes[w], "ilsvrc_id": id_of[w]} for w in wnids]

    units = {"train": [], "val": []}
    try:
        with tarfile.open(root / TRAIN_TAR) as tar:
            for m in tar:
                wnid = Path(m.name).stem
                if not m.isfile() or wnid not in label_of:
                    raise DatasetError(f"{root / TRAIN_TAR}: unexpected member {m.name!r} (expected one "
                                       "<wnid>.tar per class); is this the ILSVRC-2012 train archive?")
                units["train"].append(("inner_tar", str(root / TRAIN_TAR), m.offset_data, m.size,
                                       label_of[wnid]))
        with tarfile.open(root / VAL_TAR) as tar:
            members = sorted((m for m in tar if m.isfile()), key=lambda m: m.name)
    except tarfile.TarError as e:
        raise DatasetError(f"{root}: cannot read the archives ({e}); is a download incomplete?") from None
    if len(members) != len(val_ids):
        raise DatasetError(f"{root / VAL_TAR}: {len(members)} images but the devkit's ground truth has "
                           f"{len(val_ids)} labels; the archive or devkit is from another release")
    val = [(m.name, m.offset_data, m.size, label_of[idx_to_wnid[i]]) for m, i in zip(members, val_ids)]
    units["val"] = [("tar_members", str(root / VAL_TAR), chunk) for chunk in _chunks(val)]
    if not units["train"]:
        raise DatasetError(f"{root / TRAIN_TAR}: contains no class archives")
    return Source("ilsvrc2012", str(root), classes, units)


def _list_images(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_folder(root: str | os.PathLike, splits: tuple[str, ...] = ("train", "val", "test")) -> Source:
    """An ImageFolder tree: root/train/<class>/*.JPEG and root/val/<class>/*.JPEG
    (and optionally root/test/<class>/...). Classes come from train/ in sorted
    order; a val/test class that train/ lacks is an error."""
    root = Path(root)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DatasetError(f"--data {root}: expected an ImageFolder tree with train/<class>/ and "
                           "val/<class>/ folders of images (e.g. Imagenette); not found")
    names = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not names:
        raise DatasetError(f"{root / 'train'}: no class folders inside")
    label_of = {n: i for i, n in enumerate(names)}
    units = {}
    for split in splits:
        d = root / split
        if not d.is_dir():
            continue
        items = []
        for cls in sorted(c.name for c in d.iterdir() if c.is_dir()):
            if cls not in label_of:
                raise DatasetError(f"{d / cls}: class {cls!r} is not in train/; rename or remove it")
            files = _list_images(d / cls)
            if not files and split == "train":
                raise DatasetError(f"{d / cls}: empty class folder (no images with extensions "
                                   f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
            items += [(str(p), label_of[cls]) for p in files]
        if not items:
            raise DatasetError(f"{d}: no images found in its class folders")
        units[split] = [("files", chunk) for chunk in _chunks(items)]
    classes = [{"wnid": n, "words": n, "ilsvrc_id": None} for n in names]
    return Source("folder", str(root), classes, units)


def open_source(imagenet: str | None = None, folder: str | None = None) -> Source:
    if (imagenet is None) == (folder is None):
        raise DatasetError("give exactly one of --imagenet DIR (ILSVRC-2012 archives) or "
                           "--data DIR (ImageFolder)")
    return ilsvrc2012(imagenet) if imagenet is not None else image_folder(folder)


def read_unit(unit: tuple):
    """Yield (name, bytes, label) for every image of a unit. Runs in workers."""
    kind = unit[0]
    if kind == "files":
        for path, label in unit[1]:
            with open(path, "rb") as f:
                yield path, f.read(), label
    elif kind == "tar_members":
        _, tar_path, members = unit
        with open(tar_path, "rb") as f:
            for name, offset, size, label in members:
                f.seek(offset)
                yield name, f.read(size), label
    elif kind == "inner_tar":
        _, tar_path, offset, size, label = unit
        with open(tar_path, "rb") as f:
            f.seek(offset)
            with tarfile.open(fileobj=io.BytesIO(f.read(size))) as inner:
                for m in sorted((m for m in inner if m.isfile()), key=lambda m: m.name):
                    yield m.name, inner.extractfile(m).read(), label
    else:
        raise ValueError(f"unknown unit kind {kind!r}")
