"""The embedded demo: its dataset, its two models and their committed checkpoints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_gcp.config import load_config
from robustbench_gcp.data.demo_images import (
    DEMO_CLASSES,
    MARKER_NAME,
    TRAIN_PER_CLASS,
    VAL_PER_CLASS,
    build_demo_dataset,
)
from robustbench_gcp.data.folders import scan_folder
from robustbench_gcp.data.loader import Preprocess, iterate_batches
from robustbench_gcp.errors import DataError
from robustbench_gcp.models import create_model, inspect_checkpoint, list_models, load_model

REPO = Path(__file__).resolve().parents[1]
DEMO_MODELS = ("demo-gap", "demo-isqrt")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    return build_demo_dataset(tmp_path_factory.mktemp("demo") / "data", seed=0)


def file_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.JPEG"))}


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).tobytes()


# ------------------------------------------------------------------------ dataset


def test_classes_are_sorted_human_names_with_folder_labels(demo_root):
    assert len(DEMO_CLASSES) >= 8 and list(DEMO_CLASSES) == sorted(DEMO_CLASSES)
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        images = scan_folder(demo_root / split, class_order="sorted")
        assert images.classes == DEMO_CLASSES and images.labelling == "folders"
        assert np.bincount(images.labels).tolist() == [per_class] * len(DEMO_CLASSES)
        for name, label in zip(images.names, images.labels):
            assert name.split("/")[0] == DEMO_CLASSES[label] and name.endswith(".JPEG")


def test_same_seed_same_files_other_seed_other_files(demo_root, tmp_path):
    again = build_demo_dataset(tmp_path / "again", seed=0)
    assert file_digests(again) == file_digests(demo_root)
    other = build_demo_dataset(tmp_path / "other", seed=1)
    theirs, ours = file_digests(other), file_digests(demo_root)
    assert theirs.keys() == ours.keys()
    assert not set(theirs.values()) & set(ours.values())


def test_train_and_val_are_disjoint(demo_root):
    train = {pixels(p) for p in (demo_root / "train").rglob("*.JPEG")}
    val = {pixels(p) for p in (demo_root / "val").rglob("*.JPEG")}
    assert len(train) == TRAIN_PER_CLASS * len(DEMO_CLASSES)
    assert len(val) == VAL_PER_CLASS * len(DEMO_CLASSES)
    assert not train & val


def test_images_exercise_the_resize_and_crop_and_load_through_the_loader(demo_root):
    images = scan_folder(demo_root / "val", class_order="sorted")
    sizes = set()
    for path in images.paths():
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            sizes.add(image.size)
    assert min(min(size) for size in sizes) > 73
    assert len({round(w / h, 2) for w, h in sizes}) > 10  # varied aspect ratios
    cfg = create_model("demo-gap").pretrained_cfg
    batches = list(iterate_batches(images.paths(), Preprocess(cfg.resize_size, cfg.input_size),
                                   batch_size=64))
    x = torch.cat([batch for batch, _ in batches])
    assert x.shape == (len(images), 3, 64, 64) and x.dtype == torch.uint8
    assert sum((positions for _, positions in batches), []) == list(range(len(images)))


def test_a_finished_dataset_is_reused_and_other_versions_are_replaced(tmp_path):
    root = build_demo_dataset(tmp_path / "demo", seed=2)
    marker = root / MARKER_NAME
    first = sorted(root.rglob("*.JPEG"))[0]
    stamps = (marker.stat().st_mtime_ns, first.stat().st_mtime_ns)
    assert build_demo_dataset(root, seed=2) == root
    assert (marker.stat().st_mtime_ns, first.stat().st_mtime_ns) == stamps
    before = file_digests(root)
    build_demo_dataset(root, seed=3)  # another seed: replaced, not mixed
    after = file_digests(root)
    assert after.keys() == before.keys() and after != before
    assert '"seed": 3' in marker.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name != "demo"]  # no staging folder left
    # a build killed (SIGKILL) left its staging folder for good: an old one goes at the next build
    import os

    stale, recent, own = tmp_path / ".demo-killed_1", tmp_path / ".demo-running", tmp_path / ".demo-notes"
    for folder in (stale, recent, own):
        (folder / "val").mkdir(parents=True)
    os.utime(stale, (0, 0))
    os.utime(own, (0, 0))  # a user's folder, not a staging one (mkdtemp's 8 characters)
    build_demo_dataset(root, seed=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".demo-notes", ".demo-running", "demo"]


def test_bad_arguments_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="`seed` should be a non-negative integer. Got -1"):
        build_demo_dataset(tmp_path / "x", seed=-1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty and is not a demo dataset"):
        build_demo_dataset(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------ models


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_demo_models_are_registered_with_their_preprocessing(name):
    assert name in list_models()
    model = create_model(name)
    cfg = model.pretrained_cfg
    assert (cfg.input_size, cfg.resize_size, cfg.interpolation) == (64, 73, "bilinear")
    assert model.num_classes == len(DEMO_CLASSES)
    assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape[-2:] == \
        ((4, 4) if name == "demo-isqrt" else (2, 2))


@pytest.fixture(scope="module")
def val_batch(demo_root) -> tuple[torch.Tensor, torch.Tensor]:
    images = scan_folder(demo_root / "val", class_order="sorted")
    x = torch.cat([b for b, _ in iterate_batches(images.paths(), Preprocess(73, 64), batch_size=100)])
    return x, torch.tensor(images.labels)


@pytest.mark.parametrize("name", DEMO_MODELS)
def test_committed_checkpoint_matches_benchmarks_yaml_and_reaches_90_percent(name, val_batch):
    spec = load_config(REPO / "benchmarks.yaml").models[name]
    path = Path(spec.checkpoint)
    assert spec.arch == name and path == REPO / "robustbench_gcp" / "resources" / "demo" / f"{name}.pth"
    assert path.stat().st_size < 1_500_000
    info = inspect_checkpoint(path)
    assert (info.arch, info.num_classes, info.also_fits) == (name, len(DEMO_CLASSES), [])

    model = load_model(name, path, sha256=spec.sha256)
    assert model.checkpoint_sha256 == spec.sha256
    cfg = model.pretrained_cfg
    images, labels = val_batch
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        logits = model((images.float() / 255.0 - mean) / std)
    top1 = (logits.argmax(1) == labels).float().mean().item()
    assert top1 >= 0.90, f"{name}: val top-1 {top1:.1%}"
