"""CIFAR-10/100 pickles, released CIFAR-C .npy folders and Tiny-ImageNet-200, in their real layouts."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_gcp.data.array_files import (
    check_released_npy,
    is_cifar_source,
    load_array_rows,
    read_cifar_batch,
    released_npy,
    scan_cifar,
    scan_cifar_c,
    severity_rows,
)
from robustbench_gcp.data.tiny_imagenet import (
    is_tiny_imagenet,
    scan_tiny_imagenet_c,
    scan_tiny_imagenet_val,
)
from robustbench_gcp.errors import DataError

N = 12  # images per test set (the release has 10,000)
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(n: int, seed: int = 0) -> np.ndarray:
    """(n, 32, 32, 3) uint8 HWC images with distinct R, G, B values at a known pixel."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    images[5, 2, 7] = (11, 22, 33)  # image 5, row 2, column 7: R, G, B
    return images


def _rows(images: np.ndarray) -> np.ndarray:
    """HWC images -> the file's N x 3072 rows (1024 R, 1024 G, 1024 B, row-major)."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy()


def _dump(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as stream:
        pickle.dump(content, stream, protocol=2)
    return path


@pytest.fixture
def cifar10(tmp_path) -> tuple[Path, np.ndarray, list[int]]:
    folder = tmp_path / "cifar-10-batches-py"
    images, labels = _images(N), [i % 10 for i in range(N)][::-1]
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": labels,
                                  b"data": _rows(images), b"filenames": [b"x.png"] * N})
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                    b"num_cases_per_batch": N, b"num_vis": 3072})
    return folder, images, labels


@pytest.fixture
def cifar100(tmp_path) -> tuple[Path, np.ndarray, list[int]]:
    folder = tmp_path / "cifar-100-python"
    images, labels = _images(N, seed=1), [(7 * i) % 100 for i in range(N)]
    _dump(folder / "test", {b"filenames": [b"y.png"] * N, b"fine_labels": labels,
                            b"coarse_labels": [label // 5 for label in labels], b"data": _rows(images)})
    _dump(folder / "meta", {b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
                            b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)]})
    return folder, images, labels


@pytest.fixture
def released(tmp_path, cifar10) -> tuple[Path, dict[str, np.ndarray]]:
    """A released CIFAR-10-C folder for the cifar10 test set: fog and snow."""
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    arrays = {name: _images(5 * N, seed=seed) for seed, name in enumerate(("fog", "snow"), start=5)}
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    np.save(folder / "labels.npy", np.tile(np.array(cifar10[2], dtype=np.uint8), 5))
    return folder, arrays


# CIFAR pickles

def test_cifar10_pixels_labels_and_names(cifar10):
    folder, images, labels = cifar10
    batch = read_cifar_batch(folder / "test_batch")
    assert batch.dataset == "cifar10"
    assert batch.images.shape == (N, 32, 32, 3) and batch.images.dtype == np.uint8
    assert tuple(batch.images[5, 2, 7]) == (11, 22, 33)  # R, G, B in place
    np.testing.assert_array_equal(batch.images, images)
    assert batch.labels.dtype == np.int64 and batch.labels.tolist() == labels
    assert batch.classes == tuple(CIFAR10_NAMES)


def test_cifar100_fine_labels_and_names(cifar100):
    folder, images, labels = cifar100
    batch = read_cifar_batch(folder / "test")
    assert batch.dataset == "cifar100"
    np.testing.assert_array_equal(batch.images, images)
    assert batch.labels.tolist() == labels
    assert len(batch.classes) == 100 and batch.classes[7] == "fine7"


def test_numpy1_pickles_are_read(cifar10, tmp_path):
    """The real downloads were written by numpy 1.x: numpy.core.multiarray._reconstruct."""
    raw = (cifar10[0] / "test_batch").read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in raw  # a GLOBAL opcode: text, no length prefix
    path = tmp_path / "old" / "test_batch"
    path.parent.mkdir()
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    np.testing.assert_array_equal(read_cifar_batch(path).images, cifar10[1])


@pytest.mark.parametrize("protocol", [0, 4, 5])
def test_every_pickle_protocol_is_read(cifar10, tmp_path, protocol):
    """pickle.HIGHEST_PROTOCOL (5; Python 3.14's default) writes arrays through numpy's
    _frombuffer, which was refused as code ('a CIFAR batch file holds only numpy arrays')."""
    content = {b"labels": cifar10[2], b"data": _rows(cifar10[1])}
    path = tmp_path / f"p{protocol}" / "test_batch"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    batch = read_cifar_batch(path)
    np.testing.assert_array_equal(batch.images, cifar10[1])
    assert batch.labels.tolist() == cifar10[2]
    if protocol == 5:
        assert b"_frombuffer" in path.read_bytes()


def test_class_names_default_without_meta(cifar10):
    folder = cifar10[0]
    (folder / "batches.meta").unlink()
    assert read_cifar_batch(folder / "test_batch").classes == tuple(str(k) for k in range(10))


def test_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "MARKER"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = _dump(tmp_path / "evil" / "test_batch", {b"data": Exploit(), b"labels": [0]})
    with pytest.raises(DataError, match=r"refused: unpickling it would import (posix|nt)\.system") as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("make", ["truncated", "not_pickle", "list", "missing_key", "wrong_shape",
                                  "label_count", "label_range"])
def test_bad_cifar_files(tmp_path, cifar10, make):
    rows, labels = _rows(cifar10[1]), cifar10[2]
    path = tmp_path / "bad" / "test_batch"
    expected = {
        "truncated": "truncated",
        "not_pickle": "not a CIFAR python-version pickle",
        "list": "found a list",
        "missing_key": "expected the keys",
        "wrong_shape": r"N x 3072 uint8 .* found uint8 shape \(12, 3072, 1\)",
        "label_count": "12 images but 11 entries",
        "label_range": "label 10 at row 0 is outside 0..9",
    }[make]
    if make == "truncated":
        path.parent.mkdir()
        path.write_bytes((cifar10[0] / "test_batch").read_bytes()[:5000])
    elif make == "not_pickle":
        path.parent.mkdir()
        path.write_text("just some text\n")
    else:
        content = {
            "list": [rows, labels],
            "missing_key": {b"data": rows},
            "wrong_shape": {b"data": rows[..., None], b"labels": labels},
            "label_count": {b"data": rows, b"labels": labels[:-1]},
            "label_range": {b"data": rows, b"labels": [10] + labels[1:]},
        }[make]
        _dump(path, content)
    with pytest.raises(DataError, match=expected) as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)


def test_is_cifar_source(cifar10, cifar100, tmp_path):
    assert is_cifar_source(cifar10[0]) and is_cifar_source(cifar10[0] / "test_batch")
    assert is_cifar_source(cifar100[0]) and is_cifar_source(cifar100[0] / "test")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "test").write_text("not a pickle")
    assert not is_cifar_source(tmp_path / "other")
    assert not is_cifar_source(tmp_path / "missing")
    with pytest.raises(DataError, match="neither test_batch"):
        scan_cifar(tmp_path)


def test_scan_cifar(cifar10, cifar100):
    images = scan_cifar(cifar10[0])
    assert images.root == cifar10[0] / "test_batch" and images.reader == "cifar-pickle"
    assert images.names[:2] == ("00000", "00001") and len(images) == N
    assert list(images.labels) == cifar10[2] and images.indices == tuple(range(N))
    assert images.labelling == "dataset" and images.classes[0] == "airplane"
    assert scan_cifar(cifar100[0] / "test").labels == tuple(cifar100[2])
    assert images.subset([1, 3]).reader == "cifar-pickle"


# Released CIFAR-C .npy files

def test_released_rows_and_fingerprint(cifar10, released):
    folder, arrays = released
    assert check_released_npy(folder, ["fog", "snow"]) == N
    row = severity_rows(N, 3)[7]
    assert row == 2 * N + 7
    got = load_array_rows(released_npy(folder, "fog"), [row], reader="npy")
    assert torch.equal(got[0], torch.from_numpy(arrays["fog"][row]).permute(2, 0, 1))
    corrupted = scan_cifar_c(folder)
    assert corrupted.reader == "npy" and corrupted.root == folder and corrupted.labelling == "dataset"
    assert corrupted.classes == tuple(str(k) for k in range(10))
    clean = scan_cifar(cifar10[0])
    assert corrupted.fingerprint() == clean.fingerprint()
    assert corrupted.names == clean.names and corrupted.labels == clean.labels


@pytest.mark.parametrize("severity", [1, 2, 5])
def test_a_released_severity_cell_reads_its_own_rows(released, severity):
    """A released CIFAR-C cell of severity s is rows (s - 1) N .. s N - 1 of its .npy file: read as
    severity 1's, every severity's counts would be severity 1's and no test saw it."""
    from robustbench_gcp.engine.runner import ImageSource

    folder, arrays = released
    source = ImageSource(released_npy(folder, "fog"), resize_size=None, crop_size=32, released=True,
                         reader="npy", row_offset=severity_rows(N, severity).start)
    (got,) = source.open(scan_cifar_c(folder), [0, 3], batch_size=2, workers=0)
    start = (severity - 1) * N
    expected = torch.from_numpy(arrays["fog"][[start, start + 3]]).permute(0, 3, 1, 2)
    assert torch.equal(got, expected)


def test_severity_rows():
    assert (severity_rows(10000, 1), severity_rows(10000, 5)) == (range(0, 10000), range(40000, 50000))
    with pytest.raises(ValueError, match="`severity` should be 1..5. Got 6"):
        severity_rows(10, 6)


def test_missing_corruption_lists_what_is_there(released):
    with pytest.raises(DataError, match=r"frost\.npy does not exist; the folder has fog, snow"):
        released_npy(released[0], "frost")


@pytest.mark.parametrize("case", ["4N rows", "no channels", "float", "other size"])
def test_wrong_shape_npy(released, case):
    folder = released[0]
    array = {
        "4N rows": np.zeros((4 * N, 32, 32, 3), np.uint8),
        "no channels": np.zeros((5 * N, 32, 32), np.uint8),
        "float": np.zeros((5 * N, 32, 32, 3), np.float32),
        "other size": np.zeros((5 * N, 16, 16, 3), np.uint8),
    }[case]
    np.save(folder / "snow.npy", array)
    expected = ("but .*fog.npy has" if case == "other size"
                else rf"snow\.npy has .*shape {re.escape(str(array.shape))}.*\(5 N, H, W, 3\).*\({N}\)")
    with pytest.raises(DataError, match=expected):
        check_released_npy(folder, ["fog", "snow"])


def test_released_npy_of_another_benchmark_or_size_is_refused(released):
    """A CIFAR-10-C folder (labels below 10) for the CIFAR-100-C suite, and images of another size
    than the benchmark's, are refused from the headers, naming the file."""
    folder = released[0]
    assert check_released_npy(folder, ["fog"], "CIFAR-10-C", 32) == N
    with pytest.raises(DataError, match=r"labels\.npy holds labels 0 to \d only: CIFAR-10-C's folder, "
                                        r"not the CIFAR-100-C this suite reads"):
        check_released_npy(folder, ["fog"], "CIFAR-100-C", 32)
    with pytest.raises(DataError, match=r"fog\.npy holds 32x32 images; CIFAR-10-C images are 64x64"):
        check_released_npy(folder, ["fog"], "CIFAR-10-C", 64)
    # and a CIFAR-100-C folder for the CIFAR-10-C suite (it was read, and reported as CIFAR-10-C)
    np.save(folder / "labels.npy", np.tile(np.arange(N, dtype=np.uint8) * 8, 5))
    assert check_released_npy(folder, ["fog"], "CIFAR-100-C", 32) == N
    with pytest.raises(DataError, match=r"labels\.npy holds labels up to 88: CIFAR-100-C's folder, not the "
                                        r"CIFAR-10-C this suite reads \(CIFAR-100-C is the cifar100-c "
                                        r"suite\)"):
        check_released_npy(folder, ["fog"], "CIFAR-10-C", 32)


@pytest.mark.parametrize("case", ["count", "not 5 blocks", "5 blocks of another N", "once",
                                  "once, 5 divides N", "blocks differ", "pickled", "huge label", "label 100"])
def test_bad_labels_npy(released, case):
    folder = released[0]
    good = np.load(folder / "labels.npy")
    if case == "count":  # 5 blocks, but of fewer images than the image files
        np.save(folder / "labels.npy", np.tile(good[: N - 2], 5))
        expected = rf"fog\.npy has .*\(60, 32, 32, 3\).*labels\.npy \({N - 2}\)"
    elif case == "not 5 blocks":
        np.save(folder / "labels.npy", good[:-1])
        expected = rf"labels\.npy holds {5 * N - 1} labels, and fog\.npy {5 * N} images; .* one label per"
    elif case == "5 blocks of another N":  # it said the labels of severity 2 differed from severity 1's
        np.save(folder / "labels.npy", good[:-5])
        expected = rf"labels\.npy holds {5 * N - 5} labels, and fog\.npy {5 * N} images; .* one label per"
    elif case.startswith("once"):  # the test set's labels (they were "severity 2 differs from 1 at 0")
        n = N if case == "once" else 10
        np.save(folder / "labels.npy", good[:n])
        for name in ("fog", "snow"):
            np.save(folder / f"{name}.npy", _images(5 * n))
        expected = (rf"labels\.npy holds {n} labels, one per image of a severity; .* 5 x {n} = {5 * n}, as "
                    "many as fog.npy has images")
    elif case == "blocks differ":
        changed = good.copy()
        changed[3 * N + 4] = (changed[4] + 1) % 10
        np.save(folder / "labels.npy", changed)
        expected = r"labels\.npy: the labels of severity 4 differ from those of severity 1 at image 4"
    elif case == "huge label":  # its classes were 0 .. 5e7: 4 GB of class names (security audit)
        np.save(folder / "labels.npy", np.tile(np.array([0, 50_000_000] * (N // 2), dtype=np.int64), 5))
        expected = r"labels\.npy holds label 50000000; CIFAR-10-C's are 0\.\.9 and CIFAR-100-C's 0\.\.99"
    elif case == "label 100":  # one past CIFAR-100-C's last class
        np.save(folder / "labels.npy", np.tile(np.array([0] * (N - 1) + [100], dtype=np.int64), 5))
        expected = r"labels\.npy holds label 100; CIFAR-10-C's are 0\.\.9 and CIFAR-100-C's 0\.\.99"
    else:
        np.save(folder / "labels.npy", np.array([{"a": 1}] * (5 * N), dtype=object), allow_pickle=True)
        expected = r"cannot read .*labels\.npy as a \.npy array"
    with pytest.raises(DataError, match=expected):
        check_released_npy(folder, ["fog"])
    if case != "count":
        with pytest.raises(DataError, match=r"labels\.npy"):
            scan_cifar_c(folder)


@pytest.mark.parametrize("damage", [b"}", b"b'shape'"])
def test_a_damaged_npy_header_is_named(released, damage):
    """Its '}' blanked (tokenize.TokenError) or a key turned to bytes (TypeError) in numpy's header
    parser: tracebacks."""
    folder = released[0]
    data = (folder / "labels.npy").read_bytes()
    data = (data.replace(b"}", b" ", 1) if damage == b"}" else data.replace(b"'shape'", b"b'shape'", 1))
    (folder / "labels.npy").write_bytes(data)
    with pytest.raises(DataError, match=r"cannot read .*labels\.npy as a \.npy array: its header is "
                                        r"damaged \("):
        scan_cifar_c(folder)


def test_labels_npy_refusals_name_the_runs_file_and_no_other_benchmark(released):
    """labels.npy holding the labels once is told by the file the run reads (it named the folder's
    first .npy, fog.npy, on a snow run); a label 10 is not CIFAR-10-C's, and no sign of CIFAR-100-C
    (it was called "CIFAR-100-C's folder")."""
    folder = released[0]
    good = np.load(folder / "labels.npy")
    np.save(folder / "labels.npy", good[:N])
    for name in ("fog", "snow"):
        np.save(folder / f"{name}.npy", _images(5 * N))
    with pytest.raises(DataError, match=r"as many as snow\.npy has images$"):
        check_released_npy(folder, ["snow"])
    with pytest.raises(DataError, match=r"as many as snow\.npy has images$"):
        scan_cifar_c(folder, "snow")
    np.save(folder / "labels.npy", np.tile(np.array([0] * (N - 1) + [10], dtype=np.uint8), 5))
    with pytest.raises(DataError, match=r"labels\.npy holds labels up to 10: not CIFAR-10-C's 0 to 9, not "
                                        r"the CIFAR-10-C this suite reads"):
        check_released_npy(folder, ["fog"], "CIFAR-10-C", 32)


# load_array_rows

def test_load_rows_both_readers(cifar10, released):
    rows = [9, 2, 2, 0]
    batch = load_array_rows(cifar10[0] / "test_batch", rows, reader="cifar-pickle")
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 32, 32) and batch.is_contiguous()
    expected = torch.from_numpy(cifar10[1][rows]).permute(0, 3, 1, 2)
    assert torch.equal(batch, expected)
    fog = released[1]["fog"]
    got = load_array_rows(released[0] / "fog.npy", range(5 * N - 1, 5 * N - 4, -1), reader="npy")
    assert torch.equal(got, torch.from_numpy(fog[[5 * N - 1, 5 * N - 2, 5 * N - 3]]).permute(0, 3, 1, 2))
    assert load_array_rows(released[0] / "fog.npy", [], reader="npy").shape == (0, 3, 32, 32)


@pytest.mark.parametrize("reader, rows", [("cifar-pickle", [0, N]), ("npy", [5 * N]), ("npy", [-1])])
def test_load_rows_out_of_range(cifar10, released, reader, rows):
    file = cifar10[0] / "test_batch" if reader == "cifar-pickle" else released[0] / "snow.npy"
    with pytest.raises(DataError, match=rf"{file.name} has \d+ rows .*asked for row {rows[-1]}"):
        load_array_rows(file, rows, reader=reader)


def _replace(path: Path, write) -> None:
    """Write a new file (a new inode, as a download does) over ``path``, with a later mtime."""
    new = path.with_name(path.name + ".new.npy")
    write(new)
    later = os.stat(path).st_mtime_ns + 10**9
    os.utime(new, ns=(later, later))
    os.replace(new, path)


@pytest.mark.parametrize("reader", ["cifar-pickle", "npy"])
def test_load_rows_rereads_an_edited_file(cifar10, released, reader):
    path = cifar10[0] / "test_batch" if reader == "cifar-pickle" else released[0] / "snow.npy"
    first = load_array_rows(path, [0], reader=reader)
    sevens = np.full((5 * N, 32, 32, 3), 7, np.uint8)
    if reader == "npy":
        _replace(path, lambda new: np.save(new, sevens))
    else:
        _replace(path, lambda new: _dump(new, {b"data": _rows(sevens), b"labels": [0] * 5 * N}))
    again = load_array_rows(path, [0], reader=reader)
    assert not torch.equal(first, again) and int(again.min()) == int(again.max()) == 7


def test_load_rows_unknown_reader(released):
    with pytest.raises(ValueError, match="`reader` should be one of"):
        load_array_rows(released[0] / "fog.npy", [0], reader="files")


# Tiny-ImageNet-200

TINY_WNIDS = ["n09999999", "n01443537", "n05555555"]  # unsorted, like the real wnids.txt


def _jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (value, value, value)).save(path)


@pytest.fixture
def tiny(tmp_path) -> Path:
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    for wnid in TINY_WNIDS:
        _jpeg(root / "train" / wnid / "images" / f"{wnid}_0.JPEG", 10)
    annotated = {"val_0.JPEG": "n09999999", "val_1.JPEG": "n01443537", "val_2.JPEG": "n05555555",
                 "val_3.JPEG": "n09999999"}
    lines = [f"{name}\t{wnid}\t0\t5\t62\t60" for name, wnid in annotated.items()]
    (root / "val").mkdir()
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    for k, name in enumerate(annotated):
        _jpeg(root / "val" / "images" / name, 20 * k)
    return root


def test_tiny_val_labels_follow_sorted_wnids(tiny):
    assert is_tiny_imagenet(tiny) and is_tiny_imagenet(tiny / "val")
    assert not is_tiny_imagenet(tiny / "train")
    images = scan_tiny_imagenet_val(tiny)
    assert images.classes == ("n01443537", "n05555555", "n09999999")
    assert images.names == ("val_0.JPEG", "val_1.JPEG", "val_2.JPEG", "val_3.JPEG")
    assert images.labels == (2, 0, 1, 2)  # not wnids.txt order (0, 1, 2, 0)
    assert images.root == tiny / "val" / "images" and images.labelling == "dataset"
    assert images.reader == "files" and images.subset([0]).reader == "files"  # the default
    assert scan_tiny_imagenet_val(tiny / "val") == images


def test_tiny_val_missing_image(tiny):
    (tiny / "val" / "images" / "val_2.JPEG").unlink()
    with pytest.raises(DataError, match=r"1 image annotated in .*val_annotations.txt is missing .*val_2"):
        scan_tiny_imagenet_val(tiny)


def test_tiny_val_unannotated_image(tiny):
    _jpeg(tiny / "val" / "images" / "val_9.JPEG", 0)
    with pytest.raises(DataError, match=r"1 image in .* has no line in .*val_annotations.txt: val_9.JPEG"):
        scan_tiny_imagenet_val(tiny)


@pytest.mark.parametrize("line, expected", [
    ("val_9.JPEG\tn01443537\t0\t5", r"line 5: expected"),
    ("val_9.JPEG\tn00000001\t0\t5\t62\t60", r"line 5: val_9.JPEG is annotated n00000001, which is not in"),
    ("val_0.JPEG\tn01443537\t0\t5\t62\t60", r"line 5: val_0.JPEG is already annotated on line 1"),
])
def test_tiny_val_bad_annotation_lines(tiny, line, expected):
    with open(tiny / "val" / "val_annotations.txt", "a") as stream:
        stream.write(line + "\n")
    _jpeg(tiny / "val" / "images" / "val_9.JPEG", 0)
    with pytest.raises(DataError, match=expected):
        scan_tiny_imagenet_val(tiny)


def test_tiny_val_missing_annotations(tiny):
    (tiny / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match=r"val_annotations.txt does not exist"):
        scan_tiny_imagenet_val(tiny)


def test_tiny_val_sorted_into_wnid_folders_needs_no_annotations(tiny):
    """The common rearrangement (val/<wnid>/*.JPEG) was read only while the annotations file stayed."""
    for line in (tiny / "val" / "val_annotations.txt").read_text().splitlines():
        name, wnid = line.split("\t")[:2]
        (tiny / "val" / wnid).mkdir(exist_ok=True)
        (tiny / "val" / "images" / name).rename(tiny / "val" / wnid / name)
    (tiny / "val" / "images").rmdir()
    with_annotations = scan_tiny_imagenet_val(tiny)
    (tiny / "val" / "val_annotations.txt").unlink()
    images = scan_tiny_imagenet_val(tiny)
    assert images == with_annotations and images.labelling == "folders"
    assert images.classes == ("n01443537", "n05555555", "n09999999")
    assert dict(zip(images.names, images.labels)) == {"n01443537/val_1.JPEG": 0, "n05555555/val_2.JPEG": 1,
                                                      "n09999999/val_0.JPEG": 2, "n09999999/val_3.JPEG": 2}
    (tiny / "wnids.txt").unlink()  # and nothing to say which classes: as before
    with pytest.raises(DataError, match=r"val_annotations.txt does not exist"):
        scan_tiny_imagenet_val(tiny)


def test_tiny_c_labels_and_names(tmp_path):
    root = tmp_path / "Tiny-ImageNet-C"
    cell = root / "fog" / "3"
    _jpeg(cell / "n09999999" / "val_0.JPEG", 1)
    _jpeg(cell / "n09999999" / "val_3.JPEG", 2)
    _jpeg(cell / "n01443537" / "val_1.JPEG", 3)
    found = scan_tiny_imagenet_c(root, "fog", 3)
    assert found.names == ("n01443537/val_1.JPEG", "n09999999/val_0.JPEG", "n09999999/val_3.JPEG")
    assert found.labels == (0, 1, 1) and found.labelling == "folders" and found.root == cell
    assert found.indices == (0, 1, 2)
    full = scan_tiny_imagenet_c(root, "fog", 3, classes=TINY_WNIDS)
    assert full.names == found.names and full.labels == (0, 2, 2)
    assert full.classes == tuple(sorted(TINY_WNIDS))
    with pytest.raises(DataError, match="not among the 2 classes: n09999999"):
        scan_tiny_imagenet_c(root, "fog", 3, classes=TINY_WNIDS[1:])
    with pytest.raises(DataError, match="has no fog/4"):
        scan_tiny_imagenet_c(root, "fog", 4)


def test_a_released_folder_of_the_other_layout_says_so(tmp_path):
    """CIFAR's arrays given for ImageNet-C / -P folders, and image folders for CIFAR's arrays: the
    errors said only what was missing (audit)."""
    from robustbench_gcp.data.array_files import released_npy
    from robustbench_gcp.data.folders import check_released

    arrays, folders = tmp_path / "CIFAR-10-P", tmp_path / "ImageNet-C"
    arrays.mkdir()
    np.save(arrays / "brightness.npy", np.zeros((1, 31, 32, 32, 3), np.uint8))
    (folders / "fog" / "1" / "n01440764").mkdir(parents=True)
    with pytest.raises(DataError, match=r"holds brightness\.npy: released CIFAR-10-C / -P arrays, read with "
                                        "--dataset cifar10"):
        check_released(arrays, [arrays / "brightness"], "--perturbations")
    with pytest.raises(DataError, match=r"no <corruption>\.npy files but folders \(fog\): the released image "
                                        "or video folders"):
        released_npy(folders, "fog")
    # labels.npy, which is looked for first, too (helper-252: it said only that it did not exist)
    from robustbench_gcp.data.array_files import _released_labels

    with pytest.raises(DataError, match=r"labels\.npy does not exist: .*; .*ImageNet-C has no \.npy files "
                                        r"but folders \(fog\): the released image or video folders"):
        _released_labels(folders, "fog")


def test_a_pickle_declaring_more_bytes_than_memory_is_one_line(tmp_path):
    """15 bytes declaring a 2**46-byte string: a MemoryError traceback (security audit)."""
    import struct

    from robustbench_gcp.data.array_files import _unpickle

    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**46) + b"xxxx")
    with pytest.raises(DataError, match="is not a CIFAR python-version pickle: MemoryError"):
        _unpickle(path)


def test_an_empty_or_broken_test_batch_is_named_not_taken_for_an_image_folder(tmp_path):
    """A 0-byte or non-pickle cifar-10-batches-py/test_batch made the folder an image folder: 'holds
    no image files and no class folders'. CIFAR's own names are read, and what is wrong said."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"")
    assert is_cifar_source(folder)
    with pytest.raises(DataError, match=r"test_batch is empty \(0 bytes\)"):
        scan_cifar(folder)
    (folder / "test_batch").write_text("hello\n")
    with pytest.raises(DataError, match="test_batch is not a CIFAR python-version pickle"):
        scan_cifar(folder)
    hundred = tmp_path / "cifar-100-python"
    hundred.mkdir()
    (hundred / "test").write_text("not a pickle")  # `test` in CIFAR-100's own folder is its test set
    assert is_cifar_source(hundred)


def test_released_sequences_of_none_are_refused_and_a_run_of_no_images_is_not_stored(tmp_path):
    """A CIFAR-10-P file of 0 sequences was taken: a run of 0 images went into the store, whose
    every `report` then called the row damaged."""
    from robustbench_gcp.data.array_files import check_released_sequences
    from robustbench_gcp.store import Store

    np.save(tmp_path / "rotate.npy", np.zeros((0, 31, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match=r"rotate\.npy holds 0 sequences; a released CIFAR-10-P file holds "
                                        r"one per test image$"):
        check_released_sequences([(tmp_path / "rotate.npy", 31)], 32)
    with Store(tmp_path / "s.db") as store:
        for n_images, shard_size in ((0, 500), (10, 0)):
            with pytest.raises(ValueError, match="should be positive integers"):
                store.run({"model": "m"}, model="m", arch="m", checkpoint=None, data=None,
                          n_images=n_images, shard_size=shard_size)
        assert store.runs() == []


def test_a_file_that_is_no_npy_is_said_so(released):
    """Its bytes were read by NumPy as pickled data, which advised loading it unsafely."""
    path = released[0] / "snow.npy"
    path.write_bytes(b"hello world" * 10)
    with pytest.raises(DataError, match=r"snow\.npy as a \.npy array: it is not a \.npy file \(it does not "
                                        r"start with NumPy's magic bytes\)$"):
        check_released_npy(released[0], ["snow"])
