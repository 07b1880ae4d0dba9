"""The embedded demo dataset: ImageNet-style folders cut from scikit-image's photographs.

Nothing is downloaded: every class is one of the photographs (or textures)
that ship inside the scikit-image wheel (``skimage.data``), and each image of
the class is a random view of it: a crop of 15-60 % of its area with a random
aspect ratio, rescaled so that its shorter side is 80-96 px, maybe mirrored,
with brightness, contrast and saturation jitter, saved as a JPEG (quality 95).
The images are larger than the demo models' 64 px crop and not square, so the
loader's resize (shorter side to 73 px) and center crop are exercised as on
ImageNet.

Train and val images are independent random draws (separate random streams per
split and class), so no val image is a train image, but views of the same
photograph overlap: val accuracy measures how well a model recognizes new
views of the ten scenes, not generalization to unseen scenes. That is all the
demo needs: two models with high clean accuracy whose robustness can be
compared.

>>> from robustbench_gcp.data.demo_images import DEMO_CLASSES, build_demo_dataset
>>> DEMO_CLASSES[:3]
('astronaut', 'brick', 'chelsea')
>>> root = build_demo_dataset(Path("/tmp/demo"))  # doctest: +SKIP
>>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
['demo-dataset.json', 'train', 'val']
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from robustbench_gcp.errors import DataError, OutputError, check_integer

__all__ = [
    "DEMO_CLASSES",
    "DEMO_VERSION",
    "MARKER_NAME",
    "TRAIN_PER_CLASS",
    "VAL_PER_CLASS",
    "build_demo_dataset",
    "demo_sources",
]

#: bump when the generated images change (the marker file records it)
DEMO_VERSION = 1
#: class names = the ``skimage.data`` functions they come from, in class-index (sorted) order
DEMO_CLASSES: tuple[str, ...] = (
    "astronaut",
    "brick",
    "chelsea",
    "coffee",
    "coins",
    "colorwheel",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "rocket",
)
TRAIN_PER_CLASS = 60
VAL_PER_CLASS = 10
#: the file that marks a finished dataset (generator version, seed, sizes)
MARKER_NAME = "demo-dataset.json"

#: fraction of the photograph's area a view covers, and the range of log aspect ratios
_SCALE = (0.15, 0.6)
_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
#: shorter side of the saved images, inclusive
_SHORT_SIDE = (80, 96)
_SPLITS = (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS))
_JPEG_QUALITY = 95


def demo_sources(classes: tuple[str, ...] = DEMO_CLASSES) -> dict[str, np.ndarray]:
    """The source photographs as ``(H, W, 3)`` uint8 RGB arrays, by class name.

    Gray images are repeated over three channels; an alpha channel is composited
    on white. All of them ship inside the scikit-image wheel (no download).

    Raises:
        DataError: scikit-image is missing or a photograph cannot be loaded.
    """
    try:
        import skimage.data
    except ImportError as error:  # pragma: no cover - a dependency of imagecorruptions
        raise DataError(f"the demo dataset needs scikit-image ({error}); pip install scikit-image") \
            from None
    sources = {}
    for name in classes:
        loader: Callable[[], np.ndarray] | None = getattr(skimage.data, name, None)
        if loader is None:
            raise DataError(f"skimage.data has no image '{name}'")
        try:
            image = np.asarray(loader())
        except (OSError, ModuleNotFoundError, ValueError) as error:
            raise DataError(f"cannot load skimage.data.{name}(): {error}") from None
        if image.dtype != np.uint8:
            raise DataError(f"skimage.data.{name}() is {image.dtype}, expected uint8")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        elif image.shape[2] == 4:
            alpha = image[..., 3:].astype(np.float32) / 255.0
            image = np.round(image[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        sources[name] = np.ascontiguousarray(image[..., :3])
    return sources


def _view(source: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One random view of ``source``: crop, rescale, mirror, color jitter."""
    height, width = source.shape[:2]
    area = height * width * rng.uniform(*_SCALE)
    ratio = math.exp(rng.uniform(*_LOG_RATIO))
    w = min(width, max(1, round(math.sqrt(area * ratio))))
    h = min(height, max(1, round(math.sqrt(area / ratio))))
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    short = int(rng.integers(_SHORT_SIDE[0], _SHORT_SIDE[1] + 1))
    size = (short, max(short, round(short * h / w))) if w <= h else \
        (max(short, round(short * w / h)), short)
    crop = Image.fromarray(source[top:top + h, left:left + w])
    image = np.asarray(crop.resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    if rng.random() < 0.5:
        image = image[:, ::-1]
    brightness, contrast, saturation = rng.uniform(0.75, 1.25, size=3)
    image = image * brightness
    image = (image - image.mean()) * contrast + image.mean()
    gray = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    image = (image - gray[..., None]) * saturation + gray[..., None]
    return Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))


def _marker(seed: int) -> dict:
    return {
        "generator": "robustbench_gcp.data.demo_images",
        "version": DEMO_VERSION,
        "seed": seed,
        "classes": list(DEMO_CLASSES),
        "train_per_class": TRAIN_PER_CLASS,
        "val_per_class": VAL_PER_CLASS,
    }


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(folder: Path, seed: int) -> None:
    sources = demo_sources()
    for split_index, (split, count) in enumerate(_SPLITS):
        for class_index, name in enumerate(DEMO_CLASSES):
            rng = np.random.default_rng([seed, split_index, class_index])
            out = folder / split / name
            out.mkdir(parents=True)
            for i in range(count):
                _view(sources[name], rng).save(out / f"{name}_{split}_{i:04d}.JPEG",
                                               quality=_JPEG_QUALITY)
    (folder / MARKER_NAME).write_text(json.dumps(_marker(seed), indent=2) + "\n", encoding="utf-8")


def build_demo_dataset(root: str | Path, *, seed: int = 0) -> Path:
    """Write the demo dataset to ``root`` (``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``).

    The images depend only on ``seed`` (and :data:`DEMO_VERSION`): the same seed
    gives the same files. A finished dataset is recognized by its marker file
    (:data:`MARKER_NAME`, holding the version and seed) and returned as it is;
    one made by another version or seed is replaced. The folders are written
    next to ``root`` and moved into place at the end, so an interrupted build
    never leaves a half-written dataset behind. Takes a few seconds.

    Args:
        root: the dataset folder; created if missing. It must be empty, absent
            or a demo dataset already.
        seed: random seed of the views (a non-negative integer).

    Returns:
        ``root``; ``root / "val"`` is the evaluation split (10 classes x
        :data:`VAL_PER_CLASS` images), ``root / "train"`` the training split.

    Raises:
        ValueError: ``seed`` is not a non-negative integer.
        DataError: ``root`` holds other files, or a photograph cannot be loaded.
        OutputError: the folder cannot be written (read-only, full).

    Example:
        >>> from robustbench_gcp.data.folders import scan_folder
        >>> root = build_demo_dataset(Path("/tmp/demo"), seed=0)  # doctest: +SKIP
        >>> scan_folder(root / "val", class_order="sorted").classes == DEMO_CLASSES  # doctest: +SKIP
        True
    """
    seed = check_integer("seed", seed, low=0, error=ValueError)
    root = Path(root).expanduser()
    if _read_marker(root) == _marker(seed):
        return root
    if root.exists():
        if not root.is_dir():
            raise DataError(f"demo dataset path {root} is a file, expected a folder")
        if any(root.iterdir()) and _read_marker(root) is None:
            raise DataError(
                f"folder {root} is not empty and is not a demo dataset; give an empty or new "
                "folder for the demo dataset"
            )
    _remove_stale_staging(root)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    except OSError as error:
        raise _unwritable(root, error) from None
    try:
        try:
            _write(staging, seed)
        except OSError as error:
            raise _unwritable(root, error) from None
        if _read_marker(root) == _marker(seed):  # another process finished first
            return root
        if root.exists():
            shutil.rmtree(root)
        try:
            os.replace(staging, root)
        except OSError:
            if _read_marker(root) != _marker(seed):  # not a concurrent build of the same data
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _remove_stale_staging(root: Path, age_seconds: float = 3600) -> None:
    """Remove the staging folders of builds of ``root`` killed before their end (SIGKILL: the
    ``finally`` never ran), those untouched for ``age_seconds``: a build under way in another
    process writes into its own for a few seconds."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(root.parent):
            staging = re.fullmatch(rf"\.{re.escape(root.name)}-[a-z0-9_]{{8}}", entry.name)  # mkdtemp's
            old = staging and time.time() - entry.stat().st_mtime > age_seconds
            if old and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)


def _unwritable(root: Path, error: OSError) -> OutputError:
    return OutputError(f"cannot write the demo dataset in {root.parent}: {error.strerror or error}")
