"""The datasets the tool evaluates on, how each is recognised and read, and its corruption preset.

ImageNet (image folders at any size, resized and cropped as the model says), CIFAR-10 and
CIFAR-100 (the python pickle batches, or folders of 32 px images), Tiny-ImageNet (its ``val``
folder with ``val_annotations.txt``, or folders of 64 px images). Each names the corruption
parameters its -C benchmark was made with (:data:`corruptions.PRESETS`), and whether its CE
is normalized by AlexNet (ImageNet-C only: the other benchmarks report unnormalized errors).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from robustbench_gcp.data.folders import ImageList, first_image, first_released_file, scan_folder
from robustbench_gcp.errors import ConfigError, DataError


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset.

    Attributes:
        name: its key (``cifar10``): ``--dataset``, the ``dataset:`` of a suite, ``datasets:``.
        title: how reports name it (``CIFAR-10``).
        preset: the corruption parameters of its -C / -P benchmark.
        image_size: the side of its images (None: any size, resized by the model's preprocessing).
        class_order: how class folders become labels (``imagenet`` wnids, or ``sorted`` names).
        released: the name of its released corruption benchmark (``CIFAR-10-C``).
        alexnet_normalized: whether CE is normalized by AlexNet's errors (ImageNet-C's mCE).
        classes: the classes of a model whose labels are not ImageNet's 1000 on ImageNet images (an
            ImageNet subset's own classes: :func:`label_space`); None for the dataset's own.
        forced_preset: another dataset's corruption parameters forced on these images
            (``--preset``): another benchmark, which AlexNet's published errors do not normalize.
    """

    name: str
    title: str
    preset: str
    image_size: int | None
    class_order: str
    released: str
    alexnet_normalized: bool = False
    classes: int | None = None
    forced_preset: str | None = None

    @property
    def released_size(self) -> int:
        """The side of its released -C images and -P frames (ImageNet-C / -P: 224 px), which
        are read as they are, whatever the model's input size."""
        return self.image_size or 224


DATASETS = {
    "imagenet": DatasetInfo("imagenet", "ImageNet", "imagenet", None, "imagenet", "ImageNet-C", True),
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", "cifar", 32, "sorted", "CIFAR-10-C"),
    "cifar100": DatasetInfo("cifar100", "CIFAR-100", "cifar", 32, "sorted", "CIFAR-100-C"),
    "tinyimagenet": DatasetInfo("tinyimagenet", "Tiny-ImageNet", "tinyimagenet", 64, "sorted",
                                "Tiny-ImageNet-C"),
}


#: the classes of ImageNet's label space, in which AlexNet's published ImageNet-C errors were made
IMAGENET_CLASSES = 1000


def label_space(dataset: DatasetInfo, num_classes: int | None) -> DatasetInfo:
    """``dataset`` as a model of ``num_classes`` classes sees it: ImageNet images classified into
    another label space than ImageNet's 1000 classes (an ImageNet subset's own 10 classes) are
    errors on another task, which AlexNet's published errors do not normalize: the benchmark's
    figures are then unnormalized, as CIFAR-10-C's, or a stored run's. Others unchanged."""
    if not dataset.alexnet_normalized or num_classes in (None, IMAGENET_CLASSES):
        return dataset
    return dataclasses.replace(dataset, title=f"{dataset.title} ({num_classes} classes)",
                               alexnet_normalized=False, classes=num_classes)


def with_preset(dataset: DatasetInfo, preset: str | None) -> DatasetInfo:
    """``dataset``'s images corrupted with ``preset``'s parameters: unchanged for its own (or None);
    another's is another benchmark than the released one, whose AlexNet normalization (ImageNet-C's,
    made with ImageNet-C's parameters) then does not apply."""
    if preset is None or preset == dataset.preset:
        return dataset
    return dataclasses.replace(dataset, title=f"{dataset.title} ({preset} parameters)",
                               alexnet_normalized=False, forced_preset=preset)


def get_dataset(name: str | None, classes: int | None = None, preset: str | None = None) -> DatasetInfo:
    """The dataset ``name``; ImageNet for None (a suite or a cell that names none); with
    ``classes``, in that :func:`label_space`; with ``preset``, corrupted with its parameters
    (:func:`with_preset`).

    Raises:
        UnknownNameError: not one of :data:`DATASETS` (the closest is suggested).
    """
    from robustbench_gcp.errors import UnknownNameError

    name = name or "imagenet"
    if name not in DATASETS:
        raise UnknownNameError("dataset", name, DATASETS)
    return with_preset(label_space(DATASETS[name], classes), preset)


def dataset_mark(dataset: DatasetInfo) -> dict:
    """What a generated or released cell's variant says of its dataset: ``{"dataset": name}``,
    nothing for ImageNet (so cells stored before datasets existed keep their keys); and
    :func:`classes_mark`."""
    mark = {} if dataset.name == "imagenet" else {"dataset": dataset.name}
    return {**mark, **classes_mark(dataset)}


def classes_mark(dataset: DatasetInfo) -> dict:
    """``{"classes": K}`` in another :func:`label_space` than the dataset's own, else nothing: what
    a cell's variant says of a model of other classes than ImageNet's 1000 on its images."""
    return {"classes": dataset.classes} if dataset.classes is not None else {}


def roundtrip_words(dataset: DatasetInfo) -> tuple[str, str]:
    """(short, long) names of the storage round trip of ``dataset``'s released files, for
    reports: JPEG q85 files (ImageNet-C, Tiny-ImageNet-C) or uint8 arrays (CIFAR-C)."""
    from corruptions.storage import STORAGE_QUALITY

    quality = STORAGE_QUALITY[dataset.preset]
    if quality is None:
        return "uint8 round trip", "uint8 round trip, as the released .npy"
    return "JPEG round trip", f"uint8 + JPEG q{quality} round trip"


def _image_sizes(root: Path, count: int = 8) -> set[tuple[int, int]]:
    """The (width, height) of the first image of each of the first ``count`` class folders of
    ``root`` (an unreadable image counts as no size: the loader names it later)."""
    from PIL import Image

    sizes = set()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders[:count]:
        first = first_image(folder)
        if first is None:
            continue
        try:
            with Image.open(first) as image:
                sizes.add(image.size)
        except (OSError, Image.DecompressionBombError):
            sizes.add((0, 0))
    return sizes


def detect_dataset(path: str | Path, *, by_size: bool = True) -> str | None:
    """The dataset a clean-data path holds, from its layout alone (None: not recognised, e.g.
    ImageNet folders of any size).

    CIFAR pickle batches (``test_batch``: CIFAR-10; ``test``: CIFAR-100), a Tiny-ImageNet-200
    root or its ``val`` folder, or (``by_size``) class folders of 32x32 (CIFAR: 10 classes or
    fewer are CIFAR-10) or 64x64 (Tiny-ImageNet) images (the first image of each of the first 8
    class folders, all that size).
    """
    path = Path(path).expanduser()
    try:
        return _detect(path, by_size)
    except OSError:  # a folder this process cannot enter, a name too long: the reader names it
        return None


class DataDetection:
    """What the data at ``path`` shows of its dataset, each look taken at most once: ``layout``,
    the dataset of its own layout (CIFAR pickles, a Tiny-ImageNet-200 tree), and ``found``, that
    or the dataset its images' size shows (:func:`detect_dataset`). None throughout without data."""

    def __init__(self, path: str | Path | None):
        self.path = path

    @functools.cached_property
    def layout(self) -> str | None:
        return None if self.path is None else detect_dataset(self.path, by_size=False)

    @functools.cached_property
    def found(self) -> str | None:
        return None if self.path is None else self.layout or detect_dataset(self.path)


def _detect(path: Path, by_size: bool) -> str | None:
    from robustbench_gcp.data.array_files import cifar_test_file
    from robustbench_gcp.data.tiny_imagenet import is_tiny_imagenet

    if not path.exists():
        return None
    file = cifar_test_file(path)
    if file is not None:
        return "cifar10" if file.name == "test_batch" else "cifar100"
    if is_tiny_imagenet(path):
        return "tinyimagenet"
    if not path.is_dir() or not by_size:
        return None
    sizes = _image_sizes(path)
    size = sizes.pop() if len(sizes) == 1 else None  # every class's first image that size
    if size == (32, 32):
        classes = sum(1 for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        return "cifar10" if classes <= 10 else "cifar100"
    if size == (64, 64):
        return "tinyimagenet"
    return None


def scan_dataset(dataset: DatasetInfo, path: str | Path, labels: str | Path | None = None, *,
                 class_order: str | None = None) -> ImageList:
    """The clean images of ``dataset`` at ``path``: its own layout (CIFAR pickles, Tiny-ImageNet
    val) when the path has it, else class folders in the dataset's class order.

    Raises:
        DataError: the path cannot be read as that dataset (the file and the problem named).
    """
    from robustbench_gcp.data.array_files import is_cifar_source, scan_cifar
    from robustbench_gcp.data.tiny_imagenet import is_tiny_imagenet, scan_tiny_imagenet_val

    path = Path(path).expanduser()
    if dataset.preset == "cifar" and is_cifar_source(path):
        kind = detect_dataset(path)
        if kind != dataset.name:
            raise DataError(f"{path} holds {DATASETS[kind].title}, not {dataset.title}: "
                            f"use --dataset {kind}")
        _own_labels(path, "CIFAR python batches", labels, class_order)
        return scan_cifar(path)
    if dataset.name == "tinyimagenet" and is_tiny_imagenet(path):
        _own_labels(path, "Tiny-ImageNet-200 (val_annotations.txt, wnids.txt)", labels, class_order)
        return scan_tiny_imagenet_val(path)
    # --labels label a flat folder: the dataset's folder order does not apply (given, it is refused)
    order = class_order or ("imagenet" if labels is not None else dataset.class_order)
    return scan_folder(path, labels, class_order=order)


def _own_labels(path: Path, what: str, labels, class_order: str | None) -> None:
    """``--labels`` or ``--class-order`` for data that carries its own labels: a usage error."""
    given = "--labels" if labels is not None else f"--class-order {class_order}" if class_order else None
    if given:
        raise ConfigError(f"`{given}` applies to a folder of images; {path} holds {what}, whose labels "
                          "are their own")


def check_image_size(dataset: DatasetInfo, images: ImageList, *, forced: bool,
                     corrupted: bool = True, asked: str | None = None) -> None:
    """Refuse corruption parameters made for another resolution than the data's (ImageNet-C's
    on 32 px images ...; only where the run ``corrupted`` images, and unless ``forced``:
    ``--preset`` given), and a small dataset's images of another size, whatever the preset (its
    images are read at their size: ``--preset`` chooses parameters, not a size).

    ``asked``: what chose ``dataset`` where it was not ``--dataset`` or the data (``suite X's
    dataset:``), named in the error.

    Raises:
        DataError: the data's images are another dataset's size.
    """
    if not len(images) or images.reader != "files":
        return
    from PIL import Image

    first = images.paths()[0]
    try:
        with Image.open(first) as image:
            size = image.size
    except (OSError, Image.DecompressionBombError):
        return  # the loader names unreadable files
    small = {info.image_size: info for info in DATASETS.values() if info.image_size}
    side = size[0] if size[0] == size[1] else None
    if dataset.image_size is None and side in small and corrupted and not forced:
        other = small[side]
        raise DataError(f"the images are {side}x{side} ({first}): {other.title}-sized, but the suite uses "
                        f"{dataset.released}'s corruption parameters (made for 224 px); give "
                        f"--dataset {other.name}, or --preset {dataset.preset} to use them anyway")
    if dataset.image_size is not None and size != (dataset.image_size, dataset.image_size):
        right = small[side].name if side in small else "imagenet"
        chosen = f" ({asked} {dataset.name})" if asked else ""
        raise DataError(f"the images are {size[0]}x{size[1]} ({first}), but {dataset.title} images{chosen} "
                        f"are {dataset.image_size}x{dataset.image_size}; give --dataset {right}"
                        + " (--preset chooses the corruption parameters, not the images' size)" * forced)


def check_released_size(folder: Path, dataset: DatasetInfo) -> None:
    """The released images are read as they are, each of the benchmark's size (224 px for
    ImageNet-C, 64 px for Tiny-ImageNet-C): a first image of another size is an error before any
    compute (a larger one was centre-cropped without a word; the others are checked as they are read).

    Raises:
        DataError: naming the file, its size and the size expected.
    """
    from PIL import Image

    crop = dataset.released_size
    first = first_released_file(folder)
    if first is None:
        return  # an empty cell folder is named when its images are listed
    try:
        with Image.open(first) as image:
            width, height = image.size
    except (OSError, Image.DecompressionBombError):
        return  # an unreadable file is named when it is read
    if (width, height) != (crop, crop):
        # the released folders of another dataset (ImageNet-C's 224 px, Tiny-ImageNet-C's 64 px, of at
        # most 200 classes: downsampled ImageNet-64x64-C's 1000 wnid folders are no Tiny-ImageNet-C)
        other = next((info for info in DATASETS.values() if info.preset != "cifar" and width == height
                      == info.released_size != crop), None)
        if other is not None and other.image_size is not None \
                and sum(path.is_dir() for path in folder.iterdir()) > 200:
            other = None
        hint = (f"{other.released}'s size; give --dataset {other.name}" if other is not None
                else "is --corrupted-dir the right folder?")
        raise DataError(f"released image {first} is {width}x{height}, not one of the {crop}x{crop} "
                        f"images of {dataset.released}: {hint}")
