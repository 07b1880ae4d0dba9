"""Image lists, labels, class-balanced subsets and preprocessing."""

from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from robustbench_gcp.data.folders import balanced_subset, check_released, imagenet_wnids, scan_folder
from robustbench_gcp.data.loader import Preprocess, iterate_batches
from robustbench_gcp.data.synthetic import make_image_folder
from robustbench_gcp.errors import ConfigError, DataError


def test_wnid_list_is_the_standard_order():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert list(wnids) == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[281] == "n02123045" and wnids[-1] == "n15075141"


def test_wnid_folders_get_standard_indices_even_for_a_subset(image_folder):
    images = scan_folder(image_folder)
    assert images.labelling == "imagenet"
    assert sorted(set(images.labels)) == [0, 1, 2, 281]
    for name, label in zip(images.names, images.labels):
        assert imagenet_wnids()[label] == name.split("/")[0]
    assert images.indices == tuple(range(len(images)))


def test_sorted_class_order_labels_by_sorted_folder_names(tmp_path):
    make_image_folder(tmp_path, ["zebra", "apple", "mango"], per_class=1)
    images = scan_folder(tmp_path, class_order="sorted")
    assert images.labelling == "folders" and images.classes == ("apple", "mango", "zebra")
    assert [(n.split("/")[0], label) for n, label in zip(images.names, images.labels)] == [
        ("apple", 0), ("mango", 1), ("zebra", 2)]


def test_sorted_class_order_applies_to_wnid_folders_too(image_folder):
    images = scan_folder(image_folder, class_order="sorted")
    assert images.labelling == "folders"
    assert images.classes == tuple(sorted(p.name for p in image_folder.iterdir()))
    assert sorted(set(images.labels)) == [0, 1, 2, 3]
    assert images.fingerprint() != scan_folder(image_folder).fingerprint()  # 281 became 3


def test_non_wnid_folders_need_an_explicit_class_order(tmp_path):
    make_image_folder(tmp_path, ["zebra", "apple", "mango"], per_class=1)
    with pytest.raises(DataError, match=r"class folders that are not ImageNet-1k wnids: apple, mango, "
                                        r"zebra\. .*pass --class-order sorted"):
        scan_folder(tmp_path)
    with pytest.raises(ValueError, match="`class_order` should be 'imagenet' or 'sorted'. Got 'alpha'"):
        scan_folder(tmp_path, class_order="alpha")


def test_a_stray_folder_among_wnid_folders_is_named(image_folder, tmp_path):
    root = tmp_path / "val"
    shutil.copytree(image_folder, root)
    make_image_folder(root, ["n99999999"], per_class=1)
    with pytest.raises(DataError, match=rf"data folder {re.escape(str(root))} has class folders that are "
                                        r"not ImageNet-1k wnids: n99999999 \(beside 4 wnid folders\)"):
        scan_folder(root)
    # many odd folders: a few named, then a count
    make_image_folder(root, [f"extra{i}" for i in range(7)], per_class=1)
    with pytest.raises(DataError, match=r"wnids: extra0, extra1, extra2, extra3, extra4 and 3 more "):
        scan_folder(root)


def test_hidden_and_imageless_folders_are_not_classes(image_folder, tmp_path):
    """Hidden folders are never classes; a folder without images is none of the wnids', but in
    sorted order it keeps its place, as in torchvision's ImageFolder (the folders after it were
    numbered one lower: a class left empty shifted every label after it)."""
    root = tmp_path / "val"
    shutil.copytree(image_folder, root)
    (root / ".ipynb_checkpoints").mkdir()
    make_image_folder(root / ".cache", ["n01440764"], per_class=2)  # hidden, with images
    make_image_folder(root / "n01440764", [".ipynb_checkpoints"], per_class=1)  # hidden inside a class
    by_name = scan_folder(image_folder, class_order="sorted")
    images = scan_folder(root, class_order="sorted")
    assert (images.names, images.labels, images.classes) == (by_name.names, by_name.labels, by_name.classes)
    (root / "n01440000").mkdir()  # empty, sorted first
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no images here")
    images, by_wnid = scan_folder(root), scan_folder(image_folder)
    assert (images.names, images.labels, images.classes) == (by_wnid.names, by_wnid.labels, by_wnid.classes)
    images = scan_folder(root, class_order="sorted")
    assert images.names == by_name.names
    assert images.classes == ("n01440000", *by_name.classes, "notes")
    assert images.labels == tuple(label + 1 for label in by_name.labels)


def test_files_without_an_image_extension_are_ignored(tmp_path):
    make_image_folder(tmp_path, ["a"], per_class=2)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "a" / "._a_0000.JPEG").write_bytes(b"\0")  # a macOS resource fork beside an image
    assert len(scan_folder(tmp_path, class_order="sorted")) == 2


def test_symlink_loops_are_not_followed(image_folder, tmp_path):
    root = tmp_path / "val"
    shutil.copytree(image_folder, root)
    (root / "n01440764" / "up").symlink_to("..")
    (root / "n01443537" / "self").symlink_to(".")
    (root / "n01484850" / "deeper").mkdir()
    (root / "n01484850" / "deeper" / "back").symlink_to("../..")
    images, clean = scan_folder(root), scan_folder(image_folder)
    assert len(images) == 12 and (images.names, images.labels) == (clean.names, clean.labels)


def test_symlinked_class_folders_are_followed(image_folder, tmp_path):
    elsewhere, root = tmp_path / "elsewhere", tmp_path / "val"
    shutil.copytree(image_folder, elsewhere)
    root.mkdir()
    for folder in elsewhere.iterdir():
        (root / folder.name).symlink_to(folder, target_is_directory=True)
    images, clean = scan_folder(root), scan_folder(image_folder)
    assert (images.names, images.labels) == (clean.names, clean.labels)
    assert all(path.is_file() for path in images.paths())


def test_a_file_reached_by_two_names_is_counted_once(image_folder, tmp_path):
    root = tmp_path / "val"
    shutil.copytree(image_folder, root)
    first = sorted((root / "n01440764").iterdir())[0]
    (root / "n01440764" / "again").mkdir()
    (root / "n01440764" / "again" / "copy.JPEG").symlink_to(first)
    (root / "n01440764" / "zz_alias").symlink_to(root / "n01440764" / "again", target_is_directory=True)
    images = scan_folder(root)
    assert len(images) == 12 and "n01440764/again/copy.JPEG" not in images.names
    # the same file in two classes is a contradiction, named
    (root / "n01443537" / "stolen.JPEG").symlink_to(first)
    with pytest.raises(DataError, match=rf"{first.name} is in class folders n01440764 and n01443537 "
                                        rf"\(as n01440764/{first.name} and n01443537/stolen.JPEG\)"):
        scan_folder(root)


def test_a_hard_linked_file_is_one_file(image_folder, tmp_path):
    """A hard link has a real path of its own: one image in two classes was counted twice, with
    two labels, where a symbolic link was refused."""
    root = tmp_path / "val"
    shutil.copytree(image_folder, root)
    first = sorted((root / "n01440764").iterdir())[0]
    os.link(first, root / "n01440764" / "zz_again.JPEG")
    images = scan_folder(root)
    assert len(images) == 12 and "n01440764/zz_again.JPEG" not in images.names
    os.link(first, root / "n01443537" / "stolen.JPEG")
    with pytest.raises(DataError, match=r"is in class folders n01440764 and n01443537 "
                                        rf"\(as n01440764/{first.name} and n01443537/stolen.JPEG\)"):
        scan_folder(root)


def test_flat_folder_with_loc_val_solution(tmp_path):
    flat = tmp_path / "val"
    flat.mkdir()
    for i in (1, 2, 3):
        Image.new("RGB", (300, 260), (i * 40, 0, 0)).save(flat / f"ILSVRC2012_val_0000000{i}.JPEG")
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\n"
                   "ILSVRC2012_val_00000002,n01443537 1 2 3 4 n01443537 5 6 7 8\n"
                   "ILSVRC2012_val_00000001,n15075141 1 2 3 4\n"
                   "ILSVRC2012_val_00000003,n01440764 0 0 10 10\n")
    images = scan_folder(flat, csv)
    assert images.labels == (999, 1, 0) and images.labelling == "wnids"
    listing = tmp_path / "val.txt"
    listing.write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n"
                       "ILSVRC2012_val_00000003.JPEG 230\n")
    assert scan_folder(flat, listing).labels == (65, 970, 230)
    with pytest.raises(ConfigError, match="^--class-order sorted and --labels exclude each other: the "
                                          "first numbers class folders, the second labels a flat folder of "
                                          "images$"):
        scan_folder(flat, listing, class_order="sorted")  # a usage error: exit status 2, not 1


def test_flat_folder_errors(tmp_path):
    Image.new("RGB", (300, 260)).save(tmp_path / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="no class folders: for the flat ImageNet val layout give the "
                                        "ground truth with --labels"):
        scan_folder(tmp_path)
    bad = tmp_path.parent / "bad_labels.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG cat\n")
    with pytest.raises(DataError, match="line 1: expected '<file> <class index>'"):
        scan_folder(tmp_path, bad)
    other = tmp_path.parent / "other.txt"
    other.write_text("ILSVRC2012_val_00000009.JPEG 3\n")
    with pytest.raises(DataError, match="ILSVRC2012_val_00000001.JPEG has no label in"):
        scan_folder(tmp_path, other)
    # class folders given --labels: said as such, not "no image files"
    folders = tmp_path.parent / "folders"
    (folders / "n01440764").mkdir(parents=True)
    Image.new("RGB", (30, 26)).save(folders / "n01440764" / "a.JPEG")
    said = (r"^--labels is for a flat folder of images \(the ImageNet val layout\); data folder "
            f"{folders} has 1 subfolder and no images at its top: for class folders, drop --labels "
            r"\(the folder names are the labels\)$")
    with pytest.raises(DataError, match=said):
        scan_folder(folders, other)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="is empty"):
        scan_folder(tmp_path)
    (tmp_path / "n01440764").mkdir()
    with pytest.raises(DataError, match="has 1 class folder but no image files"):
        scan_folder(tmp_path)


def test_balanced_subset_is_round_robin_and_deterministic():
    labels = [0] * 10 + [1] * 3 + [2] * 6
    chosen = balanced_subset(labels, 9)
    assert chosen == sorted(chosen) and len(set(chosen)) == 9
    assert Counter(labels[i] for i in chosen) == {0: 3, 1: 3, 2: 3}
    chosen = balanced_subset(labels, 13)
    assert Counter(labels[i] for i in chosen) == {0: 5, 1: 3, 2: 5}
    assert balanced_subset(labels, 13) == chosen
    assert balanced_subset(labels, 100) == list(range(len(labels)))
    # classes in index order, not in the order they first appear (CIFAR batches, Tiny-ImageNet's
    # annotations): the last, partial round takes classes 0 and 1, positions 5 and 6
    assert balanced_subset([3, 1, 0, 2, 3, 1, 0, 2, 0, 1], 6) == [0, 1, 2, 3, 5, 6]


def test_limit_keeps_the_full_folder_index_for_seeding(image_folder):
    images = scan_folder(image_folder)
    subset = images.limit(5)
    assert len(subset) == 5 and len(set(subset.labels)) == 4
    assert all(images.names[i] == name for i, name in zip(subset.indices, subset.names))
    assert subset.fingerprint() != images.fingerprint()
    assert images.limit(None) is images


def test_preprocess_equals_torchvision_resize_and_center_crop(image_folder):
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                    transforms.PILToTensor()])
    images = scan_folder(image_folder)
    paths = images.paths()[:5]
    batches = list(iterate_batches(paths, Preprocess(), batch_size=2))
    ours = torch.cat([b for b, _ in batches])
    assert ours.dtype == torch.uint8 and ours.shape == (5, 3, 224, 224)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            assert torch.equal(ours[i], reference(image.convert("RGB")))


@pytest.mark.parametrize("size", [(337, 256), (338, 256), (339, 256), (341, 256), (256, 341), (500, 333),
                                  (333, 501)])
def test_the_centre_crop_rounds_its_offset_as_torchvision(tmp_path, size):
    """An offset of x.5 pixels (after the resize) rounds half to even, as CenterCrop does: the
    fixture's photographs had none of those sizes."""
    pixels = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    reference = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                    transforms.PILToTensor()])
    (batch, _), = iterate_batches([tmp_path / "x.png"], Preprocess(), batch_size=1)
    with Image.open(tmp_path / "x.png") as image:
        assert torch.equal(batch[0], reference(image.convert("RGB")))


def test_released_size_images_are_not_resized(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    (batch, _), = iterate_batches([tmp_path / "x.png"], Preprocess(None, 224), batch_size=1)
    assert torch.equal(batch[0], torch.from_numpy(pixels).permute(2, 0, 1))


def test_unreadable_images_are_named(tmp_path, image_folder):
    fake = tmp_path / "fake.JPEG"
    fake.write_text("this is not a JPEG")
    truncated = tmp_path / "truncated.JPEG"
    data = next(image_folder.rglob("*.JPEG")).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for path, reason in ((fake, "not an image"), (truncated, "truncated")):
        with pytest.raises(DataError, match=f"cannot read image {path}: .*{reason}"):
            list(iterate_batches([path], Preprocess(), batch_size=1))


def test_unreadable_image_in_a_worker_is_named(tmp_path, image_folder):
    fake = tmp_path / "fake.JPEG"
    fake.write_text("this is not a JPEG")
    paths = [*scan_folder(image_folder).paths()[:3], fake]
    with pytest.raises(DataError, match=f"cannot read image {fake}"):
        list(iterate_batches(paths, Preprocess(), batch_size=2, workers=2))


# ------------------------------------------------------------------------ decoding to 8-bit RGB


def decoded(path) -> np.ndarray:
    """The loader's (H, W, 3) uint8 pixels of a square image, read at its own size."""
    with Image.open(path) as image:
        size = image.width
    (batch, _), = iterate_batches([path], Preprocess(None, size), batch_size=1)
    return batch[0].permute(1, 2, 0).numpy()


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA by the channel count), written by hand:
    PIL cannot write 16-bit color PNGs."""
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    rows = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def to_8bit(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded to the nearest level."""
    return np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)


@pytest.fixture(scope="module")
def gray16() -> np.ndarray:
    """A 16-bit gradient with a mean near the middle (8-bit mean about 124)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 62000, 40 * 40).reshape(40, 40) + rng.integers(0, 3000, (40, 40))
    return ramp.astype(np.uint16)


def test_16_bit_gray_png_and_tiff_are_scaled_not_clipped(tmp_path, gray16):
    expected = np.repeat(to_8bit(gray16)[..., None], 3, axis=2)
    assert 120 < expected.mean() < 130
    Image.fromarray(gray16).save(tmp_path / "gray16.png")  # PIL mode "I;16"
    Image.fromarray(gray16).save(tmp_path / "gray16.tif")
    (tmp_path / "by_hand.png").write_bytes(png16(gray16))
    with Image.open(tmp_path / "gray16.png") as image:
        assert image.mode.startswith("I")
    for name in ("gray16.png", "gray16.tif", "by_hand.png"):
        assert np.array_equal(decoded(tmp_path / name), expected), name


def test_16_bit_pgm_opened_as_mode_i_is_scaled(tmp_path, gray16):
    path = tmp_path / "gray16.pgm"
    path.write_bytes(b"P5\n40 40\n65535\n" + gray16.astype(">u2").tobytes())
    with Image.open(path) as image:
        assert image.mode == "I"
    assert np.array_equal(decoded(path)[..., 0], to_8bit(gray16))


def test_16_bit_color_pngs_decode_within_one_level(tmp_path):
    rng = np.random.default_rng(1)
    for channels in (3, 4, 2):
        pixels = rng.integers(0, 65536, (32, 32, channels), dtype=np.uint16)
        path = tmp_path / f"color16_{channels}.png"
        path.write_bytes(png16(pixels))
        colors = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
        difference = decoded(path).astype(int) - to_8bit(colors).astype(int)
        assert np.abs(difference).max() <= 1, channels


def test_pixels_of_unknown_range_are_refused_with_the_file_named(tmp_path):
    for name, array in (("float.tif", np.full((30, 30), 0.5, np.float32)),
                        ("int32.tif", np.full((30, 30), 70000, np.int32))):
        Image.fromarray(array).save(tmp_path / name)
        with pytest.raises(DataError, match=rf"cannot read image {re.escape(str(tmp_path / name))}: "
                                            r".*no standard range"):
            list(iterate_batches([tmp_path / name], Preprocess(None, 30), batch_size=1))


def test_8_bit_modes_give_the_right_rgb(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 128, 255]], [[10, 20, 30], [200, 200, 200]]], np.uint8)
    rgb = np.kron(rgb, np.ones((8, 8, 1), np.uint8))  # 16 x 16, blocks of one color
    Image.fromarray(rgb).quantize(4).save(tmp_path / "palette.png")
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    gray = rgb[..., 1]
    Image.fromarray(np.stack([gray, 255 - gray], axis=2), "LA").save(tmp_path / "la.png")
    Image.fromarray(gray).save(tmp_path / "l.png")
    Image.fromarray(gray > 100).save(tmp_path / "bilevel.png")  # mode "1"
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    gray3 = np.repeat(gray[..., None], 3, axis=2)
    for name, expected in (("palette.png", rgb), ("rgba.png", rgb), ("la.png", gray3), ("l.png", gray3),
                           ("bilevel.png", np.where(gray3 > 100, 255, 0)), ("cmyk.tif", rgb)):
        assert np.array_equal(decoded(tmp_path / name), expected), name


def test_released_folders_hold_the_first_folders_class_folders(tmp_path):
    """The images of a released run are the first selected folder's: a class folder emptied there, or
    missing or extra in another folder, is refused before any compute, naming both folders."""
    root = tmp_path / "C"
    for cell in ("fog/1", "fog/2", "contrast/1"):
        for wnid in ("n01440764", "n01443537"):
            (root / cell / wnid).mkdir(parents=True)
            (root / cell / wnid / "a.JPEG").write_bytes(b"")
    cells = [root / "fog" / "1", root / "fog" / "2", root / "contrast" / "1"]
    check_released(root, cells, "--corruptions")
    (root / "fog" / "1" / "n01440764" / "a.JPEG").unlink()  # emptied by a partial extraction
    with pytest.raises(DataError, match=r"^fog/2 and fog/1 hold other class folders with images \(fog/2 has "
                                        r"beyond it 1: n01440764\).*--corruptions$"):
        check_released(root, cells, "--corruptions")
    check_released(root, cells[:1], "--corruptions")  # one folder: nothing to compare
    shutil.rmtree(root / "contrast" / "1" / "n01443537")
    with pytest.raises(DataError, match=r"contrast/1 lacks 1: n01443537"):
        check_released(root, [cells[1], cells[2]], "--corruptions")
    with pytest.raises(DataError, match=r"lacks 1 of the selected folders \(fog/3\)"):
        check_released(root, [*cells, root / "fog" / "3"], "--corruptions")
    # a partial extraction's empty folder, or a hidden one, is no class folder, wherever it stands
    # (an empty one of the first folder that another lacks crashed: FileNotFoundError)
    shutil.rmtree(root / "fog" / "1" / "n01440764")
    (root / "fog" / "1" / "n01440764").mkdir()
    (root / "fog" / "1" / "n09999999").mkdir()
    (root / "fog" / "2" / ".ipynb_checkpoints").mkdir()
    (root / "fog" / "2" / ".ipynb_checkpoints" / "a.txt").write_text("")
    (root / "fog" / "2" / "n01440764" / "a.JPEG").unlink()
    (root / "fog" / "2" / "n04000000").mkdir()
    check_released(root, cells[:2], "--corruptions")
    # an image at the top of another folder: refused as the first folder's is (it went unsaid, helper-235)
    (root / "fog" / "2" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    with pytest.raises(DataError, match=r"^released folder fog/2 holds 1 image at its top beside its class "
                                        r"folders \(ILSVRC2012_val_00000001\.JPEG\): they have no class"):
        check_released(root, cells[:2], "--corruptions")
    # by the suite's own extensions, as the first folder's (a preview image among ImageNet-P's videos was
    # refused in another folder, accepted in the first, helper-237)
    check_released(root, cells[:2], "--perturbations", (".mp4",))
    (root / "fog" / "2" / "n01440764" / "a.mp4").write_bytes(b"")
    (root / "fog" / "2" / "clip.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=r"^released folder fog/2 holds 1 video at its top .*\(clip\.mp4\)"):
        check_released(root, cells[:2], "--perturbations", (".mp4",))
    # nor is a folder of images among videos a class folder (helper-238)
    (root / "fog" / "2" / "clip.mp4").unlink()
    (root / "fog" / "1" / "n01440764" / "a.mp4").write_bytes(b"")
    (root / "fog" / "1" / "previews").mkdir()
    (root / "fog" / "1" / "previews" / "a.jpg").write_bytes(b"")
    check_released(root, cells[:2], "--perturbations", (".mp4",))


def test_a_released_cell_without_wnid_folders_says_the_layout(tmp_path):
    from robustbench_gcp.data.folders import scan_imagenet_c

    cell = tmp_path / "C" / "fog" / "1"
    cell.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(cell / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match=r"fog/1 holds files but no wnid folders: the released layout is "
                                        r"<root>/<corruption>/<severity>/<wnid>/<image>$"):
        scan_imagenet_c(tmp_path / "C", "fog", 1)


def test_an_empty_released_video_folder_names_the_video_layout(tmp_path):
    """It said "data folder ... expected <root>/<class>/<image> files" of an ImageNet-P folder."""
    from robustbench_gcp.data.folders import scan_videos

    (tmp_path / "rotate").mkdir()
    with pytest.raises(DataError, match=r"released folder .*rotate is empty: expected "
                                        r"<wnid>/<video>\.mp4 files$"):
        scan_videos(tmp_path / "rotate")
    (tmp_path / "rotate" / "n01440764").mkdir()
    with pytest.raises(DataError, match=r"rotate has 1 class folder but no video files \(\.mp4\)$"):
        scan_videos(tmp_path / "rotate")


def test_released_videos_keep_their_listed_names(tmp_path):
    """Videos named .MP4 were listed by the scan, then looked up as .mp4 ("does not exist"); every
    released folder is checked to hold the first one's videos."""
    from robustbench_gcp.data.folders import scan_videos
    from robustbench_gcp.engine.runner import ImageSource, check_released_sources

    for difficulty in ("rotate", "rotate_2"):
        (tmp_path / difficulty / "n01440764").mkdir(parents=True)
        for stem in ("ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"):
            (tmp_path / difficulty / "n01440764" / f"{stem}.MP4").write_bytes(b"")
    videos = scan_videos(tmp_path / "rotate")
    sources = [ImageSource(tmp_path / d, resize_size=None, crop_size=224, released=True, video_frames=30)
               for d in ("rotate", "rotate_2")]
    assert all(path.is_file() for path in sources[0].paths(videos, range(len(videos))))
    check_released_sources(sources, videos, data=False, whole=True)
    (tmp_path / "rotate_2" / "n01440764" / "ILSVRC2012_val_00000003.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=r"rotate_2 holds 1 image beyond the 2 of .*rotate, the run's "
                                        r"\(n01440764/ILSVRC2012_val_00000003.mp4\)"):
        check_released_sources(sources, videos, data=False, whole=True)
    check_released_sources(sources, videos, data=False, whole=False)  # a --limit takes some of them
    (tmp_path / "rotate_2" / "n01440764" / "ILSVRC2012_val_00000002.MP4").unlink()
    with pytest.raises(DataError, match=r"rotate_2 lacks the files of 1 of the 2 images of .*rotate, the "
                                        r"run's \(n01440764/ILSVRC2012_val_00000002.MP4\)"):
        check_released_sources(sources, videos, data=False, whole=False)


def test_a_model_of_other_classes_than_imagenets_sees_another_task():
    """ImageNet images classified into 4 classes are no task AlexNet's published ImageNet-C errors
    normalize (a 4-class model's mCE was reported "alexnet = 100"); its cells say so, and so does the
    dataset reports read back from them."""
    from robustbench_gcp.data.datasets import DATASETS, dataset_mark, get_dataset, label_space

    imagenet, cifar = DATASETS["imagenet"], DATASETS["cifar10"]
    assert label_space(imagenet, 1000) is imagenet and label_space(imagenet, None) is imagenet
    assert label_space(cifar, 10) is cifar and label_space(cifar, 4) is cifar  # CIFAR's CE is unnormalized
    four = label_space(imagenet, 4)
    assert (four.name, four.classes, four.alexnet_normalized) == ("imagenet", 4, False)
    assert four.title == "ImageNet (4 classes)" and four.released == "ImageNet-C"
    assert dataset_mark(four) == {"classes": 4} and dataset_mark(imagenet) == {}
    assert get_dataset(None, 4) == four and get_dataset("imagenet", 1000) is imagenet


def test_files_are_listed_in_torchvisions_imagefolder_order(tmp_path):
    """Image order decides indices, seeds, --limit subsets and the data fingerprint: it is
    ImageFolder's (code-point order: 'B' before 'a'), nested folders after a folder's own files."""
    import torchvision
    from PIL import Image

    from robustbench_gcp.data.folders import scan_folder

    root = tmp_path / "val"
    names = ["cat/B.png", "cat/a.png", "cat/_c.png", "cat/Z10.png", "cat/z2.png", "cat/sub/x.png",
             "cat/Sub2/y.png", "dog/é.png", "dog/e.png", "dog/E.png"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / name)
    theirs = [os.path.relpath(path, root)
              for path, _ in torchvision.datasets.ImageFolder(root).samples]
    assert scan_folder(root, class_order="sorted").names == tuple(theirs)


def test_released_perturbation_folders_and_files_are_named_as_the_releases():
    """ImageNet-P's noise levels 2 and 3 are folders of their own (gaussian_noise_2, ...); the other
    perturbations have one folder, their difficulty being a stride. Only an error message said so."""
    from robustbench_gcp.data.folders import perturbed_dir, perturbed_npy

    root = Path("/data/ImageNet-P")
    assert [perturbed_dir(root, "gaussian_noise", d).name for d in (1, 2, 3)] == [
        "gaussian_noise", "gaussian_noise_2", "gaussian_noise_3"]
    assert perturbed_dir(root, "speckle_noise", 3) == root / "speckle_noise_3"
    assert perturbed_dir(root, "rotate", 3) == root / "rotate"
    assert perturbed_npy(root, "shot_noise", 2) == root / "shot_noise_2.npy"
    assert perturbed_npy(root, "tilt", 2) == root / "tilt.npy"


def test_class_folders_named_by_numbers_say_they_are_labelled_in_text_order(tmp_path):
    """Folders 1..12 are labelled as ImageFolder labels them (10 before 2): the report said only
    "sorted folder order", which reads as their numbers' order."""
    from robustbench_gcp import evaluate

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 12))
    common = dict(class_order="sorted", store=tmp_path / "s.db",
                  preprocess={"resize_size": 40, "input_size": 32})
    numbers = make_image_folder(tmp_path / "numbers", [str(n) for n in range(1, 13)], per_class=1,
                                sizes=(40, 48))
    (note,) = [n for n in evaluate(net, name="net", data=numbers, **common).notes if n.startswith("labels:")]
    assert note == ("labels: sorted folder order (--class-order sorted), 12 classes; the folder names are "
                    "numbers, sorted as text as torchvision's ImageFolder sorts them: 10 is label 1, not 9")
    digits = make_image_folder(tmp_path / "digits", [str(n) for n in range(10)] + ["a", "b"], per_class=1,
                               sizes=(40, 48))  # not all numbers: nothing more to say
    (note,) = [n for n in evaluate(net, name="net", data=digits, **common).notes if n.startswith("labels:")]
    assert note == "labels: sorted folder order (--class-order sorted), 12 classes"


def test_wnid_folders_sorted_for_an_imagenet_model_say_their_labels_are_not_the_wnids(tmp_path):
    """Wnid folders in sorted order for a 1000-class model are labels 0, 1, 2 (tench, goldfish,
    great white shark), not their classes: the note said only "sorted folder order". The first
    wnids, sorted, are their own indices: nothing more is said of them."""
    from robustbench_gcp import evaluate
    from robustbench_gcp.data.folders import imagenet_wnids

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 1000))

    def labels_note(picked: tuple[int, ...]) -> str:
        wnids = [imagenet_wnids()[i] for i in picked]
        data = make_image_folder(tmp_path / f"val{len(picked)}", wnids, per_class=1, sizes=(40, 48))
        report = evaluate(net, name="net", data=data, class_order="sorted",
                          store=tmp_path / f"{len(picked)}.db",
                          preprocess={"resize_size": 40, "input_size": 32})
        (note,) = [n for n in report.notes if n.startswith("labels:")]
        return note

    assert labels_note((0, 5, 207)) == (
        "labels: sorted folder order (--class-order sorted), 3 classes; the folders are ImageNet-1k wnids "
        "and the model has 1000 classes, but sorted they are not those wnids' indices: "
        f"{imagenet_wnids()[5]} is label 1, not 5 (--class-order imagenet gives these)")
    assert labels_note((0, 1)) == "labels: sorted folder order (--class-order sorted), 2 classes"
