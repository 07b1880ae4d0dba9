"""Image lists from ImageNet-style folders, flat val folders and released ImageNet-C.

An :class:`ImageList` is the ordered list of images of a run: relative names,
labels and each image's index in the full (unlimited) folder, which seeds its
randomness. Labels come from the class folders in one of two explicit orders
(:data:`CLASS_ORDERS`): ``imagenet`` (the default) gives folders named by
ImageNet wnids the standard indices (the sorted order of the 1000 ImageNet-1k
wnids), so a folder holding a subset of the classes still gets the right
labels; ``sorted`` numbers the folders in sorted name order, like torchvision's
ImageFolder, for models trained on other classes. Hidden folders and folders
without images are not classes.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from robustbench_gcp.errors import ConfigError, DataError, absent, counted, listed, not_utf8

# torchvision.datasets.folder.IMG_EXTENSIONS
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: How class folders become labels: standard ImageNet-1k indices of wnid folders, or sorted names.
CLASS_ORDERS = ("imagenet", "sorted")
_NAMED = 5  # odd folders named in an error before "and N more"


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in their standard (sorted) class order."""
    text = resources.files("robustbench_gcp").joinpath("resources/imagenet_wnids.txt").read_text()
    return tuple(text.split())


#: Tiny-ImageNet's val labels file (data.tiny_imagenet reads it; a folder of its images is named here)
ANNOTATIONS_FILE = "val_annotations.txt"


@lru_cache(maxsize=1)
def wnid_index() -> dict[str, int]:
    """Each ImageNet-1k wnid's standard class index."""
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


def check_utf8(path: str | Path, what: str) -> None:
    """Refuse a name that is not UTF-8 (:func:`~robustbench_gcp.errors.not_utf8`): a traceback came
    once the images were scanned.

    Raises:
        DataError: naming ``what`` and the path, its odd bytes as escapes.
    """
    shown = not_utf8(path)
    if shown is not None:
        raise DataError(f"{what} {shown} has a name that is not UTF-8: rename it")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


@dataclass(frozen=True)
class ImageList:
    """The images of a run, in a fixed order.

    Attributes:
        root: the folder the names are relative to.
        names: relative paths (``wnid/file.JPEG`` or ``file.JPEG``).
        labels: class index of each image.
        indices: index of each image in the full sorted folder (seeds its randomness).
        classes: class names by index (wnids, or folder names in sorted order).
        labelling: "imagenet" (canonical wnid indices), "folders" (sorted folder
            names), "wnids" (a ground-truth file naming wnids: ``LOC_val_solution.csv``, canonical
            indices too), "file" (a ground-truth file of class indices), "dataset" (a dataset's
            own files, whose classes are all the dataset's: CIFAR's batches, released CIFAR-C
            arrays, Tiny-ImageNet's annotations) or "none" (released CIFAR-10-P sequences: no
            labels, which flip rates do not use).
        reader: how images are read: "files" (one image file per name, under ``root``),
            "cifar-pickle" (rows of the CIFAR batch file ``root``) or "npy" (rows of
            released CIFAR-C ``.npy`` files in the folder ``root``).
    """

    root: Path
    names: tuple[str, ...]
    labels: tuple[int, ...]
    indices: tuple[int, ...]
    classes: tuple[str, ...]
    labelling: str
    source: str = field(default="", compare=False)
    reader: str = field(default="files")

    def __len__(self) -> int:
        return len(self.names)

    def paths(self, root: Path | None = None) -> list[Path]:
        base = self.root if root is None else root
        return [base / name for name in self.names]

    def fingerprint(self) -> str:
        """A hash of names, labels and indices: the identity of the data in the store."""
        digest = hashlib.sha256()
        for name, label, index in zip(self.names, self.labels, self.indices):
            digest.update(f"{name}\t{label}\t{index}\n".encode())
        return digest.hexdigest()

    def subset(self, positions: Sequence[int]) -> ImageList:
        return ImageList(
            root=self.root,
            names=tuple(self.names[p] for p in positions),
            labels=tuple(self.labels[p] for p in positions),
            indices=tuple(self.indices[p] for p in positions),
            classes=self.classes,
            labelling=self.labelling,
            source=self.source,
            reader=self.reader,
        )

    def limit(self, n: int | None) -> ImageList:
        """A deterministic, class-balanced subset of ``n`` images (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return self.subset(balanced_subset(self.labels, n))


def balanced_subset(labels: Sequence[int], n: int) -> list[int]:
    """Positions of ``n`` images, taken round-robin over classes, in folder order.

    Round r takes the r-th image of every class (classes in index order) until
    ``n`` images are taken; the result is sorted. Deterministic, and as balanced
    as the class sizes allow.
    """
    if n < 0:
        raise ValueError(f"`limit` should be >= 0. Got {n}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_class[label].append(position)
    chosen: list[int] = []
    round_ = 0
    classes = sorted(by_class)
    while len(chosen) < n:
        took = False
        for label in classes:
            members = by_class[label]
            if round_ < len(members):
                chosen.append(members[round_])
                took = True
                if len(chosen) == n:
                    break
        if not took:
            break
        round_ += 1
    return sorted(chosen)


def scan_folder(root: str | Path, labels_file: str | Path | None = None, *,
                extensions: tuple[str, ...] = IMG_EXTENSIONS, class_order: str = "imagenet",
                released: bool = False) -> ImageList:
    """List the images of an ImageNet-style folder (``<root>/<class>/<image>``).

    A class is a folder of ``root`` holding at least one image, at any depth; names starting
    with "." (``.ipynb_checkpoints``, macOS ``._*`` files) are skipped at every level.
    With ``class_order="imagenet"`` every class folder must be an ImageNet-1k wnid and gets
    its standard index; ``"sorted"`` numbers the folders of ``root`` in sorted name order,
    whatever their names, those without images included (torchvision's ImageFolder: a class
    left empty keeps its index, the next ones theirs). ``released``: a released cell
    (a folder that is not a wnid is refused as such). Symbolic links are followed (a class
    folder may link elsewhere), except those leading back into a folder being walked (a
    loop); a file reached by several names is listed once, under the first name in walk
    order (files of a folder, sorted, then its subfolders, sorted).

    With ``labels_file``, ``root`` is a flat folder of images (the ImageNet val
    layout) and labels come from the file: the official ``LOC_val_solution.csv``
    or a ``<file name> <class index>`` list.

    Raises:
        DataError: missing or empty folder, flat folder without labels, bad labels file,
            class folders that are not wnids (``imagenet`` order), one file in two classes.
        ValueError: ``class_order`` is not one of :data:`CLASS_ORDERS`.
    """
    if class_order not in CLASS_ORDERS:
        raise ValueError(f"`class_order` should be 'imagenet' or 'sorted'. Got {class_order!r}")
    root = Path(root).expanduser()
    check_utf8(root, "data folder")
    try:
        exists, is_dir = root.exists(), root.is_dir()
    except OSError as error:  # a parent this process cannot enter, a name too long
        raise DataError(f"cannot read data folder {root}: {error.strerror or error}") from None
    if not exists:
        raise DataError(f"data folder {root} {absent(root)}")
    if not is_dir:
        raise DataError(f"data path {root} is not a folder")
    if labels_file is not None:
        if class_order != "imagenet":  # a usage error (exit status 2), as other flags that clash
            raise ConfigError(f"--class-order {class_order} and --labels exclude each other: the first "
                              "numbers class folders, the second labels a flat folder of images")
        return _scan_flat(root, Path(labels_file).expanduser())
    folders = sorted(subfolders(root))
    seen: dict[object, tuple[str, str]] = {}  # a file's (device, inode) -> (class folder, name)
    found = {name: list(_walk_images(root, name, extensions, seen)) for name in folders}
    class_dirs = [name for name in folders if found[name]]
    top = [entry for entry in os.scandir(root) if not entry.name.startswith(".")]
    n_flat = sum(1 for entry in top if entry.is_file() and entry.name.lower().endswith(extensions))
    if class_dirs and n_flat:  # a half-sorted val folder: those images were left out, unsaid
        raise DataError(f"data folder {root} holds {counted(n_flat, 'image')} at its top beside "
                        f"{counted(len(class_dirs), 'class folder')}: they have no class. Move them into "
                        "their class folders (an unfinished sort of the val images?) or out of the folder")
    if not class_dirs:
        hint = _layout_hint(root)
        if n_flat:
            raise DataError(hint or (
                f"data folder {root} holds {counted(n_flat, 'image')} but no class folders: for the flat "
                "ImageNet val layout give the ground truth with --labels "
                "(LOC_val_solution.csv or a '<file> <index>' list)"
            ))
        videos = extensions == (".mp4",)  # ImageNet-P's released videos
        kind, layout = ("video", "<wnid>/<video>.mp4") if videos else ("image", "<root>/<class>/<image>")
        folder = "released folder" if released else "data folder"
        if folders:
            raise DataError(f"{folder} {root} has {counted(len(folders), 'class folder')} but no {kind} "
                            f"files ({', '.join(extensions)})")
        if hint:
            raise DataError(hint)
        if top:
            raise DataError(f"{folder} {root} holds no {kind} files ({', '.join(extensions)}) and no "
                            f"class folders: expected {layout} files")
        raise DataError(f"{folder} {root} is empty: expected {layout} files")
    if class_order == "sorted":
        _check_split_folders(root, class_dirs)
        classes, labelling = tuple(folders), "folders"
        class_index = {name: i for i, name in enumerate(folders)}
    else:
        _check_wnid_folders(root, class_dirs, released)
        classes, labelling = imagenet_wnids(), "imagenet"
        class_index = {name: wnid_index()[name] for name in class_dirs}
    names = [name for class_name in class_dirs for name in found[class_name]]
    labels = [class_index[class_name] for class_name in class_dirs for _ in found[class_name]]
    return ImageList(root, tuple(names), tuple(labels), tuple(range(len(names))), classes,
                     labelling, source=str(root))


def _layout_hint(root: Path) -> str:
    """What to give instead of a folder that holds another dataset's layout ("" for none)."""
    if (root.parent / ANNOTATIONS_FILE).is_file():
        return (f"data folder {root} is the images of Tiny-ImageNet's val folder, whose labels are in "
                f"{root.parent / ANNOTATIONS_FILE}: give {root.parent} (or the tiny-imagenet-200 folder)")
    binary = [name for name in ("test_batch.bin", "data_batch_1.bin", "test.bin") if (root / name).is_file()]
    if binary:
        return (f"data folder {root} holds CIFAR's binary version ({binary[0]}): gcp-robust reads the "
                "python version (cifar-10-python.tar.gz: test_batch; cifar-100-python.tar.gz: test)")
    return ""


def _check_wnid_folders(root: Path, class_dirs: Sequence[str], released: bool = False) -> None:
    """Raise :class:`DataError` naming the class folders that are not ImageNet-1k wnids."""
    wnids = wnid_index()
    odd = [name for name in class_dirs if name not in wnids]
    if not odd:
        return
    if released:  # released files are labelled by their wnid folders: no other order to offer
        raise DataError(f"released folder {root} has folders with images that are not ImageNet-1k "
                        f"wnids: {listed(odd, _NAMED)}; move them out of it")
    _check_split_folders(root, odd)
    message = f"data folder {root} has class folders that are not ImageNet-1k wnids: {listed(odd, _NAMED)}"
    n_wnids = len(class_dirs) - len(odd)
    if n_wnids:
        raise DataError(f"{message} (beside {n_wnids} wnid folders): move them out of the folder, or "
                        "pass --class-order sorted to number all folders by their sorted names")
    raise DataError(f"{message}. For a model trained on these folders, pass --class-order sorted "
                    "(labels in sorted folder order, like torchvision's ImageFolder)")


def _check_split_folders(root: Path, candidates: Sequence[str]) -> None:
    """Refuse a dataset's root, whose train / val folders (among ``candidates``) hold ImageNet
    class folders: taken for classes, every image of a split would get the split's label."""
    wnids = wnid_index()
    splits = [name for name in candidates if subfolders(root / name) & wnids.keys()]
    if not splits:
        return
    val = [name for name in candidates if name.lower() in ("val", "validation")]
    example = (f"--data {root / val[0]}" if val and val[0] in splits else
               f"--data {root / val[0]} --labels LOC_val_solution.csv (its images are flat)" if val else
               f"--data {root / splits[-1]}")
    raise DataError(f"data folder {root} holds folders of ImageNet class folders "
                    f"({listed(splits, _NAMED)}), not class folders: give one of them, e.g. {example}")


def _walk_images(root: Path, class_name: str, extensions: tuple[str, ...],
                 seen: dict[object, tuple[str, str]]) -> Iterator[str]:
    """The image names (relative to ``root``) under ``root/class_name``, in walk order.

    Depth first: a folder's files (sorted), then its subfolders (sorted). Symbolic links
    are followed unless they lead to a folder on the current path (its real path is
    ``root`` or an ancestor: a loop, skipped). ``seen`` maps every file listed so far, by its
    device and inode (a symbolic link's target, a hard link's file: one file by two names), to
    its (class folder, name): a file seen again in the same class is skipped, in another class it
    is an error.

    Raises:
        DataError: a file is reached from two class folders.
    """
    def walk(folder: Path, rel: str, ancestors: frozenset[str]) -> Iterator[str]:
        real = os.path.realpath(folder)
        if real in ancestors:
            return
        ancestors = ancestors | {real}
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            raise DataError(f"cannot list folder {folder}: {error.strerror or error}") from None
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                subfolders.append(entry)
            elif entry.name.lower().endswith(extensions):
                if not entry.is_file() and os.path.exists(entry.path):
                    # a named pipe (mkfifo) or device: opening it waited forever, the run hung
                    raise DataError(f"data folder {root}: {entry.path} is not a regular file (a named pipe, "
                                    "socket or device): move it out of the folder")
                name = f"{rel}/{entry.name}"
                check_utf8(entry.path, "image file")
                # a file's real path is its folder's unless the file itself is a link
                target = (os.path.realpath(entry.path) if entry.is_symlink()
                          else os.path.join(real, entry.name))
                try:
                    info = entry.stat()  # (a hard link has no other real path than its own)
                    identity: object = (info.st_dev, info.st_ino)
                except OSError:  # a broken link: named when it is read
                    identity = target
                first = seen.setdefault(identity, (class_name, name))
                if first == (class_name, name):
                    yield name
                elif first[0] != class_name:
                    raise DataError(f"data folder {root}: {target} is in class folders {first[0]} and "
                                    f"{class_name} (as {first[1]} and {name}): an image has one label")
        for entry in subfolders:
            yield from walk(Path(entry.path), f"{rel}/{entry.name}", ancestors)

    yield from walk(root / class_name, class_name, frozenset({os.path.realpath(root)}))


def read_labels_file(path: Path) -> tuple[dict[str, int], bool]:
    """Map image file names to class indices from a ground-truth file; and whether the file
    named wnids (so that the indices are ImageNet-1k's).

    Accepts ``LOC_val_solution.csv`` (``ImageId,PredictionString`` with the wnid
    first) and whitespace-separated ``<file> <index>`` lists (caffe's val.txt).
    """
    if not path.is_file():
        raise DataError(f"labels file {path} " + ("is a folder" if path.is_dir() else "does not exist"))
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as Excel saves a CSV
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read labels file {path}: {error}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"labels file {path} is empty")
    mapping: dict[str, int] = {}
    lines_of: dict[str, int] = {}  # the line that labelled each name

    def add(name: str, index: int, number: int) -> None:
        if name in mapping and mapping[name] != index:  # the last line won, silently
            raise DataError(f"{path}, line {number}: {name} is labelled {index}, but line "
                            f"{lines_of[name]} labelled it {mapping[name]}: an image has one label")
        mapping[name] = index
        lines_of.setdefault(name, number)

    if lines[0].replace(" ", "").lower().startswith("imageid,predictionstring"):
        wnids = wnid_index()
        for number, row in enumerate(csv.reader(lines[1:]), start=2):
            if len(row) < 2 or not row[1].split():
                raise DataError(f"{path}, line {number}: expected 'ImageId,PredictionString'")
            wnid = row[1].split()[0]
            if wnid not in wnids:
                raise DataError(f"{path}, line {number}: '{wnid}' is not an ImageNet-1k wnid")
            add(row[0], wnids[wnid], number)
        return mapping, True
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(
                f"{path}, line {number}: expected '<file> <class index>' or the "
                f"LOC_val_solution.csv header, got {line.strip()[:60]!r}"
            )
        index = int(parts[1])
        if not 0 <= index < 1000:
            raise DataError(f"{path}, line {number}: class index {index} is outside 0..999")
        add(parts[0], index, number)
    return mapping, False


def _scan_flat(root: Path, labels_file: Path) -> ImageList:
    files = sorted(entry.name for entry in os.scandir(root)
                   if entry.is_file() and is_image_file(entry.name) and not entry.name.startswith("."))
    if not files:
        folders = subfolders(root)
        if folders:
            raise DataError(f"--labels is for a flat folder of images (the ImageNet val layout); data folder "
                            f"{root} has {counted(len(folders), 'subfolder')} and no images at its top: for "
                            "class folders, drop --labels (the folder names are the labels)")
        raise DataError(f"data folder {root} has no image files")
    sorted_into = [name for name in sorted(subfolders(root)) if first_image(root / name) is not None]
    if sorted_into:  # a half-sorted val folder: --labels reads the top, the sorted images were left out
        raise DataError(f"data folder {root} holds {counted(len(files), 'image')} at its top and images in "
                        f"{counted(len(sorted_into), 'subfolder')} ({listed(sorted_into, _NAMED)}): --labels "
                        "labels the images at its top only. Finish the sort of the val images into class "
                        "folders and drop --labels, or move the subfolders out of the folder")
    for name in files:
        check_utf8(root / name, "image file")
    mapping, by_wnid = read_labels_file(labels_file)
    names, labels = [], []
    for name in files:
        key = name if name in mapping else Path(name).stem
        if key not in mapping:
            raise DataError(f"image {root / name} has no label in {labels_file}")
        names.append(name)
        labels.append(mapping[key])
    return ImageList(root, tuple(names), tuple(labels), tuple(range(len(names))), imagenet_wnids(),
                     "wnids" if by_wnid else "file", source=str(root))


def corrupted_cell_dir(root: Path, corruption: str, severity: int) -> Path:
    """``<root>/<corruption>/<severity>``: one cell of the released ImageNet-C."""
    return root / corruption / str(severity)


def perturbed_dir(root: Path, perturbation: str, difficulty: int) -> Path:
    """``<root>/<p>`` or, for the noise perturbations at difficulty 2 / 3, ``<root>/<p>_<d>``: the
    videos of one ImageNet-P / Tiny-ImageNet-P cell."""
    from corruptions import NOISE_PERTURBATIONS

    if perturbation in NOISE_PERTURBATIONS and difficulty > 1:
        return root / f"{perturbation}_{difficulty}"
    return root / perturbation


def perturbed_npy(root: Path, perturbation: str, difficulty: int) -> Path:
    """A released CIFAR-10-P file: ``<root>/<p>.npy`` (``<root>/<p>_<d>.npy`` for the noise
    perturbations at difficulty 2 / 3, as the folders of ImageNet-P)."""
    folder = perturbed_dir(root, perturbation, difficulty)
    return folder.with_name(folder.name + ".npy")


def scan_imagenet_c(root: str | Path, corruption: str, severity: int) -> ImageList:
    """The image list of one released ImageNet-C cell (``<root>/<c>/<s>/<wnid>/<file>``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"ImageNet-C folder {root} does not exist")
    cell = corrupted_cell_dir(root, corruption, severity)
    if not cell.is_dir():
        raise DataError(
            f"ImageNet-C folder {root} has no {corruption}/{severity}: expected the released layout "
            "<root>/<corruption>/<severity>/<wnid>/<image>"
        )
    if not subfolders(cell) and _holds_files(cell):  # --labels is for --data: say the layout
        raise DataError(f"released cell {cell} holds files but no wnid folders: the released layout "
                        "is <root>/<corruption>/<severity>/<wnid>/<image>")
    return scan_folder(cell, class_order="imagenet", released=True)  # released files are wnid folders


def scan_videos(folder: str | Path) -> ImageList:
    """The videos of one released ImageNet-P folder (``<folder>/<wnid>/<stem>.mp4``)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"ImageNet-P folder {folder} does not exist: expected the released layout "
            "<root>/<perturbation>[_2|_3]/<wnid>/<image>.mp4"
        )
    return scan_folder(folder, extensions=(".mp4",), class_order="imagenet", released=True)


def check_released(root: Path, folders: Iterable[Path], flags: str,
                   extensions: tuple[str, ...] = IMG_EXTENSIONS) -> None:
    """Every released folder of a selection exists under ``--corrupted-dir`` and holds the class
    folders of the first, before any compute: the images of a run are the first folder's (a class
    folder missing there would drop its images from every cell, unseen; one missing elsewhere is
    named here rather than as an unreadable image halfway through). Hidden folders and folders
    without images or videos (a partial extraction's) are no class folders. A file of
    ``extensions`` (the suite's: images, ImageNet-P's videos) at the top of a folder has no class.

    Raises:
        DataError: naming the missing folders (the first six) and the flags that choose them, or
            the first folder whose class folders differ from the first one's.
    """
    folders = list(dict.fromkeys(folders))
    missing = [str(f.relative_to(root)) for f in folders if not f.is_dir()]
    if missing:
        arrays = sorted(path.name for path in root.glob("*.npy"))
        hint = (f" ({root} holds {listed(arrays, 3)}: released CIFAR-10-C / -P arrays, read with --dataset "
                "cifar10 or cifar100)" if arrays and len(missing) == len(folders) else "")
        raise DataError(f"{root} lacks {len(missing)} of the selected folders ({listed(missing)}); pick "
                        f"the ones you have with {flags}{hint}")
    if not folders:
        return
    first = {name for name in subfolders(folders[0]) if _holds_media(folders[0] / name, extensions)}
    for folder in folders[1:]:
        # the first folder's are refused as --data's are (scan_folder, by the same extensions); another's
        # went unsaid (helper-235)
        with os.scandir(folder) as entries:
            loose = sorted(entry.name for entry in entries if not entry.name.startswith(".")
                           and entry.is_file() and entry.name.lower().endswith(extensions))
        if loose:
            what = "video" if extensions == (".mp4",) else "image"
            raise DataError(f"released folder {folder.relative_to(root)} holds {counted(len(loose), what)} "
                            f"at its top beside its class folders ({listed(loose, 3)}): they have no class. "
                            "Move them into their class folders or out of the folder")
        names = subfolders(folder)
        # a class folder of the first cell is taken to hold files here too (Suite.check_files
        # lists them)
        classes = {name for name in names if name in first or _holds_media(folder / name, extensions)}
        if classes != first:
            lacking, extra = sorted(first - classes), sorted(classes - first)
            said = "; ".join(f"{what} {len(names)}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
                             for what, names in (("lacks", lacking), ("has beyond it", extra)) if names)
            raise DataError(f"{folder.relative_to(root)} and {folders[0].relative_to(root)} hold other class "
                            f"folders with images ({folder.relative_to(root)} {said}): every released "
                            f"folder holds the same images; complete them, or pick complete ones with "
                            f"{flags}")


def check_released_files(folder: Path, paths: Sequence[Path], *, first: Path | None = None,
                         whole: bool = False, extensions: tuple[str, ...] = IMG_EXTENSIONS) -> None:
    """Each of ``paths`` (the files of the run's images in the released ``folder``) exists; one
    listing per class folder.

    Args:
        first: the released folder whose images the run evaluates (no ``--data``); None: the
            images are ``--data``'s.
        whole: the run evaluates every image of ``first`` (no ``--limit``): a file of
            ``extensions`` in ``folder`` that is not among ``paths`` is one that ``first`` lacks
            (its partial extraction would shrink every cell, unseen).

    Raises:
        DataError: how many are missing (or beyond), the first few named (a class folder missing
            whole said so).
    """
    wanted: dict[Path, set[str]] = {}
    for path in paths:
        wanted.setdefault(path.parent, set()).add(path.name)
    missing, gone, extra = [], [], []
    for parent, names in wanted.items():
        try:
            with os.scandir(parent) as entries:
                present = {entry.name for entry in entries}
        except OSError:  # no such class folder (or unreadable: the same to the run)
            present = set()
            gone.append(str(parent.relative_to(folder)))
        missing += sorted(str((parent / name).relative_to(folder)) for name in names - present)
        if whole:
            extra += sorted(str((parent / name).relative_to(folder)) for name in present - names
                            if not name.startswith(".") and name.lower().endswith(extensions))
    said = f"; it has no class folder {listed(gone)}" if gone else ""
    if missing and first is None:
        raise DataError(f"released folder {folder} lacks the files of {len(missing)} of the {len(paths)} "
                        f"images of --data ({listed(missing)}){said}: released files are read under "
                        "--data's names; give the --data these files were made from (or --limit)")
    if missing:
        raise DataError(f"released folder {folder} lacks the files of {len(missing)} of the {len(paths)} "
                        f"images of {first}, the run's ({listed(missing)}){said}: every released folder "
                        "holds the same images; complete it, or pick complete ones")
    if extra:
        raise DataError(f"released folder {folder} holds {counted(len(extra), 'image')} beyond the "
                        f"{len(paths)} of {first}, the run's ({listed(extra)}): {first} lacks "
                        f"{'it' if len(extra) == 1 else 'them'} (a partial extraction?); complete it, or "
                        "pick complete ones")


def first_image(folder: Path, extensions: tuple[str, ...] = IMG_EXTENSIONS) -> Path | None:
    """The first image (of ``extensions``) under ``folder`` in the order :func:`scan_folder`
    walks a class (hidden names skipped), or None."""
    name = next(_walk_images(folder.parent, folder.name, extensions, {}), None)
    return None if name is None else folder.parent / name


def first_released_file(cell: Path, extensions: tuple[str, ...] = IMG_EXTENSIONS) -> Path | None:
    """The first file (of ``extensions``) of a released cell folder's class folders, in sorted
    order (the file whose size stands for the folder's), or None."""
    firsts = (first_image(cell / name, extensions) for name in sorted(subfolders(cell)))
    return next(filter(None, firsts), None)


def _holds_files(folder: Path) -> bool:
    """Whether ``folder`` holds a file that is not hidden, at any depth (a class folder left
    empty by a partial extraction holds none), walked as :func:`scan_folder` walks a class (link
    loops skipped); every name ends with ``""``."""
    return next(_walk_images(folder.parent, folder.name, ("",), {}), None) is not None


def _holds_media(folder: Path, extensions: tuple[str, ...]) -> bool:
    """Whether ``folder`` holds a file of ``extensions`` (the suite's images, or videos) at any depth
    (a class folder of a released cell: one holding only a file manager's Thumbs.db or desktop.ini,
    or a folder of preview images beside ImageNet-P's videos, is none; helper-238)."""
    return first_image(folder, extensions) is not None


def subfolders(folder: Path) -> set[str]:
    """The names of the folders in ``folder`` that are not hidden (its class folders)."""
    with os.scandir(folder) as entries:
        return {entry.name for entry in entries if entry.is_dir() and not entry.name.startswith(".")}
