"""Image lists, labels, class-balanced subsets and preprocessing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from robustbench_gcp.data.folders import balanced_subset, imagenet_wnids, scan_folder
from robustbench_gcp.data.loader import Preprocess, iterate_batches
from robustbench_gcp.data.synthetic import make_image_folder
from robustbench_gcp.errors import DataError


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


def test_non_wnid_folders_fall_back_to_sorted_order(tmp_path):
    make_image_folder(tmp_path, ["zebra", "apple", "mango"], per_class=1)
    images = scan_folder(tmp_path)
    assert images.labelling == "folders" and images.classes == ("apple", "mango", "zebra")
    assert [(n.split("/")[0], label) for n, label in zip(images.names, images.labels)] == [
        ("apple", 0), ("mango", 1), ("zebra", 2)]


def test_files_without_an_image_extension_are_ignored(tmp_path):
    make_image_folder(tmp_path, ["a"], per_class=2)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0")
    assert len(scan_folder(tmp_path)) == 2


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
    assert images.labels == (999, 1, 0) and images.labelling == "file"
    listing = tmp_path / "val.txt"
    listing.write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 970\n"
                       "ILSVRC2012_val_00000003.JPEG 230\n")
    assert scan_folder(flat, listing).labels == (65, 970, 230)


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


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="is empty"):
        scan_folder(tmp_path)
    (tmp_path / "n01440764").mkdir()
    with pytest.raises(DataError, match="1 class folders but no image files"):
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
