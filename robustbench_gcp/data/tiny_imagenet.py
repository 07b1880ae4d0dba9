"""Tiny-ImageNet-200 validation images and the released Tiny-ImageNet-C.

Tiny-ImageNet-200 (``tiny-imagenet-200/``) holds ``wnids.txt`` (its 200 wnids, one per line,
not sorted), ``train/<wnid>/images/*.JPEG`` and a flat ``val/images/val_<k>.JPEG`` folder of
10,000 64x64 images whose classes are in ``val/val_annotations.txt`` (tab-separated: file
name, wnid and a 4-int box). Labels are indices in the SORTED wnids: the order torchvision's
ImageFolder gives ``train/`` and so the one Tiny-ImageNet models are trained with. The order
of ``wnids.txt`` is not a class order.

The released Tiny-ImageNet-C has the ImageNet-C layout ``<root>/<corruption>/<severity>/
<wnid>/<file>.JPEG`` (64x64 images); its labels use the same sorted-wnid order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from robustbench_gcp.data.folders import (
    ANNOTATIONS_FILE,
    ImageList,
    corrupted_cell_dir,
    first_image,
    is_image_file,
    scan_folder,
    subfolders,
)
from robustbench_gcp.errors import DataError, counted, listed

WNIDS_FILE = "wnids.txt"
TINY_CLASSES = 200
_NAMED = 5  # files named in an error before "and N more"


def is_tiny_imagenet(path: str | Path) -> bool:
    """Whether ``path`` is a Tiny-ImageNet-200 root (``wnids.txt`` and ``val/``, or
    ``val/val_annotations.txt``) or its ``val`` folder (``val_annotations.txt``)."""
    path = Path(path).expanduser()
    if (path / WNIDS_FILE).is_file() and (path / "val").is_dir():
        return True
    # a root without its wnids.txt too (it was read as class folders, val among them), as its val is
    return (path / ANNOTATIONS_FILE).is_file() or (path / "val" / ANNOTATIONS_FILE).is_file()


def _val_folder(path: Path) -> Path:
    if (path / ANNOTATIONS_FILE).is_file():
        return path
    if (path / "val").is_dir():
        return path / "val"
    if not path.is_dir():
        raise DataError(f"Tiny-ImageNet folder {path} does not exist")
    raise DataError(f"{path / 'val' / ANNOTATIONS_FILE} does not exist: expected the Tiny-ImageNet-200 "
                    "layout <root>/wnids.txt, <root>/val/val_annotations.txt, <root>/val/images/")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None


def read_wnids(path: str | Path) -> tuple[str, ...]:
    """The wnids of a ``wnids.txt``, SORTED (the class order), after checking there are no repeats.

    Raises:
        DataError: an unreadable or empty file, a line with spaces, or a wnid listed twice.
    """
    path = Path(path)
    first_line: dict[str, int] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        wnid = line.strip()
        if not wnid:
            continue
        if len(wnid.split()) != 1:
            raise DataError(f"{path}, line {number}: expected one wnid, got {wnid[:60]!r}")
        if wnid in first_line:
            raise DataError(f"{path}, line {number}: {wnid} is already on line {first_line[wnid]}")
        first_line[wnid] = number
    if not first_line:
        raise DataError(f"{path} is empty: expected one wnid per line")
    return tuple(sorted(first_line))


def read_val_annotations(path: str | Path) -> dict[str, tuple[str, int]]:
    """Map val image file names to (wnid, line number) from ``val_annotations.txt``.

    A line is ``<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>``; the box is checked but not kept,
    and a line of only ``<file> <wnid>`` is accepted too.

    Raises:
        DataError: a missing or empty file, a malformed line, or a file annotated twice (the
            message gives the line numbers).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Tiny-ImageNet annotations file {path} does not exist")
    found: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) not in (2, 6) or not all(p.lstrip("-").isdigit() for p in parts[2:]):
            raise DataError(f"{path}, line {number}: expected '<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>', "
                            f"got {line.strip()[:80]!r}")
        name, wnid = parts[:2]
        if name in found:
            raise DataError(f"{path}, line {number}: {name} is already annotated on line {found[name][1]}")
        found[name] = (wnid, number)
    if not found:
        raise DataError(f"Tiny-ImageNet annotations file {path} is empty")
    return found


def scan_tiny_imagenet_val(path: str | Path) -> ImageList:
    """The image list of the Tiny-ImageNet-200 validation set (10,000 images, 200 classes).

    Args:
        path: the ``tiny-imagenet-200`` root or its ``val`` folder.

    Returns:
        An :class:`ImageList` with ``root`` the ``val/images`` folder, names the sorted file
        names, labels the index of each image's wnid among the sorted wnids (``wnids.txt``
        when present beside ``val``, else the annotated wnids), ``labelling="dataset"``. A ``val``
        sorted into ``<wnid>/`` folders is read as such (``labelling="folders"``), without its
        annotations file where ``wnids.txt`` gives the classes.

    Raises:
        DataError: a missing annotations file or images folder, a malformed annotation line,
            an annotated image that is missing, an image without annotation, or an annotated
            wnid that is not in ``wnids.txt``.

    Example:
        >>> images = scan_tiny_imagenet_val("tiny-imagenet-200")  # doctest: +SKIP
        >>> len(images), len(images.classes)  # doctest: +SKIP
        (10000, 200)
    """
    val = _val_folder(Path(path).expanduser())
    annotations_file = val / ANNOTATIONS_FILE
    wnids_file = val.parent / WNIDS_FILE
    images = val / "images"
    # sorted into <wnid>/ folders: an images/ folder left empty beside them is not the flat layout
    flat = images.is_dir() and first_image(images) is not None
    sorted_into = subfolders(val) - {"images"}
    if not annotations_file.is_file() and wnids_file.is_file() and not flat \
            and sorted_into:  # sorted into <wnid>/ folders, the annotations gone: wnids.txt says
        return _labelled_by(scan_folder(val, class_order="sorted"), read_wnids(wnids_file), val)
    annotations = read_val_annotations(annotations_file)
    if wnids_file.is_file():
        classes = read_wnids(wnids_file)
        unknown = [(line, name, wnid) for name, (wnid, line) in annotations.items() if wnid not in classes]
        if unknown:
            line, name, wnid = min(unknown)
            raise DataError(f"{annotations_file}, line {line}: {name} is annotated {wnid}, which is not "
                            f"in {wnids_file} ({len(unknown)} such lines)")
    else:
        classes = tuple(sorted({wnid for wnid, _ in annotations.values()}))
        if len(classes) < TINY_CLASSES:  # then an index in their sorted order is not the class's
            raise DataError(f"{annotations_file} names {len(classes)} of Tiny-ImageNet's {TINY_CLASSES} "
                            f"classes and there is no {wnids_file}: labels are indices in the sorted "
                            f"wnids of that file; put it there")
    if not flat and sorted_into:
        # val sorted into <wnid>/ folders (a common rearrangement): its folders are the classes
        return _labelled_by(scan_folder(val, class_order="sorted"), classes, val)
    if not images.is_dir():
        raise DataError(f"Tiny-ImageNet images folder {images} does not exist")
    names = sorted(entry.name for entry in os.scandir(images)
                   if entry.is_file() and is_image_file(entry.name) and not entry.name.startswith("."))
    missing = sorted(set(annotations) - set(names), key=lambda name: annotations[name][1])
    if missing:
        raise DataError(f"{counted(len(missing), 'image')} annotated in {annotations_file} "
                        f"{'is' if len(missing) == 1 else 'are'} missing from "
                        f"{images}: {listed(missing, _NAMED)}")
    unannotated = [name for name in names if name not in annotations]
    if unannotated:
        raise DataError(f"{counted(len(unannotated), 'image')} in {images} "
                        f"{'has' if len(unannotated) == 1 else 'have'} no line in {annotations_file}: "
                        f"{listed(unannotated, _NAMED)}")
    index = {wnid: i for i, wnid in enumerate(classes)}
    labels = tuple(index[annotations[name][0]] for name in names)
    return ImageList(root=images, names=tuple(names), labels=labels, indices=tuple(range(len(names))),
                     classes=classes, labelling="dataset", source=str(images))


def scan_tiny_imagenet_c(root: str | Path, corruption: str, severity: int,
                         classes: Sequence[str] | None = None) -> ImageList:
    """The image list of one released Tiny-ImageNet-C cell (``<root>/<c>/<s>/<wnid>/<file>``).

    Args:
        root: the ``Tiny-ImageNet-C`` folder.
        corruption: the corruption folder name (``gaussian_noise`` ...).
        severity: the severity folder (1..5).
        classes: the wnids of the model's classes (e.g. :func:`read_wnids` of ``wnids.txt``);
            labels are indices in their SORTED order. Default: the class folders of the cell,
            which gives the same labels only when the cell has all 200 classes.

    Returns:
        An :class:`ImageList` with names ``"<wnid>/<file>"`` in folder order and
        ``labelling="folders"``.

    Raises:
        DataError: a missing root or cell folder, a cell without images, or a class folder
            that is not one of ``classes``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"Tiny-ImageNet-C folder {root} does not exist")
    cell = corrupted_cell_dir(root, corruption, severity)
    if not cell.is_dir():
        raise DataError(f"Tiny-ImageNet-C folder {root} has no {corruption}/{severity}: expected the "
                        "released layout <root>/<corruption>/<severity>/<wnid>/<image>")
    found = scan_folder(cell, class_order="sorted")
    return found if classes is None else _labelled_by(found, classes, cell)


def _labelled_by(found: ImageList, classes: Sequence[str], folder: Path) -> ImageList:
    """``found`` (wnid folders of ``folder``) labelled by the index of each folder among the
    sorted ``classes``.

    Raises:
        DataError: a folder with images is not one of ``classes``.
    """
    order = tuple(sorted(set(classes)))
    index = {wnid: i for i, wnid in enumerate(order)}
    odd = sorted({found.classes[label] for label in found.labels} - set(index))  # folders with images
    if odd:
        raise DataError(f"Tiny-ImageNet folder {folder} has class folders that are not among the "
                        f"{len(order)} classes: {listed(odd, _NAMED)}")
    labels = tuple(index[found.classes[label]] for label in found.labels)
    return ImageList(root=found.root, names=found.names, labels=labels, indices=found.indices,
                     classes=order, labelling="folders", source=found.source)
