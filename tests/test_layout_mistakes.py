"""Data folders arranged half-way or with leftovers: a half-sorted val folder read with --labels, a
labels file that labels an image twice, a dataset root numbered in sorted order, a file manager's
Thumbs.db in a released class folder, an empty images/ beside a sorted Tiny-ImageNet val folder,
and a --corrupted-dir that is missing or a file, named by the suite's own benchmark."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from robustbench_gcp.cli import main
from robustbench_gcp.data.folders import check_released, scan_folder
from robustbench_gcp.data.synthetic import make_image_folder
from robustbench_gcp.data.tiny_imagenet import scan_tiny_imagenet_val
from robustbench_gcp.errors import DataError

WNIDS = ("n01440764", "n01443537")


@pytest.fixture
def sorted_val(tmp_path):
    return make_image_folder(tmp_path / "sorted", WNIDS, per_class=2, seed=1)


def test_labels_on_a_half_sorted_val_folder_are_refused(tmp_path, sorted_val):
    """With --labels only the top of the folder was read: the images already sorted into a class
    folder were left out of the run, unsaid (without --labels the folder is refused)."""
    flat = tmp_path / "val"
    flat.mkdir()
    lines = []
    for k, path in enumerate(sorted(sorted_val.rglob("*.JPEG"))):
        name = f"ILSVRC2012_val_{k:08d}.JPEG"
        folder = flat / path.parent.name if path.parent.name == WNIDS[1] else flat
        folder.mkdir(exist_ok=True)
        shutil.copy(path, folder / name)
        lines.append(f"{name} {0 if path.parent.name == WNIDS[0] else 1}")
    labels = tmp_path / "val.txt"
    labels.write_text("\n".join(lines) + "\n")
    said = rf"holds 2 images at its top and images in 1 subfolder \({WNIDS[1]}\): --labels labels the images"
    with pytest.raises(DataError, match=rf"data folder {flat} {said} at its top only"):
        scan_folder(flat, labels)
    (flat / WNIDS[1] / "notes").mkdir()  # a folder without images is no sorted class
    for image in (flat / WNIDS[1]).glob("*.JPEG"):
        image.rename(flat / image.name)
    assert len(scan_folder(flat, labels)) == 4


@pytest.mark.parametrize("text, line", [
    ("a.JPEG 0\nb.JPEG 1\na.JPEG 1\n", "line 3: a.JPEG is labelled 1, but line 1 labelled it 0"),
    ("ImageId,PredictionString\na,n01440764 1 1 9 9\na,n01443537 1 1 9 9\n",
     "line 3: a is labelled 1, but line 2 labelled it 0"),
])
def test_a_labels_file_that_labels_an_image_twice_is_refused(tmp_path, sorted_val, text, line):
    """The last line won, silently (Tiny-ImageNet's annotations refuse the same); the same label
    given twice is harmless."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for name, source in zip(("a.JPEG", "b.JPEG"), sorted(sorted_val.rglob("*.JPEG"))):
        shutil.copy(source, flat / name)
    labels = tmp_path / "labels.txt"
    labels.write_text(text)
    with pytest.raises(DataError, match=f"{labels}, {line}: an image has one label"):
        scan_folder(flat, labels)
    labels.write_text("a.JPEG 0\nb.JPEG 1\na.JPEG 0\n")
    assert scan_folder(flat, labels).labels == (0, 1)


def test_a_dataset_root_in_sorted_order_is_refused_as_in_imagenet_order(tmp_path, sorted_val):
    """--class-order sorted took train/ and val/ for two classes: every image got its split's label."""
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        shutil.copytree(sorted_val, root / split)
    for order in ("imagenet", "sorted"):
        with pytest.raises(DataError, match=rf"holds folders of ImageNet class folders \(train, val\), not "
                                            rf"class folders: give one of them, e.g. --data {root / 'val'}$"):
            scan_folder(root, class_order=order)
    (root / "val" / "README").mkdir()  # user classes named anything: numbered as before
    assert scan_folder(root / "val", class_order="sorted").classes == ("README", *WNIDS)


def test_a_released_class_folder_holding_no_image_is_no_class_folder(tmp_path):
    """A Thumbs.db left in a class folder of one cell stopped the run, 'other class folders with
    images'."""
    root = tmp_path / "C"
    for cell in ("fog/1", "fog/2"):
        for wnid in WNIDS:
            (root / cell / wnid).mkdir(parents=True)
            (root / cell / wnid / "a.JPEG").write_bytes(b"")
    cells = [root / "fog" / "1", root / "fog" / "2"]
    (root / "fog" / "2" / "n01530575").mkdir()
    (root / "fog" / "2" / "n01530575" / "Thumbs.db").write_bytes(b"x")
    check_released(root, cells, "--corruptions")
    (root / "fog" / "2" / "n01530575" / "a.JPEG").write_bytes(b"")
    with pytest.raises(DataError, match=r"fog/2 has beyond it 1: n01530575"):
        check_released(root, cells, "--corruptions")
    videos = tmp_path / "P"  # ImageNet-P's class folders hold videos
    for cell in ("gaussian_noise", "shot_noise"):
        (videos / cell / WNIDS[0]).mkdir(parents=True)
        (videos / cell / WNIDS[0] / "a.mp4").write_bytes(b"")
    (videos / "shot_noise" / WNIDS[1]).mkdir()
    (videos / "shot_noise" / WNIDS[1] / "b.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=rf"shot_noise has beyond it 1: {WNIDS[1]}"):
        check_released(videos, [videos / "gaussian_noise", videos / "shot_noise"], "--perturbations",
                       (".mp4",))


def test_an_empty_images_folder_beside_a_sorted_tiny_imagenet_val_is_ignored(tmp_path):
    """Sorting val/images/ into val/<wnid>/ leaves images/ empty: every annotated image was said to
    be missing from it."""
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    rng = np.random.default_rng(0)
    lines = []
    for k in range(4):
        wnid = WNIDS[k % 2]
        (root / "val" / wnid).mkdir(exist_ok=True)
        picture = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        picture.save(root / "val" / wnid / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnid}")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    found = scan_tiny_imagenet_val(root)
    assert len(found) == 4 and found.labels == (0, 0, 1, 1)
    (root / "val" / "val_annotations.txt").unlink()  # sorted, the annotations gone: wnids.txt labels
    assert scan_tiny_imagenet_val(root).labels == (0, 0, 1, 1)
    shutil.rmtree(root / "val" / WNIDS[0])
    shutil.rmtree(root / "val" / WNIDS[1])
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"4 images annotated in .* are missing from .*val/images"):
        scan_tiny_imagenet_val(root)  # nothing sorted either: the flat layout's message


@pytest.mark.parametrize("suite, benchmark", [
    ("cifar10-c", "CIFAR-10-C"), ("tinyimagenet-c", "Tiny-ImageNet-C"), ("cifar10-p", "CIFAR-10-P"),
    ("imagenet-c", "ImageNet-C")])
def test_a_missing_corrupted_dir_is_named_by_the_suites_benchmark(tmp_path, suite, benchmark):
    """'ImageNet-C folder ... does not exist' for a CIFAR-10-C run, and for a path that is a file."""
    runner = CliRunner()
    for path, state in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "afile", "is not a folder")):
        if path.name == "afile":
            path.write_text("hi")
        result = runner.invoke(main, ["eval", "--model", "resnet18-gap", "--random-weights", "--suite", suite,
                                      "--corrupted-dir", str(path), "--store", str(tmp_path / "s.db")])
        assert result.exit_code == 1, result.output
        assert f"Error: {benchmark} folder {path} (--corrupted-dir) {state}" in result.output


def test_a_named_pipe_among_the_images_is_refused_not_waited_on(tmp_path, sorted_val):
    """`mkfifo class/zz.JPEG`: the loader opened it and the run hung."""
    import os

    os.mkfifo(sorted_val / WNIDS[0] / "zz.JPEG")
    with pytest.raises(DataError, match=r"zz\.JPEG is not a regular file \(a named pipe, socket or device\)"):
        scan_folder(sorted_val)
    (sorted_val / WNIDS[0] / "zz.JPEG").unlink()
    (sorted_val / WNIDS[0] / "gone.JPEG").symlink_to(tmp_path / "nowhere.JPEG")  # named when it is read
    assert len(scan_folder(sorted_val)) == 5


def test_an_image_too_long_to_resize_in_memory_is_named(tmp_path, monkeypatch):
    """A 240-byte 40000x1 PNG resized to a 256 px short side asks for 10 million px rows: the
    MemoryError escaped the loader as a traceback. (The allocation's failure is simulated: making
    it for real would take 8 GB.)"""
    from robustbench_gcp.data.loader import Preprocess, iterate_batches

    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((40000, 1, 3), 128, np.uint8)).save(strip)

    def out_of_memory(self, size, *args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(Image.Image, "resize", out_of_memory)
    with pytest.raises(DataError, match=rf"cannot read image {strip}: out of memory decoding and resizing it "
                                        r"\(1x40000 px\)"):
        list(iterate_batches([strip], Preprocess(), batch_size=1))
