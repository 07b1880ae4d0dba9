"""Folders that are not what --data expects: each is one line naming the folder or file and what to
give instead, never a traceback or a silent subset (from an audit of the data input)."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from robustbench_gcp.cli import main
from robustbench_gcp.data.folders import imagenet_wnids, read_labels_file, scan_folder
from robustbench_gcp.data.loader import to_rgb
from robustbench_gcp.data.synthetic import make_image_folder
from robustbench_gcp.errors import DataError

WNIDS = list(imagenet_wnids()[:3])
needs_bytes_names = pytest.mark.skipif(os.name == "nt", reason="POSIX file names are bytes")


@pytest.fixture
def folder(tmp_path):
    return make_image_folder(tmp_path / "val", WNIDS, per_class=2, sizes=(40, 48))


@needs_bytes_names
def test_an_image_name_that_is_not_utf8_is_named(folder):
    """A name from an old archive (Latin-1 bytes): the scan passed it on, and the image list's
    fingerprint failed with UnicodeEncodeError after the scan."""
    first = next((folder / WNIDS[0]).iterdir())
    odd = os.path.join(os.fsencode(folder / WNIDS[0]), b"caf\xe9.JPEG")
    shutil.copy(os.fsencode(first), odd)
    with pytest.raises(DataError, match=r"image file .*caf\\xe9\.JPEG has a name that is not UTF-8: rename"):
        scan_folder(folder)


@needs_bytes_names
def test_a_data_path_that_is_not_utf8_is_a_usage_error(tmp_path):
    odd = os.path.join(os.fsencode(tmp_path), b"d\xe9")
    os.mkdir(odd)
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--data", os.fsdecode(odd),
                                       "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--data'" in result.output
    assert r"d\xe9 has a name that is not UTF-8" in result.output
    assert not (tmp_path / "s.db").exists()


def test_images_beside_class_folders_are_not_left_out_unsaid(folder):
    """A half-sorted val folder: the images at its top were dropped and the run said nothing."""
    shutil.copy(next((folder / WNIDS[0]).iterdir()), folder / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match=r"holds 1 image at its top beside 3 class folders: they have no "
                                        r"class\. Move them into their class folders"):
        scan_folder(folder)
    (folder / "ILSVRC2012_val_00000001.JPEG").unlink()
    (folder / ".thumbnail.jpg").write_bytes(b"")  # hidden: not an image of the set
    assert len(scan_folder(folder)) == 6


def test_the_dataset_root_names_its_split_folders(tmp_path):
    """imagenet/{train,val}/<wnid>: the advice was --class-order sorted, which ran 2 classes."""
    make_image_folder(tmp_path / "imagenet" / "train", WNIDS, per_class=1, sizes=(40, 48))
    make_image_folder(tmp_path / "imagenet" / "val", WNIDS, per_class=1, sizes=(40, 48))
    with pytest.raises(DataError, match=r"holds folders of ImageNet class folders \(train, val\), not class "
                                        r"folders: give one of them, e\.g\. --data .*imagenet/val$") as error:
        scan_folder(tmp_path / "imagenet")
    assert "--class-order" not in str(error.value)


def test_other_datasets_layouts_say_what_to_give(tmp_path):
    binary = tmp_path / "cifar-10-batches-bin"
    binary.mkdir()
    (binary / "test_batch.bin").write_bytes(bytes(3073))
    (binary / "batches.meta.txt").write_text("airplane\n")
    with pytest.raises(DataError, match=r"holds CIFAR's binary version \(test_batch\.bin\): gcp-robust reads "
                                        r"the python version"):
        scan_folder(binary)
    val = tmp_path / "tiny-imagenet-200" / "val"
    (val / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(val / "images" / "val_0.JPEG")
    (val / "val_annotations.txt").write_text("val_0.JPEG\tn01443537\t0\t0\t63\t63\n")
    with pytest.raises(DataError, match=r"is the images of Tiny-ImageNet's val folder, whose labels are in "
                                        r".*val_annotations\.txt: give .*tiny-imagenet-200/val "):
        scan_folder(val / "images")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "README.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes holds no image files \(.*\) and no class folders"):
        scan_folder(other)  # it said "is empty"
    (other / "README.txt").unlink()
    with pytest.raises(DataError, match=r"notes is empty"):
        scan_folder(other)


def test_a_labels_file_with_a_byte_order_mark(tmp_path):
    """Excel saves a CSV with a UTF-8 byte-order mark: its header was not recognised."""
    path = tmp_path / "LOC_val_solution.csv"
    path.write_bytes(b"\xef\xbb\xbfImageId,PredictionString\r\n"
                     + f"ILSVRC2012_val_00000001,{WNIDS[2]} 1 2 3 4\r\n".encode())
    assert read_labels_file(path) == ({"ILSVRC2012_val_00000001": 2}, True)


def test_palette_images_with_transparency_convert_without_a_warning():
    """PIL warned on the run's output, naming no file; the pixels are those of convert("RGB")."""
    image = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8), "L").convert("P")
    image.info["transparency"] = bytes(range(256))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.asarray(image.convert("RGB"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(np.asarray(to_rgb(image)), expected)


@needs_bytes_names
def test_data_paths_not_utf8_from_the_working_folder_or_the_data_root(tmp_path, monkeypatch):
    """A relative --data inside such a folder, or $GCP_ROBUST_DATA naming one: a traceback from the
    store (the command line's check sees the path as given)."""
    odd = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"odd\xff"))
    make_image_folder(os.path.join(odd, "val", "val"), ["a", "b"], per_class=1, sizes=(80, 90))
    monkeypatch.chdir(os.path.join(odd, "val"))
    relative = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--random-weights", "--data", "val",
                                         "--class-order", "sorted", "--store", str(tmp_path / "s.db")])
    assert relative.exit_code == 1 and isinstance(relative.exception, SystemExit), relative.output
    assert r"odd\xff/val/val has a name that is not UTF-8: rename it" in relative.stderr
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GCP_ROBUST_DATA", odd)  # the shipped file's imagenet/val under it
    os.rename(os.path.join(odd, "val"), os.path.join(odd, "imagenet"))
    rooted = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--random-weights", "--class-order",
                                       "sorted", "--store", str(tmp_path / "s.db")])
    assert rooted.exit_code != 0 and isinstance(rooted.exception, SystemExit), rooted.output
    assert r"datasets.imagenet.clean: " in rooted.stderr, rooted.stderr
    assert r"odd\xff/imagenet/val has a name that is not UTF-8" in rooted.stderr


def test_the_kaggle_imagenet_root_points_at_val_with_its_labels(tmp_path):
    """CLS-LOC/{train/<wnid>, val (flat), test (flat)}: the hint named train, the only split of class
    folders."""
    root = tmp_path / "CLS-LOC"
    make_image_folder(root / "train", WNIDS, per_class=1, sizes=(40, 48))
    for split in ("val", "test"):
        (root / split).mkdir()
        shutil.copy(next((root / "train" / WNIDS[0]).iterdir()), root / split / f"{split}_0001.JPEG")
    with pytest.raises(DataError, match=r"\(train\), not class folders: give one of them, e\.g\. --data .*"
                                        r"CLS-LOC/val --labels LOC_val_solution\.csv \(its images"):
        scan_folder(root)


def test_a_tiny_imagenet_root_without_its_wnids_file_is_read_as_its_val_folder(tmp_path):
    """It was read as class folders (val, train ...): the error spoke of class counts."""
    from robustbench_gcp.data.datasets import detect_dataset, get_dataset, scan_dataset
    from robustbench_gcp.data.tiny_imagenet import scan_tiny_imagenet_val

    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "train" / "n01443537" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(root / "train" / "n01443537" / "images" / "t_0.JPEG")
    wnids = [f"n{i:08d}" for i in range(200)]
    lines = []
    for i, wnid in enumerate(wnids):
        Image.new("RGB", (64, 64), (i, 0, 0)).save(root / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    assert detect_dataset(root) == "tinyimagenet"
    images = scan_dataset(get_dataset("tinyimagenet"), root)
    assert len(images) == 200 and images.classes == tuple(wnids)
    assert images.labels == scan_tiny_imagenet_val(root / "val").labels
