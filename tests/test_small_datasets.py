"""CIFAR-10/100-C and Tiny-ImageNet-C end to end: a user's CIFAR model on a CIFAR-shaped folder,
the CIFAR pickles and the released .npy files; datasets: in benchmarks.yaml; --dataset checks."""

from __future__ import annotations

import json
import pickle
import shutil
import textwrap

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from robustbench_gcp.cli import main
from robustbench_gcp.config import DATA_VARIABLE, default_config_path
from robustbench_gcp.store import Store

MODULE = '''
import torch
import torch.nn as nn
from robustbench_gcp.models.resnet import PreprocessConfig


class Net(nn.Module):
    """A small CIFAR network that sees colour and texture (so corruptions change its answers)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, 10)
        self.pretrained_cfg = PreprocessConfig(input_size=32, resize_size=32, mean=(0.49, 0.48, 0.45),
                                               std=(0.25, 0.24, 0.26))

    def forward(self, x):
        return self.fc(self.body(x))


def build():
    return Net()
'''
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_CLASS = 3


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def cifar(tmp_path, on_sys_path):
    """A CIFAR-shaped folder, the same images as a CIFAR-10 pickle batch, a released CIFAR-10-C
    folder whose fog severity-2 rows are our own fog at severity 2, and the user's model module."""
    (on_sys_path / "small_cifar_net.py").write_text(textwrap.dedent(MODULE))
    rng = np.random.default_rng(0)
    n = len(NAMES) * PER_CLASS
    labels = [i // PER_CLASS for i in range(n)]
    # smooth colour fields: the network's answers vary with them
    base = rng.random((n, 4, 4, 3))
    images = (np.kron(base, np.ones((1, 8, 8, 1))) * 255).astype(np.uint8)
    folder = tmp_path / "folder"
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / NAMES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / NAMES[label] / f"{i:05d}.png")
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    data = images.transpose(0, 3, 1, 2).reshape(n, -1)
    with open(batches / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)
    with open(batches / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [name.encode() for name in NAMES]}, f, protocol=2)
    released = tmp_path / "CIFAR-10-C"
    released.mkdir()
    from corruptions import corrupt, storage_roundtrip
    from robustbench_gcp.engine.seeding import image_seeds

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    rows = [images] * 5
    fog = storage_roundtrip(corrupt(x, "fog", 2, seed=image_seeds(0, "imagenet-c/fog/2", range(n)),
                                    preset="cifar"), quality=None)
    rows[1] = (fog * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.save(released / "fog.npy", np.concatenate(rows))
    np.save(released / "labels.npy", np.array(labels * 5, dtype=np.uint8))
    return tmp_path


def report_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_cifar_folder_with_a_user_model_gives_robustbench_style_numbers(cifar):
    store = cifar / "s.db"
    out = report_json(run("eval", "--model", "small_cifar_net:build", "--suite", "cifar10-c",
                          "--data", cifar / "folder", "--corruptions", "fog,contrast,pixelate",
                          "--store", store, "--format", "json"))
    sections = out
    metrics = sections["metrics"]
    assert metrics["dataset"] == "cifar10" and metrics["mCE"] is None and metrics["baseline"] is None
    # the RobustBench numbers: the mean of the cells' errors, and 1 - that
    errors = [c["top1_error"] for c in sections["cells"]]
    assert len(errors) == 15
    assert metrics["mean_error"] == pytest.approx(sum(errors) / 15)
    assert metrics["mean_accuracy"] == pytest.approx(1 - sum(errors) / 15)
    assert all(e["CE"] is None for e in sections["per_corruption"])
    # the corruptions used CIFAR-10-C's parameters and a uint8 round trip: recorded per cell
    with Store(store) as s:
        run_id = s.runs()[0].id
        variants = {json.loads(key.variant)["dataset"] for _, key in s.cells(run_id) if key.kind != "clean"}
    assert variants == {"cifar10"}
    table = run("report", "--store", store)
    assert "(CIFAR-10-C, torch, uint8 round trip)" in table.output and "mean err %" in table.output
    assert "JPEG" not in table.output


def test_pickles_folders_and_released_npy_agree(cifar):
    """The same images from the pickle batch and from the folder give the same counts; the released
    .npy cell built from our own fog gives exactly the generated cell's counts."""
    store = cifar / "s.db"
    common = ["--model", "small_cifar_net:build", "--suite", "cifar10-c", "--corruptions", "fog",
              "--severities", "2", "--store", store, "--format", "json"]
    from_pickle = report_json(run("eval", *common, "--data", cifar / "cifar-10-batches-py"))
    released = report_json(run("eval", *common, "--corrupted-dir", cifar / "CIFAR-10-C"))
    assert from_pickle["clean"]["top1_error"] == report_json(
        run("eval", *common, "--data", cifar / "folder"))["clean"]["top1_error"]
    generated, read = from_pickle["cells"][0], released["cells"][0]
    assert (generated["n"], generated["top1_error"], generated["top5_error"]) == (
        read["n"], read["top1_error"], read["top5_error"])


def test_released_cifar_c_labels_short_of_the_last_class_are_still_the_datasets_classes(cifar, tmp_path):
    """A released CIFAR-10-C subset whose labels stop at 8 read alone: its classes are CIFAR-10's 10
    (they were 0 .. the largest label, and the 10-class model was refused: "the dataset's own 9
    classes")."""
    subset = tmp_path / "subset"
    subset.mkdir()
    fog, labels = np.load(cifar / "CIFAR-10-C" / "fog.npy"), np.load(cifar / "CIFAR-10-C" / "labels.npy")
    kept = np.flatnonzero(labels < 9).reshape(5, -1)  # every severity's rows of classes 0 .. 8
    np.save(subset / "fog.npy", fog[kept.ravel()])
    np.save(subset / "labels.npy", labels[kept.ravel()])
    result = report_json(run("eval", "--model", "small_cifar_net:build", "--suite", "cifar10-c",
                             "--corrupted-dir", subset, "--corruptions", "fog", "--severities", "2",
                             "--store", tmp_path / "s.db", "--format", "json"))
    assert result["n_images"] == kept.shape[1] == 9 * PER_CLASS


def test_released_cifar_c_rows_beside_data_must_be_that_test_set(cifar, tmp_path):
    """CIFAR-10-C rows are the test set's: --data must be that whole test set with labels.npy's
    labels, or a row would be another image's (or another severity's); refused before compute."""
    common = ["--model", "small_cifar_net:build", "--suite", "cifar10-c", "--corruptions", "fog",
              "--severities", "2", "--corrupted-dir", cifar / "CIFAR-10-C", "--store", tmp_path / "x.db"]
    both = report_json(run("eval", *common, "--data", cifar / "cifar-10-batches-py", "--format", "json"))
    assert both["cells"][0]["n"] == len(NAMES) * PER_CLASS and both["clean"] is not None
    folder = run("eval", *common, "--data", cifar / "folder")
    assert folder.exit_code == 1 and "CIFAR-10-C rows are the test set's, in its order" in folder.output
    n = len(NAMES) * PER_CLASS
    with open(cifar / "cifar-10-batches-py" / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    for name, data, labels in (("more", np.concatenate([batch[b"data"]] * 2), batch[b"labels"] * 2),
                               ("other", batch[b"data"], [(k + 1) % len(NAMES) for k in batch[b"labels"]])):
        other = tmp_path / name / "cifar-10-batches-py"
        other.mkdir(parents=True)
        shutil.copy(cifar / "cifar-10-batches-py" / "batches.meta", other)
        with open(other / "test_batch", "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)
        refused = run("eval", *common, "--data", other)
        assert refused.exit_code == 1, refused.output
        assert (f"--data holds {2 * n} images, CIFAR-10-C's files {n} per severity" in refused.output
                if name == "more" else "--data's labels differ from CIFAR-10-C's labels.npy (first at "
                "image 0: 1 and 0)" in refused.output)
    assert "Traceback" not in folder.output + refused.output
    with Store(tmp_path / "x.db") as s:  # only the first, good run stored anything
        assert len(s.runs()) == 1


def test_the_dataset_is_found_checked_and_its_preset_follows(cifar):
    common = ["--model", "small_cifar_net:build", "--corruptions", "fog", "--severities", "1",
              "--store", cifar / "s.db", "--format", "json"]
    # the imagenet-c suite on CIFAR-sized images: the dataset is found, CIFAR-10-C's preset follows
    found = report_json(run("eval", "--suite", "imagenet-c", "--data", cifar / "folder", *common))
    assert found["metrics"]["dataset"] == "cifar10" and found["metrics"]["mCE"] is None
    # ImageNet asked for on CIFAR images: refused, saying how to ask for it explicitly
    refused = run("eval", "--suite", "imagenet-c", "--dataset", "imagenet", "--data", cifar / "folder",
                  *common)
    assert refused.exit_code != 0
    assert "--dataset cifar10" in refused.output and "--preset imagenet" in refused.output
    # ... which runs, and the cells record the forced preset
    forced = report_json(run("eval", "--suite", "cifar10-c", "--preset", "imagenet", "--data",
                             cifar / "folder", *common))
    with Store(cifar / "s.db") as s:
        run_id = s.runs()[0].id
        presets = {json.loads(key.variant).get("preset") for _, key in s.cells(run_id) if key.kind != "clean"}
    assert "imagenet" in presets and forced["cells"][0]["n"] == len(NAMES) * PER_CLASS
    # reports keep the forced preset apart from the dataset's own: two experiments, one row each
    assert forced["source"].endswith(", imagenet parameters")
    stored = json.loads(run("report", "--store", cifar / "s.db", "--format", "json").output)
    sources = sorted(r["source"] for r in stored["reports"] if r["kind"] == "imagenet-c")
    assert len(sources) == len(set(sources)) == 2
    assert all(len(c["models"]) == 1 for c in stored["comparisons"])
    # a dataset that contradicts the data
    wrong = run("eval", "--model", "small_cifar_net:build", "--suite", "tinyimagenet-c", "--data",
                cifar / "cifar-10-batches-py", "--store", cifar / "s.db")
    assert wrong.exit_code != 0 and "holds CIFAR-10 images" in wrong.output


def test_the_data_is_located_once_in_benchmarks_yaml_or_the_variable(cifar, monkeypatch):
    config = yaml.safe_load(default_config_path().read_text())
    config["datasets"] = {"root": "nowhere", "cifar10": {"clean": "cifar-10-batches-py"}}
    path = cifar / "benchmarks.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.delenv(DATA_VARIABLE, raising=False)
    missing = run("eval", "--config", path, "--model", "small_cifar_net:build", "--suite", "cifar10-c",
                  "--store", cifar / "s.db")
    assert missing.exit_code != 0
    assert "datasets.cifar10.clean" in missing.output and DATA_VARIABLE in missing.output
    monkeypatch.setenv(DATA_VARIABLE, str(cifar))
    found = report_json(run("eval", "--config", path, "--model", "small_cifar_net:build", "--suite",
                            "cifar10-c", "--corruptions", "brightness", "--severities", "1",
                            "--store", cifar / "s.db", "--format", "json"))
    assert found["n_images"] == len(NAMES) * PER_CLASS


def test_a_model_of_another_input_size_is_refused_before_compute(cifar):
    out = run("eval", "--model", "demo-gap", "--random-weights", "--suite", "cifar10-c",  # 10 classes, 64 px
              "--data", cifar / "cifar-10-batches-py", "--store", cifar / "s.db")
    assert out.exit_code != 0 and "input_size=32" in out.output


TINY_MODULE = '''
import torch
import torch.nn as nn
from robustbench_gcp.models.resnet import PreprocessConfig


def build(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 4))
    net.pretrained_cfg = PreprocessConfig(input_size=64, resize_size=64)
    return net


def other():
    return build(1)


def wide(classes=200):
    net = build()
    net[-1] = nn.Linear(8, classes)
    return net
'''
WNIDS = ["n01443537", "n01629819", "n01641577", "n01644900"]


@pytest.fixture
def tiny(tmp_path, on_sys_path):
    """A Tiny-ImageNet-200-shaped tree with 4 classes (wnids.txt unsorted), 3 val images each,
    and a released Tiny-ImageNet-C fog/1 folder."""
    (on_sys_path / "small_tiny_net.py").write_text(textwrap.dedent(TINY_MODULE))
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(reversed(WNIDS)) + "\n")
    rng = np.random.default_rng(1)
    lines = []
    for k in range(12):
        wnid = WNIDS[k % 4]
        image = (np.kron(rng.random((8, 8, 3)), np.ones((8, 8, 1))) * 255).astype(np.uint8)
        Image.fromarray(image).save(root / "val" / "images" / f"val_{k}.JPEG", quality=95)
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
        cell = tmp_path / "Tiny-ImageNet-C" / "fog" / "1" / wnid
        cell.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(cell / f"val_{k}.JPEG", quality=95)
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_tiny_imagenet_c_normalized_by_a_stored_baseline(tiny):
    store = tiny / "s.db"
    common = ["--suite", "tinyimagenet-c", "--data", tiny / "tiny-imagenet-200", "--corruptions",
              "fog,contrast", "--severities", "1,3", "--store", store, "--format", "json"]
    base = run("baseline", "--model", "small_tiny_net:build", "--name", "small", *common)
    assert base.exit_code == 0, base.output
    base = json.loads(base.stdout)
    ours = report_json(run("eval", "--model", "small_tiny_net:other", "--baseline", "small", *common))
    assert ours["metrics"]["dataset"] == "tinyimagenet" and ours["metrics"]["baseline"] == "small"
    theirs = {(c["corruption"], c["severity"]): c["top1_error"] for c in base["cells"]}
    mine = {(c["corruption"], c["severity"]): c["top1_error"] for c in ours["cells"]}
    expected = {c: 100 * (mine[(c, 1)] + mine[(c, 3)]) / (theirs[(c, 1)] + theirs[(c, 3)])
                for c in ("fog", "contrast") if theirs[(c, 1)] + theirs[(c, 3)] > 0}
    got = {e["corruption"]: e["CE"] for e in ours["per_corruption"]}
    assert expected and all(got[c] == pytest.approx(v) for c, v in expected.items())
    # the baseline run compared with the others: its own CE is 100 whatever the resample
    compared = run("compare", "--model", "small_tiny_net:build", "--model", "small_tiny_net:other",
                   "--baseline", "small", "--resamples", 100, *common)
    assert compared.exit_code == 0, compared.output
    (comparison,) = json.loads(compared.stdout)["comparisons"]
    own = comparison["models"][0]["metrics"]["mCE"]  # 12 images: no bootstrap interval (a note)
    assert own["estimate"] == pytest.approx(100.0, abs=1e-9) and own["low"] is own["high"] is None
    # every model has the same metrics: an undefined one is null (the baseline's relative mCE was
    # missing where it does not degrade, while the others' were null)
    first, second = (model["metrics"] for model in comparison["models"])
    assert list(first) == list(second) and "relative_mCE" in first, (first, second)
    # without the baseline: unnormalized, no CE
    plain = report_json(run("eval", "--model", "small_tiny_net:other", *common))
    assert plain["metrics"]["mCE"] is None
    assert plain["metrics"]["mean_error"] == pytest.approx(ours["metrics"]["mean_error"])
    # an unknown baseline name lists the stored ones
    wrong = run("eval", "--model", "small_tiny_net:other", "--baseline", "smal", *common)
    assert wrong.exit_code != 0 and "small" in wrong.output


def test_released_tiny_imagenet_c_folders_are_read_with_sorted_wnid_labels(tiny):
    store = tiny / "s.db"
    released = report_json(run("eval", "--model", "small_tiny_net:build", "--suite", "tinyimagenet-c",
                               "--corrupted-dir", tiny / "Tiny-ImageNet-C", "--corruptions", "fog",
                               "--severities", "1", "--store", store, "--format", "json"))
    clean = report_json(run("eval", "--model", "small_tiny_net:build", "--suite", "clean", "--data",
                            tiny / "tiny-imagenet-200", "--store", store, "--format", "json"))
    # the released cell holds the clean images: the same labels give the same error
    assert released["cells"][0]["top1_error"] == clean["clean"]["top1_error"]
    assert released["cells"][0]["n"] == 12


def test_released_tiny_imagenet_c_files_of_another_size_are_refused_before_compute(tiny):
    """A first file larger than 64 px passed the check (only smaller ones were refused) and was
    named mid-run, some shards stored."""
    for path in (tiny / "Tiny-ImageNet-C" / "fog" / "1").rglob("*.JPEG"):
        Image.open(path).resize((72, 72)).save(path)
    refused = run("eval", "--model", "small_tiny_net:build", "--suite", "tinyimagenet-c", "--corrupted-dir",
                  tiny / "Tiny-ImageNet-C", "--corruptions", "fog", "--severities", "1",
                  "--store", tiny / "s.db")
    assert refused.exit_code == 1 and "is 72x72, not one of the 64x64 images of Tiny-ImageNet-C" in \
        refused.output, refused.output
    assert not (tiny / "s.db").exists()


def test_imagenet_c_taken_to_tiny_imagenet_is_named_tinyimagenet_c_by_eval_and_report(tiny):
    """``--suite imagenet-c --dataset tinyimagenet`` runs Tiny-ImageNet-C: eval named it imagenet-c
    (the suite it was asked for, declared without a dataset) while report named the stored run
    tinyimagenet-c."""
    store = tiny / "s.db"
    ran = report_json(run("eval", "--model", "small_tiny_net:build", "--suite", "imagenet-c", "--dataset",
                          "tinyimagenet", "--data", tiny / "tiny-imagenet-200", "--corruptions", "fog",
                          "--severities", "1", "--store", store, "--format", "json"))
    assert ran["metrics"]["dataset"] == "tinyimagenet" and ran["suite"] == "tinyimagenet-c"
    stored = report_json(run("report", "--store", store, "--format", "json", "--no-intervals"))
    assert [r["suite"] for r in stored["reports"] if r["kind"] == "imagenet-c"] == ["tinyimagenet-c"]


def test_released_class_folders_numbered_in_sorted_order_must_all_be_there(tiny):
    """4 of Tiny-ImageNet's 200 class folders, numbered 0..3 by their sorted order, are not the
    classes 0..3 of a 200-class model: refused before compute (with wnids.txt they are read right)."""
    released = ["--suite", "tinyimagenet-c", "--corrupted-dir", tiny / "Tiny-ImageNet-C", "--corruptions",
                "fog", "--severities", "1", "--store", tiny / "s.db", "--format", "json"]
    refused = run("eval", "--model", "small_tiny_net:wide", *released)
    assert refused.exit_code == 1 and "the released files' 4 class folders are numbered in their sorted " \
        "order, but model 'small_tiny_net:wide' has 200 classes" in refused.output
    assert not (tiny / "s.db").exists()
    wnids = tiny / "tiny-imagenet-200"  # its wnids.txt as the real one: 200 classes
    (wnids / "wnids.txt").write_text("\n".join(WNIDS + [f"n{k:08d}" for k in range(196)]) + "\n")
    with_wnids = run("eval", "--model", "small_tiny_net:wide", *released, "--data", wnids)
    assert with_wnids.exit_code == 0, with_wnids.output
    assert run("eval", "--model", "small_tiny_net:build", *released).exit_code == 0  # 4 classes, 4 folders
    # released Tiny-ImageNet-C is read in its own order: --class-order imagenet is no order of it
    refused = run("eval", "--model", "small_tiny_net:build", *released, "--class-order", "imagenet")
    assert refused.exit_code == 2
    # (Tiny-ImageNet's: the -P suite's refusal named the -C benchmark)
    assert "released files are read in Tiny-ImageNet's own order (their -C or -P benchmark's)" \
        in refused.output


def _folder(root, classes, size, sizes_vary=False):
    for k in range(classes):
        (root / f"c{k:03d}").mkdir(parents=True)
        side = size + (k % 3 if sizes_vary else 0)
        Image.fromarray(np.zeros((side, side + (1 if sizes_vary else 0), 3), np.uint8)).save(
            root / f"c{k:03d}" / "a.png")
    return root


def test_datasets_are_detected_from_their_layout(cifar, tiny, tmp_path):
    from robustbench_gcp.data.datasets import detect_dataset

    assert detect_dataset(cifar / "cifar-10-batches-py") == "cifar10"
    assert detect_dataset(cifar / "cifar-10-batches-py" / "test_batch") == "cifar10"
    assert detect_dataset(cifar / "folder") == "cifar10"
    assert detect_dataset(tiny / "tiny-imagenet-200") == "tinyimagenet"
    assert detect_dataset(tiny / "tiny-imagenet-200" / "val") == "tinyimagenet"
    assert detect_dataset(_folder(tmp_path / "hundred", 12, 32)) == "cifar100"
    assert detect_dataset(_folder(tmp_path / "sixty-four", 3, 64)) == "tinyimagenet"
    for folder in (tmp_path / "sixty-four").iterdir():  # hidden files (macOS's ._ pairs) are no images
        (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07")
        (folder / ".ipynb_checkpoints").mkdir()
        (folder / ".ipynb_checkpoints" / "0.png").write_bytes(b"")
    assert detect_dataset(tmp_path / "sixty-four") == "tinyimagenet"
    assert detect_dataset(_folder(tmp_path / "photos", 5, 64, sizes_vary=True)) is None
    assert detect_dataset(tmp_path / "missing") is None


def test_data_paths_errors_name_the_key_and_the_variable(tmp_path, monkeypatch):
    from robustbench_gcp.config import ConfigError, parse_config

    def parse(datasets):  # a configuration's datasets section, beside a suite
        return parse_config({"suites": {"clean": {}}, "datasets": datasets}, tmp_path / "b.yaml")

    monkeypatch.delenv(DATA_VARIABLE, raising=False)
    no_root = parse({"cifar10": {"clean": "cifar"}})
    with pytest.raises(ConfigError, match=f"datasets.cifar10.clean .*{DATA_VARIABLE}"):
        no_root.data.path("cifar10")
    assert no_root.data.path("tinyimagenet") is None
    with pytest.raises(ConfigError, match="datasets.cifar10: unknown key 'cleen'|cleen"):
        parse({"cifar10": {"cleen": "x"}})
    with pytest.raises(ConfigError, match="svhn"):
        parse({"svhn": {"clean": "x"}})
    (tmp_path / "data" / "cifar").mkdir(parents=True)
    relative = parse({"root": "data", "cifar10": {"clean": "cifar"}})
    assert relative.data.path("cifar10") == tmp_path / "data" / "cifar"
    monkeypatch.setenv(DATA_VARIABLE, str(tmp_path / "data"))
    elsewhere = parse({"root": "elsewhere", "cifar10": {"clean": "cifar"}})
    assert elsewhere.data.path("cifar10") == tmp_path / "data" / "cifar"
    # an absolute path that is not there: no word of a data root (it said "the data root None"); a
    # variable in it is not expanded, and said so
    monkeypatch.delenv(DATA_VARIABLE)
    with pytest.raises(ConfigError) as info:
        parse({"cifar10": {"clean": str(tmp_path / "gone")}}).data.path("cifar10")
    assert "None" not in str(info.value) and str(tmp_path / "gone") in str(info.value)
    with pytest.raises(ConfigError, match=f"environment variables are not expanded: {DATA_VARIABLE} sets"):
        parse({"cifar10": {"clean": "/$CIFAR/test"}}).data.path("cifar10")


def test_a_stored_cifar_baseline_is_resampled_with_the_same_images(cifar):
    """CIFAR-10-C's CE divides by a stored run's errors, sample means of the same images: the
    comparisons resample them together, so the baseline's own mCE is 100 in every resample."""
    store = cifar / "s.db"
    common = ["--suite", "cifar10-c", "--corruptions", "fog,contrast", "--severities", "3,5",
              "--data", cifar / "folder", "--store", store, "--format", "json"]
    report_json(run("baseline", "--model", "small_cifar_net:build", "--name", "mine", *common))
    out = report_json(run("report", "--store", store, "--baseline", "mine", "--format", "json",
                          "--resamples", "200"))
    (comparison,) = [c for c in out["comparisons"] if c["kind"] == "imagenet-c"]
    mce = comparison["models"][0]["metrics"]["mCE"]
    assert mce["estimate"] == pytest.approx(100.0)
    assert (mce["low"], mce["high"]) == pytest.approx((100.0, 100.0))
    # the mean error is a fraction, as in the reports; mCE a score with the baseline at 100
    (report,) = [r for r in out["reports"] if r["kind"] == "imagenet-c"]
    mean_error = comparison["models"][0]["metrics"]["mean_error"]["estimate"]
    assert mean_error == pytest.approx(report["metrics"]["mean_error"]) and mean_error < 1
    assert comparison["percent_metrics"] == ["mCE"]  # the metrics it has (relative_mCE was listed too)


def test_report_of_a_datasets_suite_shows_that_dataset_only(cifar, image_folder):
    """``--suite cifar10-c`` (a suite of benchmarks.yaml with ``dataset: cifar10``) is the imagenet-c
    kind on CIFAR-10 only; the kind's name still reports every dataset."""
    store = cifar / "s.db"
    common = ["--corruptions", "fog", "--severities", "1", "--store", store]
    assert run("eval", "--model", "small_cifar_net:build", "--suite", "cifar10-c", "--data",
               cifar / "folder", *common).exit_code == 0
    assert run("eval", "--model", "resnet18-gap", "--random-weights", "--suite", "imagenet-c", "--data",
               image_folder, *common).exit_code == 0

    def datasets(*suites):
        chosen = [arg for suite in suites for arg in ("--suite", suite)]
        result = run("report", "--store", store, *chosen, "--format", "json", "--no-intervals")
        assert result.exit_code == 0, result.output
        return sorted(r["metrics"]["dataset"] for r in json.loads(result.stdout)["reports"])

    assert datasets("cifar10-c") == ["cifar10"]
    assert datasets("imagenet-c") == ["cifar10", "imagenet"]
    # suites of one kind add up; the kind itself, in either place, still asks for every dataset
    assert datasets("cifar10-c", "tinyimagenet-c") == ["cifar10"]
    both = ["cifar10", "imagenet"]
    assert datasets("imagenet-c", "cifar10-c") == datasets("cifar10-c", "imagenet-c") == both
    # each under its suite's name, as eval reported it (not both as the kind imagenet-c)
    result = run("report", "--store", store, "--format", "json", "--no-intervals")
    named = {r["metrics"]["dataset"]: r["suite"] for r in json.loads(result.stdout)["reports"]
             if r["kind"] == "imagenet-c"}
    assert named == {"cifar10": "cifar10-c", "imagenet": "imagenet-c"}
    assert run("report", "--store", store, "--suite", "tinyimagenet-c").exit_code == 1  # none stored
    # a suite whose reports name no dataset (clean) keeps them all
    config = yaml.safe_load(default_config_path().read_text())
    config["suites"]["cifar10-clean"] = {"kind": "clean", "dataset": "cifar10"}
    path = cifar / "benchmarks.yaml"
    path.write_text(yaml.safe_dump(config))
    clean = run("report", "--config", path, "--store", store, "--suite", "cifar10-clean", "--format", "json",
                "--no-intervals")
    assert clean.exit_code == 0 and len(json.loads(clean.stdout)["reports"]) == 2, clean.output


def test_a_baseline_stored_by_an_earlier_version_says_what_it_cannot_normalize(cifar):
    """A baseline run whose brightness cells 0.7.0 made (no revision mark) has none made as this
    run's: its CE stays empty, and the note says why and what to do."""
    import sqlite3

    store = cifar / "s.db"
    common = ["--suite", "cifar10-c", "--corruptions", "fog,brightness", "--severities", "2",
              "--data", cifar / "folder", "--store", store, "--format", "json"]
    report_json(run("baseline", "--model", "small_cifar_net:build", "--name", "mine", *common))
    with sqlite3.connect(store) as db:  # as gcp-robust 0.7.0 stored it
        db.execute("UPDATE cells SET variant = REPLACE(variant, ',\"revision\":2', '') "
                   "WHERE name = 'brightness'")
    db.close()
    ours = report_json(run("eval", "--model", "small_cifar_net:build", "--seed", 1, "--baseline", "mine",
                           *common))
    ces = {e["corruption"]: e["CE"] for e in ours["per_corruption"]}
    assert ces["fog"] is not None and ces["brightness"] is None
    assert any(n.startswith("CE left empty for brightness: the stored baseline 'mine' has no complete cells")
               for n in ours["notes"]), ours["notes"]
    # a baseline of fewer severities than the run's: the note names the cells it lacks (it said
    # only "not computed, or by an earlier version")
    more = report_json(run("eval", "--model", "small_cifar_net:build", "--seed", 1, "--baseline", "mine",
                           *common[:5], "1,2,3", *common[6:]))
    assert any(n.startswith("CE left empty for fog, brightness: the stored baseline 'mine' has no complete "
                            "cells made as this run's of fog/1, fog/3, brightness/1, brightness/2, "
                            "brightness/3 (") for n in more["notes"]), more["notes"]


def test_labels_and_class_order_for_data_with_its_own_labels_are_usage_errors(cifar, tiny):
    """--labels and --class-order order a folder of images: given with CIFAR batches, a
    tiny-imagenet-200 root or released files alone they were silently ignored; now exit 2."""
    labels = cifar / "labels.csv"
    labels.write_text("ImageId,PredictionString\n")
    cases = [
        (["--suite", "cifar10-c", "--data", cifar / "cifar-10-batches-py", "--labels", labels],
         "`--labels` applies to a folder of images; "),
        (["--suite", "tinyimagenet-c", "--data", tiny / "tiny-imagenet-200", "--class-order", "sorted"],
         "`--class-order sorted` applies to a folder of images; "),
        (["--suite", "tinyimagenet-c", "--corrupted-dir", tiny / "Tiny-ImageNet-C", "--corruptions", "fog",
          "--severities", "1", "--labels", labels],
         "`--labels` labels the images of --data; released files are labelled by their wnid folders"),
    ]
    for args, message in cases:
        out = run("eval", "--model", "small_tiny_net:build", *args, "--store", cifar / "s.db")
        assert out.exit_code == 2 and message in out.output, out.output


def test_one_folder_read_as_tiny_imagenet_and_through_the_models_resize_are_two_runs(demo_val, tmp_path):
    """64 px copies of the demo images: as Tiny-ImageNet (auto-detected) they are read as they are,
    with --dataset imagenet through demo-gap's resize 73 / crop 64. Both runs had one key, so the
    second took the first one's clean cell: its clean error was the other reading's."""
    folder = tmp_path / "tiny64"
    for path in sorted(demo_val.rglob("*.JPEG"))[:24]:
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").resize((64, 64)).save(folder / path.parent.name / f"{path.stem}.png")
    common = ["eval", "--model", "demo-gap", "--random-weights", "--data", folder, "--class-order", "sorted",
              "--device", "cpu", "--format", "json"]
    as_imagenet = ["--suite", "imagenet-c", "--dataset", "imagenet", "--preset", "imagenet",
                   "--corruptions", "contrast", "--severities", "5"]

    def clean_error(store, *extra):
        result = run(*common, "--store", store, *extra)
        assert result.exit_code == 0, result.output
        report = json.loads(result.output[result.output.index("{"):])
        return report["clean"]["top1_error"]

    shared = tmp_path / "shared.db"
    as_they_are = clean_error(shared, "--suite", "clean")
    resized = clean_error(shared, *as_imagenet)
    assert resized == clean_error(tmp_path / "fresh.db", *as_imagenet)
    assert resized != as_they_are  # the two readings give other answers here
    with Store(shared) as store:
        assert len(store.runs()) == 2


def test_a_torchvision_architecture_trained_on_cifar_is_evaluated_with_its_classes(cifar):
    """A torchvision ResNet-18 trained on CIFAR (10 classes here) had no way in: torchvision:resnet18
    was built with 1000 classes whatever the file held, and a registry model's error advised a
    --preprocess that registry models refuse."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=len(NAMES)).eval()
    torch.save(net.state_dict(), cifar / "r18_cifar.pth")
    common = ["--suite", "cifar10-c", "--data", cifar / "folder", "--corruptions", "fog",
              "--severities", "1", "--store", cifar / "s.db", "--checkpoint", cifar / "r18_cifar.pth"]
    result = CliRunner().invoke(main, [str(a) for a in ["eval", "--model", "resnet18-gap", *common]])
    assert result.exit_code == 2, result.output
    assert "'resnet18-gap' takes 224 px inputs, but CIFAR-10 images are 32 px: bring a 32 px network: " \
           "--model torchvision:NAME --preprocess input_size=32" in " ".join(result.output.split())
    out = report_json(run("eval", "--model", "torchvision:resnet18", "--preprocess",
                          "input_size=32,resize_size=32", *common, "--format", "json"))
    # the tool's count against the network's own answers on the same images
    images = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1)
                          for p in sorted((cifar / "folder").rglob("*.png"))]).float() / 255
    labels = torch.tensor([NAMES.index(p.parent.name) for p in sorted((cifar / "folder").rglob("*.png"))])
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    with torch.no_grad():
        wrong = (net((images - mean[:, None, None]) / std[:, None, None]).argmax(1) != labels).sum().item()
    assert out["clean"]["top1_error"] == pytest.approx(wrong / len(labels))
    # compare: its --preprocess for the models brought (it had none, and its error advised one) ...
    weights = cifar / "r18_cifar.pth"
    compared = CliRunner().invoke(main, [str(a) for a in [
        "compare", "--model", f"torchvision:resnet18={weights}", "--model", "small_cifar_net:build",
        "--preprocess", "input_size=32,resize_size=32", *common[:-2], "--format", "json"]])
    assert compared.exit_code == 0, compared.output
    first = json.loads(compared.stdout)["reports"][0]
    assert first["model"] == "torchvision:resnet18" and first["clean"] == out["clean"]
    # ... and a model of another input size refused before the first model computes (it was
    # refused at its turn, the models before it computed and stored)
    store = cifar / "other.db"
    refused = CliRunner().invoke(main, [str(a) for a in [
        "compare", "--model", "small_cifar_net:build", "--model", f"torchvision:resnet18={weights}",
        *common[:-4], "--store", store]])
    assert refused.exit_code == 2 and "'torchvision:resnet18' takes 224 px inputs" in refused.output
    assert not store.exists() or not Store(store).runs()


def test_a_model_of_other_classes_than_the_datasets_own_labels_is_refused(cifar, tiny):
    """CIFAR's batches and Tiny-ImageNet's annotations label the dataset's own classes 0..K-1: a
    model of another number of classes (an ImageNet-1k network on Tiny-ImageNet, a CIFAR-100 one
    on CIFAR-10) ran with figures that meant nothing and no word about it."""
    imagenet_net = run("eval", "--model", "torchvision:resnet18", "--random-weights", "--preprocess",
                       "input_size=32,resize_size=32", "--suite", "cifar10-c", "--corruptions", "fog",
                       "--severities", "1", "--data", cifar / "cifar-10-batches-py",
                       "--store", cifar / "c.db")
    assert imagenet_net.exit_code != 0
    assert "labelled by the dataset's own 10 classes" in imagenet_net.output
    assert "'torchvision:resnet18' has 1000 classes" in " ".join(imagenet_net.output.split())
    assert not (cifar / "c.db").exists() or not Store(cifar / "c.db").runs()
    wide = run("eval", "--model", "small_tiny_net:wide", "--suite", "tinyimagenet-c", "--corruptions", "fog",
               "--severities", "1", "--data", tiny / "tiny-imagenet-200", "--store", tiny / "t.db")
    assert wide.exit_code != 0 and "own 4 classes" in wide.output and "has 200 classes" in wide.output
    fits = run("eval", "--model", "small_tiny_net:build", "--suite", "tinyimagenet-c", "--corruptions", "fog",
               "--severities", "1", "--data", tiny / "tiny-imagenet-200", "--store", tiny / "t.db")
    assert fits.exit_code == 0, fits.output


def test_generated_tiny_imagenet_p_motion_blur_says_it_is_stronger(tiny):
    """The blur is of the 64 px image here, of the full-size crop in the original: documented in
    PERTURBATIONS.md, and now in the report whose mean it enters (audit)."""
    common = ["--suite", "tinyimagenet-p", "--data", tiny / "tiny-imagenet-200", "--limit", 4, "--workers", 0,
              "--store", tiny / "s.db", "--format", "json"]
    blurred = report_json(run("eval", "--model", "small_tiny_net:build", "--perturbations", "motion_blur",
                              *common))
    assert any(note.startswith("motion_blur generated on 64 px images is stronger than Tiny-ImageNet-P's")
               for note in blurred["notes"]), blurred["notes"]
    other = report_json(run("eval", "--model", "small_tiny_net:build", "--perturbations", "brightness",
                            *common))
    assert not any("motion_blur" in note and "stronger" in note for note in other["notes"])


def test_a_baseline_of_another_datasets_images_says_which(cifar, tiny):
    """A CIFAR-10-P baseline under a Tiny-ImageNet-P run: FR left empty, saying it 'has no figures'
    for cells it holds of CIFAR-10's images (audit)."""
    store, common = cifar / "p.db", ["--perturbations", "brightness", "--limit", 4, "--workers", 0,
                                     "--format", "json"]
    report_json(run("baseline", "--model", "small_cifar_net:build", "--name", "pbase", "--suite", "cifar10-p",
                    "--data", cifar / "cifar-10-batches-py", "--store", store, *common))
    tiny_run = ["--model", "small_tiny_net:build", "--suite", "tinyimagenet-p", "--data",
                tiny / "tiny-imagenet-200", "--store", store, *common]
    # eval refuses it before any compute (a CIFAR-10-C baseline under a Tiny-ImageNet-C or CIFAR run
    # left every CE empty under "normalized by the stored baseline", advising to store it again)
    refused = run("eval", *tiny_run, "--baseline", "pbase")
    assert refused.exit_code == 2 and refused.stderr == (
        "Error: `--baseline pbase` cannot normalize this run of Tiny-ImageNet images: 'pbase' holds cells of "
        "CIFAR-10 images (a baseline normalizes runs of its own dataset: store one of Tiny-ImageNet with "
        "`gcp-robust baseline`)\n")
    report_json(run("eval", *tiny_run))
    stored = report_json(run("report", "--store", store, "--baseline", "pbase", "--model",
                             "small_tiny_net:build", "--format", "json", "--no-intervals"))
    (ours,) = stored["reports"]
    assert ours["perturbations"][0]["FR"] is None
    assert any("baseline 'pbase' holds brightness/1 of CIFAR-10 images, this run's are of Tiny-ImageNet"
               in note for note in ours["notes"]), ours["notes"]
    # a baseline of the run's dataset beside it is taken (the other one is not refused then)
    report_json(run("baseline", "--name", "tbase", *tiny_run))
    both = report_json(run("eval", *tiny_run, "--baseline", "pbase,tbase"))
    assert both["metrics"]["baseline"] == "tbase" and both["metrics"]["mT5D"] == 100.0, both["metrics"]


def test_report_with_a_corruption_baseline_of_another_dataset_says_which(cifar, tiny):
    """`report --baseline tb` (eval refuses it) on a CIFAR-10-C run with a Tiny-ImageNet-C stored
    baseline: CE empty, said to be for the baseline's images being of Tiny-ImageNet; it said
    "normalized by the stored baseline 'tb'" and advised to store it again."""
    store = cifar / "c.db"
    cells = ["--corruptions", "fog", "--severities", "1", "--store", store, "--format", "json"]
    report_json(run("baseline", "--model", "small_tiny_net:build", "--name", "tb", "--suite",
                    "tinyimagenet-c", "--data", tiny / "tiny-imagenet-200", *cells))
    cifar_run = ["--model", "small_cifar_net:build", "--suite", "cifar10-c", "--data",
                 cifar / "cifar-10-batches-py", *cells]
    refused = run("eval", *cifar_run, "--baseline", "tb")
    assert refused.exit_code == 2 and "'tb' holds cells of Tiny-ImageNet images" in refused.stderr
    report_json(run("eval", *cifar_run))
    stored = report_json(run("report", "--store", store, "--baseline", "tb", "--model",
                             "small_cifar_net:build", "--format", "json", "--no-intervals"))
    (ours,) = stored["reports"]
    assert ours["per_corruption"][0]["CE"] is None
    assert "CE left empty for fog: the stored baseline 'tb' holds them of Tiny-ImageNet images, this run's " \
        "are of CIFAR-10 (a baseline normalizes runs of its own dataset); so there is no mCE (nor relative " \
        "mCE)" in ours["notes"], ours["notes"]
    assert not any("normalized by the stored baseline" in note or "store it again" in note
                   for note in ours["notes"]), ours["notes"]


def test_a_baseline_of_another_datasets_cells_is_told_by_cells_of_the_same_kind():
    """An ImageNet-P cell of the baseline (brightness at difficulty 1) is not its ImageNet-C
    brightness at severity 1 of another dataset (helper-221)."""
    from robustbench_gcp.store import CellKey
    from robustbench_gcp.suites.stored_baselines import _of_other_datasets

    cifar_p = CellKey("imagenet-p", "brightness", "1", '{"dataset":"cifar10"}')
    tiny_c = CellKey("imagenet-c", "brightness", "1", '{"dataset":"tinyimagenet"}')
    assert _of_other_datasets({cifar_p: 1}, [tiny_c]) == {}
    cifar_c = CellKey("imagenet-c", "brightness", "1", '{"dataset":"cifar10"}')
    assert _of_other_datasets({cifar_p: 1, cifar_c: 2}, [tiny_c]) == {"brightness": "cifar10"}


def test_an_image_of_another_size_later_in_a_small_dataset_is_named_not_cropped(cifar, tiny):
    """Only the first image's size is checked before compute: a larger one later was centre-cropped
    to 32 / 64 px without a word (another picture than the dataset's), a smaller one said 'smaller
    than the crop'. Each names the file and the dataset's size; the cells before it stay stored."""
    last = sorted((cifar / "folder" / "truck").iterdir())[-1]
    Image.new("RGB", (40, 40), (200, 10, 10)).save(last)
    store = cifar / "s.db"
    out = run("eval", "--model", "small_cifar_net:build", "--suite", "cifar10-c", "--data", cifar / "folder",
              "--corruptions", "fog", "--severities", "1", "--store", store)
    assert out.exit_code != 0 and f"{last}: image is 40x40; this dataset's images are 32x32" in out.output
    Image.new("RGB", (30, 32)).save(last)
    out = run("eval", "--model", "small_cifar_net:build", "--suite", "cifar10-c", "--data", cifar / "folder",
              "--corruptions", "fog", "--severities", "1", "--store", store)
    assert out.exit_code != 0 and "image is 30x32; this dataset's images are 32x32" in out.output
    # 64 px images under a CIFAR suite: the dataset that size; --preset was offered, and then cropped
    # them to 32 px (it chooses parameters, not a size: now refused before compute, saying so)
    tiny_images = cifar / "t64"
    for k, name in enumerate(NAMES[:2]):
        (tiny_images / name).mkdir(parents=True)
        Image.new("RGB", (64, 64), (40 * k, 0, 0)).save(tiny_images / name / "0.png")
    common = ["--model", "small_cifar_net:build", "--suite", "cifar10-c", "--data", tiny_images,
              "--corruptions", "fog", "--severities", "1", "--store", cifar / "t.db"]
    out = run("eval", *common)
    assert out.exit_code != 0 and out.output.endswith("give --dataset tinyimagenet (or its suite)\n")
    out = run("eval", *common, "--preset", "cifar")
    assert out.exit_code != 0 and "CIFAR-10 images (suite cifar10-c's dataset: cifar10) are 32x32; give " \
        "--dataset tinyimagenet (--preset chooses the corruption parameters, not the images' size)" \
        in out.output
    assert not (cifar / "t.db").exists()
    # a released Tiny-ImageNet-C file of 72 px among the 64 px ones
    cell = tiny / "Tiny-ImageNet-C" / "fog" / "1" / WNIDS[3]
    odd = sorted(cell.iterdir())[-1]
    Image.new("RGB", (72, 72)).save(odd, format="JPEG")
    out = run("eval", "--model", "small_tiny_net:build", "--suite", "tinyimagenet-c", "--corrupted-dir",
              tiny / "Tiny-ImageNet-C", "--corruptions", "fog", "--severities", "1", "--store", tiny / "s.db")
    assert out.exit_code != 0 and f"{odd}: image is 72x72; this dataset's images are 64x64" in out.output


def test_imagenet_images_with_another_presets_parameters_are_not_alexnet_normalized(image_folder, tmp_path):
    """``--preset cifar`` on ImageNet images is another benchmark than ImageNet-C: AlexNet's published
    errors (made with ImageNet-C's parameters) normalized its CE as if it were ImageNet-C. Its figures
    are unnormalized, or normalized by a baseline stored with the same preset."""
    store = tmp_path / "s.db"
    common = ["--suite", "imagenet-c", "--data", image_folder, "--corruptions", "fog", "--severities", "1",
              "--store", store, "--format", "json"]
    forced = report_json(run("eval", "--model", "resnet18-gap", "--random-weights", "--preset", "cifar",
                             *common))
    assert forced["metrics"]["mCE"] is None and forced["metrics"]["preset"] == "cifar"
    assert any("ImageNet (cifar parameters): AlexNet's published errors" in n for n in forced["notes"])
    own = report_json(run("eval", "--model", "resnet18-gap", "--random-weights", *common))
    assert own["metrics"]["mCE"] is not None and "preset" not in own["metrics"]  # ImageNet-C: AlexNet's
    stored = run("baseline", "--model", "resnet18-gap", "--random-weights", "--seed", "1", "--name", "other",
                 "--preset", "cifar", *common)
    assert stored.exit_code == 0, stored.output
    theirs = json.loads(stored.stdout)["cells"][0]["top1_error"]
    normalized = report_json(run("eval", "--model", "resnet18-gap", "--random-weights", "--preset", "cifar",
                                 "--baseline", "other", *common))
    mine = normalized["cells"][0]["top1_error"]
    assert normalized["metrics"]["mCE"] == pytest.approx(100 * mine / theirs)
    # the stored report says the same as eval did
    reports = json.loads(run("report", "--store", store, "--format", "json", "--no-intervals").stdout)
    by_preset = {r["metrics"].get("preset"): r["metrics"]["mCE"] for r in reports["reports"]
                 if r["kind"] == "imagenet-c"}
    assert by_preset[None] is not None and by_preset["cifar"] is None
