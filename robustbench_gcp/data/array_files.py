"""CIFAR-10/100 test sets and the released CIFAR-10-C / CIFAR-100-C arrays.

CIFAR images live in arrays, not one file per image: the python-version pickle
``cifar-10-batches-py/test_batch`` (``cifar-100-python/test``) and, for the released corrupted
sets, one ``<corruption>.npy`` per corruption (5 severities of N images, one after the other)
beside a ``labels.npy``. They are listed as :class:`ImageList` s with one name per row
(``"00000"`` ...) and read back by :func:`load_array_rows`, which the engine calls for lists
whose ``reader`` is not ``"files"``.

The pickles are untrusted: unpickling can call any importable function, so a restricted
unpickler lets through only the globals the real files use (numpy array reconstruction and
``_codecs.encode``). The ``.npy`` files are memory-mapped with ``allow_pickle=False``: checks
read only their headers and a batch reads only its rows.
"""

from __future__ import annotations

import codecs
import os
import pickle
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_gcp.data.folders import ImageList, subfolders
from robustbench_gcp.errors import DataError, listed, real_path

try:  # numpy >= 2 (and 1.26's forward alias); numpy.core is deprecated there
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

#: How :func:`load_array_rows` reads an array-backed :class:`ImageList` (``ImageList.reader``);
#: ``npy-sequences``: released CIFAR-10-P files, one frame sequence per row (:func:`load_sequence_rows`).
ARRAY_READERS = ("cifar-pickle", "npy", "npy-sequences")
#: Severities in a released CIFAR-C file, stored one after the other (a property of the files).
RELEASED_SEVERITIES = 5
#: The labels file of a released CIFAR-C folder.
LABELS_NPY = "labels.npy"

_SIDE = 32  # CIFAR images are 32x32 RGB
_ROW = 3 * _SIDE * _SIDE
_TEST_FILES = ("test_batch", "test")  # CIFAR-10, CIFAR-100
#: labels key -> (dataset, number of classes, meta file, class names key)
_LAYOUTS = {"labels": ("cifar10", 10, "batches.meta", "label_names"),
            "fine_labels": ("cifar100", 100, "meta", "fine_label_names")}
_PICKLE_OPENERS = (b"\x80", b"(", b"}")  # PROTO (protocol >= 2), MARK or EMPTY_DICT (0 and 1)

#: (module, name) -> object: every global a real CIFAR pickle imports (numpy 1.x wrote numpy.core).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    # protocol 5 (pickle.HIGHEST_PROTOCOL; Python 3.14's default) writes an array as its bytes
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # replaced by a latin-1-only version per file
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Imports only :data:`_ALLOWED_GLOBALS`; ``_codecs.encode`` (how Python 3 writes bytes at
    protocol 2) only with "latin1", so that no other codec module can be reached from a file."""

    def __init__(self, stream: Any, path: Path):
        super().__init__(stream, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise DataError(f"{self._path}: refused: unpickling it would import {module}.{name} "
                            "(a CIFAR batch file holds only numpy arrays, lists and strings)")
        return self._latin1_encode if found is codecs.encode else found

    def _latin1_encode(self, text: str, encoding: str = "utf-8") -> bytes:
        if encoding not in ("latin1", "latin-1"):
            raise DataError(f"{self._path}: refused: unpickling it would call _codecs.encode with "
                            f"encoding {encoding!r} (pickled bytes use 'latin1')")
        return codecs.encode(text, "latin1")


def _unpickle(path: Path) -> Any:
    """Unpickle an untrusted file with :class:`_RestrictedUnpickler` (``encoding="bytes"``)."""
    try:
        with open(path, "rb") as stream:
            return _RestrictedUnpickler(stream, path).load()
    except OSError as error:
        raise DataError(f"cannot read CIFAR file {path}: {error.strerror or error}") from None
    except EOFError:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty (0 bytes): download the CIFAR python version again") from None
        raise DataError(f"{path} is truncated: the pickle ends before its STOP opcode") from None
    except (pickle.UnpicklingError, ValueError, TypeError, LookupError, AttributeError,
            OverflowError, RecursionError, MemoryError) as error:  # MemoryError: a crafted 2**46-byte string
        raise DataError(f"{path} is not a CIFAR python-version pickle: {type(error).__name__}: "
                        f"{str(error)[:200]}") from None


@dataclass(frozen=True, eq=False)
class CifarBatch:
    """The decoded content of one CIFAR batch file.

    Attributes:
        images: uint8 (N, 32, 32, 3) HWC RGB, read-only (it may be shared through a cache).
        labels: int64 (N,) class indices (CIFAR-100: the fine labels).
        classes: class names by index (``batches.meta`` / ``meta``, else "0", "1", ...).
        dataset: "cifar10" or "cifar100".
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    dataset: str


def read_cifar_batch(path: str | Path) -> CifarBatch:
    """Decode a python-version CIFAR-10 / CIFAR-100 batch file (``test_batch``, ``test``).

    The file is a pickled dict: ``data`` (N, 3072) uint8, each row 1024 red, then 1024 green,
    then 1024 blue values of a 32x32 image in row-major order, with ``labels`` (CIFAR-10) or
    ``fine_labels`` (CIFAR-100); the key decides the dataset. Class names come from the
    sibling ``batches.meta`` (``label_names``) or ``meta`` (``fine_label_names``) when present.

    Raises:
        DataError: a missing file, not a pickle, a pickle importing anything but numpy array
            reconstruction, a missing key, data not N x 3072 uint8, labels not N integers in
            range, or a bad meta file; the message names the file.

    Example:
        >>> read_cifar_batch("cifar-10-batches-py/test_batch").images.shape  # doctest: +SKIP
        (10000, 32, 32, 3)
    """
    path = Path(path).expanduser()
    content = _str_keys(_unpickle(path), path, "a dict of 'data' and 'labels' or 'fine_labels'")
    key = "fine_labels" if "fine_labels" in content else "labels"
    dataset, n_classes, meta_name, names_key = _LAYOUTS[key]
    if "data" not in content or key not in content:
        raise DataError(f"{path}: expected the keys b'data' and b'labels' (CIFAR-10) or b'fine_labels' "
                        f"(CIFAR-100); found {', '.join(sorted(map(str, content))[:8]) or 'none'}")
    data = content["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _ROW):
        shown = f"{data.dtype} shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' should be an N x {_ROW} uint8 array (1024 red, 1024 green, "
                        f"1024 blue values per 32x32 image); found {shown}")
    labels = _int_vector(content[key], f"{path}: b'{key}'")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} entries in b'{key}'; "
                        "expected one label per image")
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        raise DataError(f"{path}: b'{key}': label {labels[bad[0]]} at row {bad[0]} is outside "
                        f"0..{n_classes - 1}")
    images = np.ascontiguousarray(data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1))
    images.flags.writeable = False
    classes = _class_names(path.parent / meta_name, names_key, n_classes)
    return CifarBatch(images, labels, classes, dataset)


def _str_keys(content: Any, path: Path, expected: str) -> dict[str, Any]:
    """A pickled dict with its byte keys (python 2 strings) decoded."""
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected {expected}; found a {type(content).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in content.items()}


def _int_vector(values: Any, what: str) -> np.ndarray:
    """``values`` (a list or 1-D array of integers) as an int64 vector, else :class:`DataError`."""
    array = np.asarray(values if isinstance(values, (list, tuple, np.ndarray)) else None)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise DataError(f"{what} should be a list of integer labels; found {type(values).__name__} "
                        f"of {array.dtype} shape {array.shape}")
    return array.astype(np.int64)


def _class_names(meta: Path, key: str, n_classes: int) -> tuple[str, ...]:
    """Class names from a CIFAR meta file, or "0", "1", ... when there is none."""
    if not meta.is_file():
        return tuple(str(k) for k in range(n_classes))
    names = _str_keys(_unpickle(meta), meta, f"a dict with '{key}'").get(key)
    if not isinstance(names, (list, tuple)) or len(names) != n_classes:
        count = len(names) if isinstance(names, (list, tuple)) else "no"
        raise DataError(f"{meta}: expected b'{key}' with {n_classes} class names; found {count}")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


def _looks_like_test_file(path: Path) -> bool:
    if path.name not in _TEST_FILES or not path.is_file():
        return False
    if path.name == "test_batch" or path.parent.name == "cifar-100-python":
        return True  # CIFAR's own names: an empty or broken file is read, and what is wrong named
    try:
        with open(path, "rb") as stream:
            return stream.read(1) in _PICKLE_OPENERS
    except OSError:  # unreadable: not recognised (scan_cifar then says why)
        return False


def cifar_test_file(path: str | Path) -> Path | None:
    """The test file of a CIFAR python-version folder, or ``path`` when it is one (None: neither).

    A folder (``cifar-10-batches-py``, ``cifar-100-python`` or any name) holding ``test_batch``
    (CIFAR-10) or ``test`` (CIFAR-100), or one of those files; a ``test`` outside a
    ``cifar-100-python`` folder must start like a pickle, so that an unrelated file named ``test``
    is not taken for CIFAR-100.
    """
    path = Path(path).expanduser()
    candidates = [path / name for name in _TEST_FILES] if path.is_dir() else [path]
    return next((file for file in candidates if _looks_like_test_file(file)), None)


def is_cifar_source(path: str | Path) -> bool:
    """Whether ``path`` is a CIFAR python-version folder or its test file (:func:`cifar_test_file`)."""
    return cifar_test_file(path) is not None


def scan_cifar(path: str | Path) -> ImageList:
    """The image list of a CIFAR-10 / CIFAR-100 test set, one name per row of the file.

    Args:
        path: the ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or a batch file.

    Returns:
        ``root`` the batch file, names ``"00000"`` ..., labels from the file, ``reader="cifar-pickle"``.

    Raises:
        DataError: no test file, or a file :func:`read_cifar_batch` refuses.
    """
    file = Path(path).expanduser()
    if file.is_dir():
        found = [file / name for name in _TEST_FILES if (file / name).is_file()]
        if not found:
            raise DataError(f"CIFAR folder {file} holds neither test_batch (cifar-10-batches-py) nor test "
                            "(cifar-100-python): give the folder of the python-version download")
        file = found[0]
    batch = read_cifar_batch(file)
    return _row_list(file, batch.labels, batch.classes, "cifar-pickle")


def _row_list(root: Path, labels: np.ndarray, classes: tuple[str, ...], reader: str) -> ImageList:
    """One name per row ("00000" ...): the same names, labels and indices for CIFAR and CIFAR-C."""
    n = len(labels)
    return ImageList(root=root, names=tuple(f"{i:05d}" for i in range(n)), labels=tuple(labels.tolist()),
                     indices=tuple(range(n)), classes=classes, labelling="dataset", source=str(root),
                     reader=reader)


def _open_npy(path: Path) -> np.ndarray:
    """Memory-map a .npy file (header read, no pixels); never unpickles."""
    try:
        with open(path, "rb") as file:
            magic = file.read(6)
    except OSError as error:
        raise DataError(f"cannot read {path} as a .npy array: {str(error)[:200]}") from None
    if magic != b"\x93NUMPY":  # NumPy took other bytes for pickled data, and advised allow_pickle
        raise DataError(f"cannot read {path} as a .npy array: it is not a .npy file (it does not start "
                        f"with NumPy's magic bytes)")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # not .npy, truncated, pickled objects
        raise DataError(f"cannot read {path} as a .npy array: {str(error)[:200]}") from None
    except (SyntaxError, TypeError, tokenize.TokenError) as error:  # its header's text damaged
        raise DataError(f"cannot read {path} as a .npy array: its header is damaged "
                        f"({type(error).__name__}: {str(error)[:150]})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        raise DataError(f"cannot read {path} as a .npy array: it is a {type(array).__name__}")
    return array


def _existing_npy(path: Path, what: str, item: str) -> Path:
    """``path`` if it is a file, else a DataError listing the ``<item>.npy`` files of its folder."""
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in path.parent.glob("*.npy") if p.name != LABELS_NPY))
        raise DataError(f"{what} file {path} does not exist; the folder has "
                        f"{have or f'no <{item}>.npy files'}{_folders_instead(path.parent, bool(have))}")
    return path


def _folders_instead(folder: Path, arrays: bool) -> str:
    """What to say of a folder of CIFAR's arrays that holds (``arrays`` aside) folders instead: the
    layout of the released image or video folders."""
    folders = [] if arrays or not folder.is_dir() else sorted(subfolders(folder))
    return (f" but folders ({listed(folders, 3)}): the released image or video folders of ImageNet-C / -P or "
            "Tiny-ImageNet-C / -P, not CIFAR's arrays (check --dataset)" if folders else "")


def released_npy(folder: str | Path, corruption: str) -> Path:
    """The ``<corruption>.npy`` file of a released CIFAR-10-C / CIFAR-100-C folder.

    Raises:
        DataError: the folder or the file is missing (listing the corruption files there are).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"CIFAR-C folder {folder} does not exist")
    return _existing_npy(folder / f"{corruption}.npy", "CIFAR-C", "corruption")


def check_released_sequences(files: Sequence[tuple[Path, int]], side: int, name: str = "CIFAR-10-P") -> int:
    """Check released CIFAR-10-P files from their .npy headers (no pixels read); return N.

    Args:
        files: (path, frame count F) pairs.
        side: the image side (32).
        name: the benchmark, for the messages.

    Raises:
        DataError: a missing or unreadable file, not uint8 (N, F, side, side, 3), or files of
            different N; the message names the file, the expected and the found shape.
    """
    first: tuple[Path, int] | None = None
    for path, frames in dict.fromkeys(files):
        array = _open_npy(_existing_npy(path, name, "perturbation"))
        if array.dtype != np.uint8 or array.shape[1:] != (frames, side, side, 3):
            raise DataError(f"{path} has {array.dtype} shape {array.shape}; a released {name} file holds "
                            f"one sequence per test image: uint8 (N, {frames}, {side}, {side}, 3)")
        if array.shape[0] == 0:  # else a run of 0 images went into the store, which report then refused
            raise DataError(f"{path} holds 0 sequences; a released {name} file holds one per test image")
        if first is None:
            first = (path, array.shape[0])
        elif array.shape[0] != first[1]:
            raise DataError(f"{path} holds {array.shape[0]} sequences but {first[0]} holds {first[1]}; the "
                            "files of a released folder hold one sequence per test image")
    return first[1] if first else 0


def _released_labels(folder: Path, corruption: str | None = None) -> np.ndarray:
    """The N test labels of a released folder, after checking labels.npy holds them 5 times (a
    labels.npy that holds them once is told by ``<corruption>.npy``'s rows: the run's file)."""
    path = folder / LABELS_NPY
    if not path.is_file():  # a tree of image folders said nothing of its layout (helper-252)
        instead = _folders_instead(folder, any(folder.glob("*.npy")))
        raise DataError(f"{path} does not exist: a released CIFAR-C folder holds <corruption>.npy files and "
                        f"{LABELS_NPY}" + (f"; {folder} has no .npy files{instead}" if instead else ""))
    labels = _open_npy(path)
    k = RELEASED_SEVERITIES
    if (labels.ndim != 1 or labels.dtype.kind not in "iu" or labels.size == 0 or labels.size % k
            or labels.min() < 0):
        _labels_once(path, labels, corruption)
        raise DataError(f"{path} has {labels.dtype} shape {labels.shape}; a released CIFAR-C {LABELS_NPY} "
                        f"holds the N test labels once per severity: {k} N integers >= 0")
    if labels.max() >= 100:  # its classes are 0 .. max: a crafted 5e7 made 5e7 class names (4 GB)
        raise DataError(f"{path} holds label {labels.max()}; CIFAR-10-C's are 0..9 and CIFAR-100-C's 0..99")
    blocks = np.asarray(labels).astype(np.int64).reshape(k, -1)
    differ = np.argwhere(blocks[1:] != blocks[0])  # (block - 1, row), block by block
    if differ.size:
        _labels_once(path, labels, corruption)
        block, row = int(differ[0, 0]) + 1, int(differ[0, 1])
        raise DataError(f"{path}: the labels of severity {block + 1} differ from those of severity 1 "
                        f"at image {row} ({blocks[block, row]} vs {blocks[0, row]}); expected the "
                        f"N={blocks.shape[1]} test labels repeated {k} times")
    return blocks[0]


def _labels_once(path: Path, labels: np.ndarray, corruption: str | None = None) -> None:
    """Refuse a labels.npy that holds the N test labels once (as the clean test set has them), or
    as many as ``<corruption>.npy`` (else its folder's first image file) has no images, saying so
    (a short one was said as labels of two severities that differ, helper-235)."""
    images = path.parent / f"{corruption}.npy" if corruption is not None else None
    if images is None or not images.is_file():
        images = next((p for p in sorted(path.parent.glob("*.npy")) if p.name != LABELS_NPY), None)
    try:
        rows = _open_npy(images).shape[0] if images is not None else None
    except (DataError, IndexError):  # a damaged image file is named when it is read
        rows = None
    k = RELEASED_SEVERITIES
    if labels.ndim == 1 and labels.size and rows == k * labels.size:
        raise DataError(f"{path} holds {labels.size} labels, one per image of a severity; a released "
                        f"CIFAR-C {LABELS_NPY} holds them once per severity: {k} x {labels.size} = "
                        f"{rows}, as many as {images.name} has images")
    if labels.ndim == 1 and rows is not None and rows != labels.size:
        raise DataError(f"{path} holds {labels.size} labels, and {images.name} {rows} images; a released "
                        f"CIFAR-C {LABELS_NPY} holds one label per image of each <corruption>.npy ({k} N)")


def check_released_npy(folder: str | Path, corruptions: Sequence[str], expected: str | None = None,
                       size: int | None = None) -> int:
    """Check a released CIFAR-C folder from the .npy headers; return N, the images per severity.

    Every ``<corruption>.npy`` must be uint8 of shape (5 N, H, W, 3) with the N of
    ``labels.npy`` and the same H, W (``size`` x ``size`` when given), and ``labels.npy`` must hold
    5 identical blocks of N labels. ``expected`` is the benchmark the suite reads (``CIFAR-100-C``):
    a folder whose labels are all below 10 is CIFAR-10-C's and is refused for CIFAR-100-C.

    Raises:
        DataError: a missing or unreadable file, a wrong dtype or shape, a bad labels.npy, or
            another benchmark's folder; the message names the file, the expected and the found.
    """
    folder = Path(folder).expanduser()
    labels = _released_labels(folder, corruptions[0] if corruptions else None)
    n, k = len(labels), RELEASED_SEVERITIES
    name = "CIFAR-10-C" if labels.max() < 10 else "CIFAR-100-C"
    if expected == "CIFAR-100-C" and name != expected:
        raise DataError(f"{folder / LABELS_NPY} holds labels 0 to {labels.max()} only: CIFAR-10-C's "
                        f"folder, not the {expected} this suite reads (CIFAR-10-C is the cifar10-c suite)")
    if expected == "CIFAR-10-C" and name != expected:
        whose = "CIFAR-100-C's folder" if labels.max() >= 50 else "not CIFAR-10-C's 0 to 9"
        raise DataError(f"{folder / LABELS_NPY} holds labels up to {labels.max()}: {whose}, not the "
                        f"{expected} this suite reads (CIFAR-100-C is the cifar100-c suite)")
    first: tuple[Path, tuple[int, ...]] | None = None
    for corruption in corruptions:
        path = released_npy(folder, corruption)
        array = _open_npy(path)
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] != k * n or array.shape[3] != 3:
            raise DataError(f"{path} has {array.dtype} shape {array.shape}; a released {name} file holds "
                            f"{k} severities x N uint8 images: ({k} N, H, W, 3) with the N of "
                            f"{LABELS_NPY} ({n})")
        if size is not None and array.shape[1:3] != (size, size):
            raise DataError(f"{path} holds {array.shape[2]}x{array.shape[1]} images; {expected or name} "
                            f"images are {size}x{size}")
        if first is None:
            first = (path, array.shape)
        elif array.shape != first[1]:
            raise DataError(f"{path} has shape {array.shape} but {first[0]} has {first[1]}; the files of "
                            "a released folder hold images of one size")
    return n


def check_test_set(images: ImageList, name: str, rows: int, what: str) -> None:
    """``--data`` beside released files read by row (CIFAR-10/100-C, CIFAR-10-P): their rows are
    the test set's, in its order, so ``images`` must be that whole test set.

    Args:
        images: the image list of ``--data``.
        name: the released benchmark, for messages (``CIFAR-10-C``).
        rows: the files' rows per severity or difficulty.
        what: what a row is, for messages (``per severity (labels.npy)``, ``sequences``).

    Raises:
        DataError: a folder of images (no row order to match), or another number of images.
    """
    if images.reader == "files":
        raise DataError(f"{name} rows are the test set's, in its order: give --data the CIFAR python "
                        "batches (not a folder of images), or --corrupted-dir alone")
    if len(images) != rows:
        raise DataError(f"--data holds {len(images)} images, {name}'s files {rows} {what}: the rows "
                        "are the test set's, so give its whole test set")


def scan_cifar_c(folder: str | Path, corruption: str | None = None, dataset: str | None = None) -> ImageList:
    """The image list of a released CIFAR-10-C / CIFAR-100-C folder: its N test images, of
    ``dataset``'s classes (``cifar10``: 10, ``cifar100``: 100; else those up to the largest label:
    a folder whose labels never reach the last class held fewer, and a model of the dataset's
    classes was refused).

    Names, labels and indices equal those of :func:`scan_cifar` on the matching test set (same
    :meth:`ImageList.fingerprint`). A severity's images are the rows :func:`severity_rows` of
    each ``<corruption>.npy`` (check those with :func:`check_released_npy`).

    ``corruption`` names the file the run reads first (a labels.npy refused is told by its rows).

    Raises:
        DataError: a missing folder or labels.npy, or labels.npy not 5 identical blocks.
    """
    folder = Path(folder).expanduser()
    labels = _released_labels(folder, corruption)
    classes = next((n for name, n, _, _ in _LAYOUTS.values() if name == dataset), 0)
    return _row_list(folder, labels, tuple(str(k) for k in range(max(classes, int(labels.max()) + 1))), "npy")


def severity_rows(n: int, severity: int) -> range:
    """The rows of ``severity`` (1..5) in a released CIFAR-C file of ``n`` images per severity.

    Example:
        >>> severity_rows(10000, 3)
        range(20000, 30000)
    """
    if not 1 <= severity <= RELEASED_SEVERITIES:
        raise ValueError(f"`severity` should be 1..{RELEASED_SEVERITIES}. Got {severity}")
    if n < 0:
        raise ValueError(f"`n` should be >= 0. Got {n}")
    return range((severity - 1) * n, severity * n)


@lru_cache(maxsize=2)
def _cifar_images(path: str, size: int, mtime_ns: int) -> np.ndarray:
    return read_cifar_batch(path).images


@lru_cache(maxsize=4)
def _npy_images(path: str, size: int, mtime_ns: int) -> np.ndarray:
    array = _open_npy(Path(path))
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[3] != 3:
        raise DataError(f"{path} has {array.dtype} shape {array.shape}; expected uint8 images (N, H, W, 3)")
    return array


def load_array_rows(file: str | Path, rows: Sequence[int], *, reader: str) -> torch.Tensor:
    """Read rows of an array-backed image file as a uint8 (len(rows), 3, H, W) tensor.

    The file is decoded (``cifar-pickle``) or memory-mapped (``npy``) once per process and kept
    in a small cache keyed by path, size and modification time; an ``npy`` read touches only
    the requested rows. Rows come back in the order asked, repeats included.

    Args:
        file: the CIFAR batch file (``reader="cifar-pickle"``) or a CIFAR-C ``.npy``.
        rows: row numbers, 0 <= row < rows in the file.
        reader: one of :data:`ARRAY_READERS` (``ImageList.reader``).

    Returns:
        A contiguous uint8 tensor (len(rows), 3, H, W).

    Raises:
        DataError: an unreadable file, or rows outside the file (the message names it).
        ValueError: an unknown ``reader``.
    """
    if reader not in ARRAY_READERS:
        raise ValueError(f"`reader` should be one of {', '.join(ARRAY_READERS)}. Got {reader!r}")
    if reader == "npy-sequences":
        return load_sequence_rows(file, rows)
    file = Path(file).expanduser()
    try:  # path, size and mtime key the cache, so that an edited file is read again
        stat = os.stat(file)
    except OSError as error:
        raise DataError(f"cannot read {file}: {error.strerror or error}") from None
    read = _cifar_images if reader == "cifar-pickle" else _npy_images
    images = read(str(real_path(file)), stat.st_size, stat.st_mtime_ns)
    picked = _pick_rows(file, images, rows, "rows")
    return torch.from_numpy(np.ascontiguousarray(picked.transpose(0, 3, 1, 2)))


def _pick_rows(file: Path, array: np.ndarray, rows: Sequence[int], what: str) -> np.ndarray:
    """``array[rows]`` in the order asked (repeats included), each row read once, in file order.

    Raises:
        ValueError: ``rows`` are not integers. DataError: a row outside the array (file named).
    """
    index = np.asarray(rows) if len(rows) else np.zeros(0, np.int64)
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise ValueError(f"`rows` should be a sequence of integers. Got {index.dtype} shape {index.shape}")
    outside = np.flatnonzero((index < 0) | (index >= len(array)))
    if outside.size:
        raise DataError(f"{file} has {len(array)} {what} (0..{len(array) - 1}); asked for row "
                        f"{index[outside[0]]}")
    unique, inverse = np.unique(index, return_inverse=True)
    return np.asarray(array[unique])[inverse.reshape(-1)]


def load_sequence_rows(file: str | Path, rows: Sequence[int]) -> torch.Tensor:
    """Read rows of a released CIFAR-10-P ``<perturbation>.npy``: uint8 (N, F, H, W, 3), one
    sequence of F frames per test image, in test order.

    Memory-mapped (``allow_pickle=False``) and cached like :func:`load_array_rows`; a read
    touches only the requested rows, which come back in the order asked, repeats included.

    Returns:
        A contiguous uint8 tensor (len(rows), F, 3, H, W).

    Raises:
        DataError: an unreadable file, not a uint8 (N, F, H, W, 3) array, or rows outside it
            (the message names the file).
    """
    file = Path(file).expanduser()
    try:
        stat = os.stat(file)
    except OSError as error:
        raise DataError(f"cannot read {file}: {error.strerror or error}") from None
    sequences = _npy_sequences(str(real_path(file)), stat.st_size, stat.st_mtime_ns)
    picked = _pick_rows(file, sequences, rows, "sequences")
    return torch.from_numpy(np.ascontiguousarray(picked.transpose(0, 1, 4, 2, 3)))


@lru_cache(maxsize=4)
def _npy_sequences(path: str, size: int, mtime_ns: int) -> np.ndarray:
    array = _open_npy(Path(path))
    if array.dtype != np.uint8 or array.ndim != 5 or array.shape[4] != 3:
        raise DataError(f"{path} has {array.dtype} shape {array.shape}; expected uint8 frame sequences "
                        "(N, F, H, W, 3)")
    return array
