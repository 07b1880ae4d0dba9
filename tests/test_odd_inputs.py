"""Inputs that were read wrong or refused with a traceback: a class folder left empty or missing
(sorted order), a Tiny-ImageNet val folder without wnids.txt or sorted into class folders, 64 px
ImageNet folders, decompression bombs, released folders that lack files of --data, hidden files
of a flat folder."""

from __future__ import annotations

import shutil
import struct
import textwrap
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from robustbench_gcp import plan
from robustbench_gcp.cli import main
from robustbench_gcp.data.folders import imagenet_wnids
from robustbench_gcp.data.synthetic import make_image_folder
from robustbench_gcp.data.tiny_imagenet import scan_tiny_imagenet_val
from robustbench_gcp.errors import ConfigError, DataError

NET = '''
import torch.nn as nn
from robustbench_gcp.models.resnet import PreprocessConfig


def net(classes=10, size=32):
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))
    body.pretrained_cfg = PreprocessConfig(input_size=size, resize_size=size)
    return body


def tiny():
    return net(200, 64)


def imagenet64():
    return net(1000, 64)
'''
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def nets(on_sys_path):
    (on_sys_path / "odd_nets.py").write_text(textwrap.dedent(NET))
    return "odd_nets"


def _images(root, classes, size, per_class=2):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((size, size, 3), 20 * k + i, np.uint8)).save(root / name / f"{i}.png")
    return root


def _labels(images):
    return {name.split("/")[0]: label for name, label in zip(images.names, images.labels)}


def test_a_class_folder_left_empty_keeps_its_place_and_a_missing_one_is_refused(nets, tmp_path):
    """CIFAR class folders in sorted order with cat/ empty: the folders after it were numbered one
    lower (dog got cat's label, error 0.67 for a perfect model); with cat/ gone, refused."""
    folder = _images(tmp_path / "cifar", CIFAR, 32)
    for file in (folder / "cat").iterdir():
        file.unlink()
    common = dict(suite="clean", store=tmp_path / "s.db", dataset="cifar10")
    images = plan(f"{nets}:net", data=folder, **common).images
    assert _labels(images) == {name: CIFAR.index(name) for name in CIFAR if name != "cat"}
    (folder / "cat").rmdir()
    with pytest.raises(DataError, match=r"--data's 9 class folders are numbered in their sorted order, but "
                                        r"model 'odd_nets:net' has 10 classes: .*an empty folder keeps"):
        plan(f"{nets}:net", data=folder, **common)


def test_tiny_imagenet_val_without_wnids_or_sorted_into_class_folders(nets, tmp_path):
    """A val folder whose annotations name some of the 200 classes, without wnids.txt, numbered them
    0..k (error 0.86 for a perfect model): refused. A val folder sorted into <wnid>/ folders, as many
    users keep it, beside its annotations file: read with the labels of wnids.txt."""
    wnids = [f"n0{i:07d}" for i in range(200)]
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")
    chosen = wnids[5:200:40]
    lines = []
    for k, wnid in enumerate(chosen):
        Image.fromarray(np.full((64, 64, 3), k, np.uint8)).save(root / "val" / "images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    common = dict(suite="clean", store=tmp_path / "s.db")
    expected = [wnids.index(w) for w in chosen]
    assert list(plan(f"{nets}:tiny", data=root, **common).images.labels) == expected
    alone = tmp_path / "val"
    shutil.copytree(root / "val", alone)
    with pytest.raises(DataError, match=r"names 5 of Tiny-ImageNet's 200 classes and there is no "):
        plan(f"{nets}:tiny", data=alone, **common)
    # one class short is short too: every wnid sorted after the missing one would take its label
    (alone / "val_annotations.txt").write_text("".join(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63\n"
                                                       for k, wnid in enumerate(wnids[1:])))
    with pytest.raises(DataError, match=r"names 199 of Tiny-ImageNet's 200 classes and there is no "):
        scan_tiny_imagenet_val(alone)
    for k, wnid in enumerate(chosen):  # val/<wnid>/<file>, the annotations file kept
        (root / "val" / wnid).mkdir()
        (root / "val" / "images" / f"val_{k}.JPEG").rename(root / "val" / wnid / f"val_{k}.JPEG")
    (root / "val" / "images").rmdir()
    images = plan(f"{nets}:tiny", data=root, **common).images
    assert {name.split("/")[0]: label for name, label in zip(images.names, images.labels)} == dict(
        zip(chosen, expected))


def test_64px_imagenet_folders_can_be_read_with_their_wnid_labels(nets, tmp_path):
    """64 px wnid folders are taken for Tiny-ImageNet; an explicit --class-order imagenet was
    ignored (labels 0, 1, 2) and --dataset imagenet --preset imagenet refused."""
    wnids = [imagenet_wnids()[i] for i in (3, 250, 700)]
    folder = _images(tmp_path / "i64", wnids, 64)
    common = dict(store=tmp_path / "s.db")
    ordered = plan(f"{nets}:imagenet64", data=folder, suite="clean", class_order="imagenet", **common)
    assert set(ordered.images.labels) == {3, 250, 700}
    as_imagenet = plan(f"{nets}:imagenet64", data=folder, suite="imagenet-c", dataset="imagenet",
                       preset="imagenet", corruptions="fog", severities=[1], **common)
    assert as_imagenet.dataset.name == "imagenet" and set(as_imagenet.images.labels) == {3, 250, 700}
    with pytest.raises(DataError, match=r"holds Tiny-ImageNet images.*--preset imagenet"):
        plan(f"{nets}:imagenet64", data=folder, suite="imagenet-c", dataset="imagenet", corruptions="fog",
             **common)


def test_32px_wnid_folders_labelled_imagenet_get_the_dataset_hint(tmp_path):
    """--class-order imagenet on 32 px wnid folders with a 1000-class model of 224 px: the advice
    was to give the model input_size=32 (its 1000 classes on CIFAR-10's images), which ran."""
    folder = _images(tmp_path / "i32", [imagenet_wnids()[i] for i in (0, 1)], 32)
    common = ["--model", "torchvision:resnet18", "--random-weights", "--data", str(folder), "--store",
              str(tmp_path / "s.db")]
    said = CliRunner().invoke(main, ["eval", *common, "--class-order", "imagenet"])
    assert said.exit_code == 2, said.output
    assert said.stderr.strip().endswith("takes 224 px inputs, but CIFAR-10 images are 32 px: the folders "
                                        "name ImageNet classes; give --dataset imagenet to read them as "
                                        "ImageNet images")
    done = CliRunner().invoke(main, ["eval", *common, "--class-order", "imagenet", "--dataset", "imagenet",
                                     "--format", "json"])
    assert done.exit_code == 0, done.output


def test_64px_imagenet_folders_for_a_224px_model_get_a_hint_that_works(nets, tmp_path):
    """64 px wnid folders with an ImageNet-1k model of 224 px: the clean suite said '--class-order
    imagenet', which then said 'bring a 64 px network'; --dataset imagenet was refused as 'holds
    Tiny-ImageNet images' and --preset is the clean suite's usage error. Each hint now works."""
    folder = _images(tmp_path / "i64", [imagenet_wnids()[i] for i in (3, 250)], 64)
    common = dict(store=tmp_path / "s.db", random_weights=True)
    with pytest.raises(DataError, match=r"read as Tiny-ImageNet for their size, but model 'resnet18-gap' has "
                                        r"1000 classes .*give --dataset imagenet$"):
        plan("resnet18-gap", data=folder, suite="clean", **common)
    clean = plan("resnet18-gap", data=folder, suite="clean", dataset="imagenet", **common)
    assert clean.dataset.name == "imagenet" and set(clean.images.labels) == {3, 250}
    with pytest.raises(DataError, match="give --dataset imagenet --preset imagenet"):
        plan("resnet18-gap", data=folder, suite="imagenet-c", corruptions="fog", **common)
    corrupted = plan("resnet18-gap", data=folder, suite="imagenet-c", corruptions="fog", dataset="imagenet",
                     preset="imagenet", **common)
    assert corrupted.dataset.name == "imagenet"
    # a layout of its own still contradicts another dataset asked for
    tiny = tmp_path / "tiny-imagenet-200"
    (tiny / "val" / "images").mkdir(parents=True)
    (tiny / "wnids.txt").write_text("n01443537\n")
    (tiny / "val" / "val_annotations.txt").write_text("a.JPEG\tn01443537\n")
    Image.new("RGB", (64, 64)).save(tiny / "val" / "images" / "a.JPEG")
    with pytest.raises(DataError, match=r"holds Tiny-ImageNet images in its own layout, but --dataset is "
                                        r"imagenet \(ImageNet\); give --dataset tinyimagenet"):
        plan("resnet18-gap", data=tiny, suite="clean", dataset="imagenet", **common)


def test_released_imagenet_c_under_a_tiny_imagenet_suite_is_told_the_dataset_not_a_preset(tmp_path):
    """224 px released ImageNet-C files with --suite tinyimagenet-c were told '--preset tinyimagenet',
    which released files refuse: they are not corrupted here, so only --dataset is said."""
    from robustbench_gcp.config import load_config

    cell = tmp_path / "IC" / "fog" / "1" / imagenet_wnids()[3]
    cell.mkdir(parents=True)
    Image.new("RGB", (224, 224)).save(cell / "a.JPEG")
    assert "tinyimagenet-c" in load_config(None).suites
    with pytest.raises(DataError, match=r"is 224x224, not one of the 64x64 images of Tiny-ImageNet-C: "
                                        r"ImageNet-C's size; give --dataset imagenet$"):
        plan("resnet18-gap", suite="tinyimagenet-c", corrupted_dir=tmp_path / "IC", corruptions="fog",
             severities=[1], random_weights=True, store=tmp_path / "s.db")


def test_released_64px_files_are_told_tiny_imagenet_only_of_at_most_its_200_classes(tmp_path):
    """A 64 px first file under ImageNet-C: Tiny-ImageNet-C's size, but downsampled ImageNet-64x64-C
    (1000 wnid folders) is not Tiny-ImageNet-C."""
    from robustbench_gcp.data.datasets import check_released_size, get_dataset

    for classes, said in ((3, "Tiny-ImageNet-C's size; give --dataset tinyimagenet$"),
                          (201, "is --corrupted-dir the right folder\\?$")):
        cell = tmp_path / str(classes) / "fog" / "1"
        for wnid in imagenet_wnids()[:classes]:
            (cell / wnid).mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(cell / imagenet_wnids()[0] / "a.JPEG")
        with pytest.raises(DataError, match="is 64x64, not one of the 224x224 images of ImageNet-C: " + said):
            check_released_size(cell, get_dataset(None))


def _bomb(path, width=20000, height=10000):
    """A PNG whose header says width x height (over PIL's decompression-bomb limit)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_an_error_naming_the_file(image_folder, gap_checkpoint, tmp_path):
    """PIL's DecompressionBombError is no OSError: it escaped as an 86-line traceback, at planning
    when the file came first."""
    data = tmp_path / "val"
    shutil.copytree(image_folder, data)
    first = sorted(p for p in data.iterdir())[0]
    _bomb(first / "0000_bomb.png")
    for suite in (["clean"], ["imagenet-c", "--corruptions", "fog", "--severities", 1]):
        result = run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--suite", *suite,
                     "--data", data, "--store", tmp_path / f"{suite[0]}.db", "--batch-size", 4)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "0000_bomb.png" in result.output and "decompression bomb" in result.output


def released_copy(folder, target):
    """``folder``'s class folders as released ImageNet-C files: each image centre-cropped to 224 px
    (released files of another size are refused)."""
    from torchvision.transforms.functional import center_crop

    for path in folder.rglob("*.JPEG"):
        (target / path.parent.name).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            center_crop(image, [224, 224]).save(target / path.parent.name / path.name, quality=90)


def test_released_files_missing_for_images_of_data_are_named_before_compute(image_folder, gap_checkpoint,
                                                                           tmp_path):
    """--data with a class the released cells lack failed halfway, as an unreadable file."""
    released = tmp_path / "C"
    for severity in (1, 2):
        released_copy(image_folder, released / "fog" / str(severity))
    data = tmp_path / "val"
    shutil.copytree(image_folder, data)
    make_image_folder(data, ["n01491361"], per_class=2, seed=9)  # images the released cells lack
    extra = sorted(p.name for p in (data / "n01491361").iterdir())
    result = run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--suite", "imagenet-c",
                 "--corrupted-dir", released, "--corruptions", "fog", "--severities", "1,2", "--data", data,
                 "--store", tmp_path / "s.db")
    assert result.exit_code == 1
    assert f"lacks the files of {len(extra)} of the" in result.output
    assert f"n01491361/{extra[0]}" in result.output and "no class folder n01491361" in result.output
    assert not (tmp_path / "s.db").exists()  # nothing computed
    # the images it has pass
    shutil.rmtree(data / "n01491361")
    ok = run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--suite", "imagenet-c",
             "--corrupted-dir", released, "--corruptions", "fog", "--severities", "1", "--data", data,
             "--store", tmp_path / "s.db", "--limit", 4)
    assert ok.exit_code == 0, ok.output


def test_hidden_files_of_a_flat_folder_are_skipped(image_folder, tmp_path):
    """The flat val layout listed macOS `._*` files: "has no label in val.txt"."""
    from robustbench_gcp.data.folders import scan_folder

    flat = tmp_path / "flat"
    flat.mkdir()
    for k, path in enumerate(sorted(image_folder.rglob("*.JPEG"))[:3]):
        shutil.copy(path, flat / f"ILSVRC_{k}.JPEG")
    (flat / "._ILSVRC_0.JPEG").write_bytes(b"\0\5\26\7junk")
    (tmp_path / "val.txt").write_text("".join(f"ILSVRC_{k}.JPEG {k}\n" for k in range(3)))
    images = scan_folder(flat, tmp_path / "val.txt")
    assert images.names == ("ILSVRC_0.JPEG", "ILSVRC_1.JPEG", "ILSVRC_2.JPEG") and images.labels == (0, 1, 2)


def test_a_released_folder_that_is_no_wnid_is_refused_without_a_remedy_that_fails(tmp_path):
    """It suggested --class-order sorted, which released files refuse."""
    from robustbench_gcp.data.folders import scan_imagenet_c

    make_image_folder(tmp_path / "C" / "fog" / "1", ["n01440764", "backup"], per_class=1, sizes=(40, 50))
    with pytest.raises(DataError, match=r"released folder .*fog/1 has folders with images that are not "
                                        r"ImageNet-1k wnids: backup; move them out of it$") as error:
        scan_imagenet_c(tmp_path / "C", "fog", 1)
    assert "--class-order" not in str(error.value)


@pytest.mark.parametrize("sizes", [(224, 225), (40, 50)])  # [low, high): 224 px
def test_class_order_on_released_files_is_refused_before_their_folders_are_checked(tmp_path, sizes):
    """Released folders that are not wnids with --class-order sorted: the flag is the mistake (the
    folders' check answered first, "move them out of it", and the user tried again with the flag;
    of images smaller than ImageNet-C's, the check of their size answered first)."""
    make_image_folder(tmp_path / "C" / "fog" / "1", ["apple", "mango"], per_class=1, sizes=sizes)
    with pytest.raises(ConfigError, match=r"`--class-order sorted` orders the class folders of --data; "
                                          r"released files are read in ImageNet's own order"):
        plan("resnet18-gap", corrupted_dir=tmp_path / "C", class_order="sorted", suite="imagenet-c",
             corruptions="fog", severities="1", store=tmp_path / "s.db")
    if sizes[0] < 224:
        return
    with pytest.raises(DataError, match="move them out of it"):  # without the flag: the folders
        plan("resnet18-gap", corrupted_dir=tmp_path / "C", suite="imagenet-c", corruptions="fog",
             severities="1", store=tmp_path / "s.db")


def test_a_folder_that_is_no_class_is_refused_whatever_the_limit_takes(demo_val, tmp_path):
    """In sorted order a folder without images keeps a place: a stray `Notes/` (sorted before the
    classes) moved every label, silently where --limit left out the last class."""
    data = tmp_path / "val"
    shutil.copytree(demo_val, data)
    (data / "Notes").mkdir()
    (data / "Notes" / "readme.txt").write_text("not a class")
    with pytest.raises(DataError, match=r"--data's 11 folders are numbered in their sorted order, but model "
                                        r"'demo-gap' has 10 classes: give a model of 11 classes, or, if a "
                                        r"folder is no class \(one without images\?\), move it out"):
        plan("demo-gap", data=data, class_order="sorted", suite="clean", store=tmp_path / "s.db", limit=5)


def test_class_order_imagenet_given_with_released_files_alone(image_folder, gap_checkpoint, tmp_path):
    """ImageNet's order, once the default, is the released files' own: given, it was refused."""
    released = tmp_path / "C"
    released_copy(image_folder, released / "fog" / "1")
    result = run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--suite", "imagenet-c",
                 "--corrupted-dir", released, "--corruptions", "fog", "--severities", 1, "--class-order",
                 "imagenet", "--store", tmp_path / "s.db", "--limit", 4)
    assert result.exit_code == 0, result.output


def test_a_flat_folder_of_64px_images_runs_the_clean_and_adversarial_suites(nets, tmp_path):
    """The size check of corruption parameters refused the clean suite, which has none, and each
    remedy it named failed: --preset does not apply to clean, and --dataset tinyimagenet said
    `--class-order sorted` (never given) excludes --labels."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(flat / f"img{i}.png")
    (tmp_path / "labels.txt").write_text("".join(f"img{i}.png {i * 7}\n" for i in range(4)))
    common = dict(data=flat, labels=tmp_path / "labels.txt", store=tmp_path / "s.db")
    for suite, extra in (("clean", {}), ("adversarial", {}), ("landscape", {"landscape_at": "pixels"})):
        assert plan(f"{nets}:imagenet64", suite=suite, **extra, **common).images.labels == (0, 7, 14, 21)
    tiny = plan(f"{nets}:tiny", suite="clean", dataset="tinyimagenet", **common)
    assert tiny.images.labels == (0, 7, 14, 21)
    with pytest.raises(DataError, match="Tiny-ImageNet-sized, but the suite uses ImageNet-C's"):
        plan(f"{nets}:imagenet64", suite="imagenet-c", corruptions="fog", **common)
    with pytest.raises(DataError, match="Tiny-ImageNet-sized, but the suite uses ImageNet-C's"):
        plan(f"{nets}:imagenet64", suite="landscape", landscape_at="pixels", corruptions="fog", **common)
    # images of another size than the dataset's are still refused, whatever the suite
    (flat / "img0.png").unlink()
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(flat / "img0.png")
    with pytest.raises(DataError, match=r"the images are 80x80 .*, but Tiny-ImageNet images are 64x64"):
        plan(f"{nets}:tiny", suite="clean", dataset="tinyimagenet", **common)


def test_a_path_the_system_refuses_is_one_line(tmp_path):
    """A data folder whose name is too long (or under a folder this process cannot enter: the same
    OSError from Path.exists) was a traceback; so were --corrupted-dir, --store and inspect."""
    long = tmp_path / ("x" * 300)
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--data", str(long), "--store",
                                       str(tmp_path / "s.db")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"Error: cannot read data folder {long}: ")
    for args in (["report", "--store", str(long)], ["inspect", str(long)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        last = result.output.strip().splitlines()[-1]
        assert last.startswith(f"Error: cannot use {long}: File name too long"), last


def test_wnid_folders_need_a_model_of_the_1000_imagenet_classes(image_folder, tmp_path):
    """A model with a background class first (1001 outputs, TF-slim's) or of ImageNet-21k ran on
    wnid folders without a word, every label meaning another class; so did a 10-class model, whose
    outputs are not ImageNet's first ten classes."""
    import torch
    import torchvision

    for classes, said in ((1001, r" \(a background class first, as TF-slim's, moves every label by one\)"),
                          (10, "")):
        path = tmp_path / f"c{classes}.pth"
        torch.save(torchvision.models.resnet18(num_classes=classes).state_dict(), path)
        wanted = (rf"^--data's class folders are ImageNet-1k wnids, labelled by their standard indices "
                  rf"0-999, but model 'resnet18-gap' has {classes} classes{said}: .*--class-order sorted$")
        with pytest.raises(DataError, match=wanted):
            plan("resnet18-gap", checkpoint=path, data=image_folder, suite="clean", store=tmp_path / "s.db")
    assert not (tmp_path / "s.db").exists()
    plan("resnet18-gap", checkpoint=tmp_path / "c10.pth", data=image_folder, suite="clean",  # its own order
         store=tmp_path / "s.db", class_order="sorted")
    flat = tmp_path / "flat"  # a flat folder labelled by LOC_val_solution.csv: the same indices
    flat.mkdir()
    rows = ["ImageId,PredictionString"]
    for i, image in enumerate(sorted(image_folder.rglob("*.JPEG"))):
        shutil.copy(image, flat / f"ILSVRC2012_val_{i:08d}.JPEG")
        rows.append(f"ILSVRC2012_val_{i:08d},{image.parent.name} 1 1 2 2")
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"^--data's labels are ImageNet-1k wnids \(--labels\), labelled by "
                                        r"their standard indices 0-999, but model 'resnet18-gap' has 1001 "
                                        r"classes.*labels\. Give a model of ImageNet's 1000 classes, or the "
                                        r"images as class folders"):  # --labels excludes --class-order
        plan("resnet18-gap", checkpoint=tmp_path / "c1001.pth", data=flat, suite="clean",
             labels=tmp_path / "LOC_val_solution.csv", store=tmp_path / "s.db")


def test_symbolic_link_loops_pipes_and_dangling_links_are_named_as_such(image_folder, tmp_path):
    """A loop of links as a benchmarks.yaml checkpoint, --store, -o or a compared file was a
    RuntimeError traceback (Python 3.11's Path.resolve); as --checkpoint, --data or inspect's file it
    "does not exist", as a pipe or /dev/null did too; -o through a loop would have replaced the link."""
    import os

    (tmp_path / "loop").symlink_to(tmp_path / "back")
    (tmp_path / "back").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    os.mkfifo(tmp_path / "pipe")
    loop, store = str(tmp_path / "loop"), str(tmp_path / "s.db")
    config = tmp_path / "benchmarks.yaml"
    config.write_text(f"models:\n  looped:\n    arch: resnet18-gap\n    checkpoint: {loop}\n"
                      "suites:\n  clean:\n    kind: clean\n")

    def last_line(*args, code=1):
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == code and "Traceback" not in result.output, result.output
        return " ".join(result.stderr.split())

    data = ["--data", str(image_folder), "--store", store]
    assert last_line("eval", "--config", str(config), "--model", "looped", *data) == \
        f"Error: checkpoint file {loop} is a loop of symbolic links [checkpoint, sha256 and arch from " \
        f"models.looped of {config}]"
    assert last_line("eval", "--model", "resnet18-gap", "--checkpoint", loop, *data) == \
        f"Error: checkpoint file {loop} is a loop of symbolic links"
    compared = last_line("compare", "--model", f"resnet18-gap={loop}", "--model", "resnet18-gap",
                         "--random-weights", *data)
    assert compared == f"Error: checkpoint file {loop} is a loop of symbolic links"
    for odd, said in (("pipe", "is not a regular file (a device, a pipe ...)"),
                      ("dangling", f"is a symbolic link to {tmp_path / 'gone'}, which does not exist")):
        assert last_line("eval", "--model", "resnet18-gap", "--checkpoint", str(tmp_path / odd), *data) == \
            f"Error: checkpoint file {tmp_path / odd} {said}"
        assert last_line("inspect", str(tmp_path / odd)) == f"Error: checkpoint file {tmp_path / odd} {said}"
    assert last_line("eval", "--model", "resnet18-gap", "--random-weights", "--data", loop, "--store",
                     store) == f"Error: data folder {loop} is a loop of symbolic links"
    assert last_line("eval", "--model", "resnet18-gap", "--random-weights", "--data", str(image_folder),
                     "--store", loop) == f"Error: store {loop} is a loop of symbolic links"
    assert last_line("report", "--store", loop) == f"Error: store {loop} is a loop of symbolic links"
    said = last_line("eval", "--model", "resnet18-gap", "--random-weights", *data, "-o", loop, code=2)
    assert said.endswith(f"Invalid value for '-o' / '--output': {loop} is a loop of symbolic links"), said
    assert os.readlink(loop) == str(tmp_path / "back") and not (tmp_path / "s.db").exists()
    assert last_line("report", "--store", f"{loop}/s.db") == \
        f"Error: store {loop}/s.db passes through a loop of symbolic links"
    (tmp_path / "a-file").write_text("")
    assert last_line("inspect", str(tmp_path / "a-file" / "x.pth")) == \
        f"Error: checkpoint file {tmp_path / 'a-file' / 'x.pth'} cannot be reached (Not a directory)"


def test_not_a_file_says_why_a_path_is_no_file_and_lets_other_errors_through(tmp_path):
    """The one check behind checkpoint files given and read: a file (or a link to one) passes; a
    folder, a pipe and what is not there are named; a name the system refuses is raised as
    Path.exists() raises it (the CLI's "cannot use X: File name too long")."""
    import errno
    import os

    from robustbench_gcp.errors import IS_A_FOLDER, NOT_REGULAR, not_a_file

    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    os.mkfifo(tmp_path / "pipe")
    assert not_a_file(tmp_path / "file") is None and not_a_file(tmp_path / "link") is None
    assert not_a_file(tmp_path) == IS_A_FOLDER and not_a_file(tmp_path / "pipe") == NOT_REGULAR
    assert not_a_file(tmp_path / "gone") == "does not exist"
    assert not_a_file(tmp_path / "file" / "x") == "cannot be reached (Not a directory)"
    dangling = f"is a symbolic link to {tmp_path / 'gone'}, which does not exist"
    assert not_a_file(tmp_path / "dangling") == dangling
    with pytest.raises(OSError) as raised:
        not_a_file(tmp_path / ("x" * 300))
    assert raised.value.errno == errno.ENAMETOOLONG
