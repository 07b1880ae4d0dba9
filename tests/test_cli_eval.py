"""`gcp-robust eval` end to end on a generated folder with a random-weight checkpoint."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torchvision import models as tv_models
from torchvision import transforms

from robustbench_gcp.cli import main
from robustbench_gcp.config import load_config
from robustbench_gcp.data.folders import scan_folder
from robustbench_gcp.store import Store

ALEXNET = load_config().baseline("alexnet")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def eval_args(image_folder, checkpoint, store, *extra, workers=0, batch_size=5):
    return ["eval", "--model", "resnet18-gap", "--checkpoint", checkpoint, "--data", image_folder,
            "--store", store, "--workers", workers, "--batch-size", batch_size, *extra]


def direct_correct(image_folder, checkpoint, resize=True):
    """Independent top-1 correctness per image: torchvision model and transforms, no project code
    (``resize`` False: images of the model's size, as released files are read)."""
    model = tv_models.resnet18()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.eval()
    pre = transforms.Compose([
        *([transforms.Resize(256), transforms.CenterCrop(224)] if resize else []), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    images = scan_folder(image_folder)
    correct = []
    with torch.no_grad():
        for path, label in zip(images.paths(), images.labels):
            with Image.open(path) as image:
                logits = model(pre(image.convert("RGB"))[None])
            correct.append(logits.argmax(1).item() == label)
    return correct


def direct_clean_error(image_folder, checkpoint):
    """An independent top-1 error (:func:`direct_correct`)."""
    correct = direct_correct(image_folder, checkpoint)
    return 1 - sum(correct) / len(correct)


def test_clean_error_equals_an_independent_computation(image_folder, gap_checkpoint, store_path):
    result = run(*eval_args(image_folder, gap_checkpoint, store_path, "--format", "json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_images"] == 12 and report["clean"]["top1_error"] is not None
    assert report["clean"]["top1_error"] == pytest.approx(direct_clean_error(image_folder, gap_checkpoint))
    assert 0.0 < report["clean"]["top1_error"] < 1.0


def test_imagenet_c_json_schema_and_reuse(image_folder, gap_checkpoint, store_path):
    args = eval_args(image_folder, gap_checkpoint, store_path, "--suite", "imagenet-c",
                     "--corruptions", "gaussian_noise,contrast", "--severities", "1,5",
                     "--format", "json", "--shard-size", 5)
    first = run(*args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    for key in ("model", "checkpoint", "suite", "seed", "n_images", "clean", "cells",
                "per_corruption", "metrics"):
        assert key in report
    assert report["suite"] == "imagenet-c" and report["seed"] == 0 and report["n_images"] == 12
    assert [(c["corruption"], c["severity"]) for c in report["cells"]] == [
        ("gaussian_noise", 1), ("gaussian_noise", 5), ("contrast", 1), ("contrast", 5)]
    for cell in report["cells"]:
        assert cell["n"] == 12 and 0.0 <= cell["top5_error"] <= cell["top1_error"] <= 1.0, cell
    clean = report["clean"]["top1_error"]
    ces = []
    for entry in report["per_corruption"]:
        e = [c["top1_error"] for c in report["cells"] if c["corruption"] == entry["corruption"]]
        a = [ALEXNET.error(entry["corruption"], s) for s in (1, 5)]
        assert entry["CE"] == pytest.approx(100 * sum(e) / sum(a))
        assert entry["relative_CE"] == pytest.approx(
            100 * sum(x - clean for x in e) / sum(x - ALEXNET.clean_error for x in a))
        ces.append(entry["CE"])
    metrics = report["metrics"]
    assert metrics["mCE"] == pytest.approx(sum(ces) / 2)
    assert metrics["baseline"] == "alexnet" and len(metrics["missing"]) == 13
    assert any("missing" in note for note in report["notes"])
    assert any("severities 1,5" in note for note in report["notes"])
    assert report["computed"]["computed"] == 5 * 3  # (clean + 4 cells) x 3 shards

    again = json.loads(run(*args).stdout)
    assert again["computed"]["computed"] == 0 and again["computed"]["reused"] == 15
    assert again["cells"] == report["cells"] and again["metrics"] == report["metrics"]


def test_other_formats(image_folder, gap_checkpoint, store_path, tmp_path):
    base = eval_args(image_folder, gap_checkpoint, store_path, "--suite", "imagenet-c",
                     "--corruptions", "brightness", "--severities", "2")
    table = run(*base)
    assert table.exit_code == 0 and "mCE (%, alexnet = 100)" in table.stdout
    assert "mean corruption error, unnormalized" in table.stdout
    as_csv = run(*base, "--format", "csv")
    csv_text = as_csv.stdout.splitlines()
    # the notes the table prints (one severity's sums) have no room in CSV: they go to stderr
    notes = [line for line in table.stdout.splitlines() if line.startswith("note: ")]
    assert notes and all(note in as_csv.stderr.splitlines() for note in notes)
    assert not any("note" in line for line in csv_text)
    assert csv_text[0].startswith("model,checkpoint_sha256,suite,kind,source,seed,precision,memory_format,"
                                  "device,n_images,"
                                  "data,data_fingerprint,partial,item,level,n,top1_error,top5_error,ce,"
                                  "relative_ce,severities,flip_probability")
    assert any(",False,clean,,12," in line for line in csv_text)  # an eval run is complete
    assert any(",brightness,2,12," in line for line in csv_text)
    assert any(",mean (benchmark),all," in line for line in csv_text)
    out = tmp_path / "r.md"
    markdown = run(*base, "--format", "markdown", "-o", out)
    assert markdown.exit_code == 0 and "wrote" in markdown.stderr
    text = out.read_text()
    assert "| corruption | err s2 % | mean err % | CE | rel. CE |" in text


def cells_of(store_path):
    with Store(store_path) as store:
        (run_info,) = store.runs()
        return {key: store.cell_result(cid, key, run_info.n_shards) for cid, key in store.cells(run_info.id)}


def test_a_run_reused_from_another_folder_says_so(image_folder, gap_checkpoint, tmp_path):
    """A run is found by its images' names and labels: a copy elsewhere reuses it, and says so."""
    store = tmp_path / "s.db"
    copy = tmp_path / "copy" / "val"
    shutil.copytree(image_folder, copy)
    first = run(*eval_args(image_folder, gap_checkpoint, store, "--format", "json"))
    assert first.exit_code == 0 and "results stored from the images in" not in first.stderr
    again = run(*eval_args(copy, gap_checkpoint, store, "--format", "json"))
    assert again.exit_code == 0, again.output
    note = f"results stored from the images in {image_folder} are used for those in {copy}"
    assert note in again.stderr and any(note in n for n in json.loads(again.stdout)["notes"])
    assert json.loads(again.stdout)["computed"]["computed"] == 0


def test_a_relative_data_path_is_the_same_folder_from_anywhere(image_folder, gap_checkpoint, tmp_path,
                                                               monkeypatch):
    store = tmp_path / "s.db"
    monkeypatch.chdir(image_folder.parent)
    first = run(*eval_args(image_folder.name, gap_checkpoint, store, "--format", "json"))
    assert first.exit_code == 0, first.output
    monkeypatch.chdir(tmp_path)
    again = run(*eval_args(image_folder, gap_checkpoint, store, "--format", "json"))
    assert again.exit_code == 0 and "results stored from the images in" not in again.stderr
    assert json.loads(again.stdout)["computed"]["computed"] == 0


def test_same_numbers_for_any_batch_size_worker_count_and_shard_size(image_folder, gap_checkpoint, tmp_path):
    common = ["--suite", "imagenet-c", "--corruptions", "gaussian_noise,shot_noise,impulse_noise",
              "--severities", "3"]
    variants = {"a": (1, 0, 500), "b": (7, 2, 5)}  # batch size, workers, shard size
    stores = {}
    for name, (batch_size, workers, shard_size) in variants.items():
        stores[name] = tmp_path / f"{name}.db"
        args = eval_args(image_folder, gap_checkpoint, stores[name], *common, "--shard-size", shard_size,
                         workers=workers, batch_size=batch_size)
        result = run(*args)
        assert result.exit_code == 0, result.output
    a, b = cells_of(stores["a"]), cells_of(stores["b"])
    assert a.keys() == b.keys() and len(a) == 4
    for key in a:
        assert a[key].counts == b[key].counts
        assert (a[key].correct == b[key].correct).all()


def test_loader_workers_exit_cleanly(image_folder, gap_checkpoint, tmp_path, monkeypatch):
    # Shards are decoded in a background thread. Forked from a concurrent.futures thread, every
    # DataLoader worker ended with exit code 1 (the executor's exit hook joined the worker's own
    # thread), and where torch's SIGCHLD handler was installed the run failed at random with
    # "DataLoader worker exited unexpectedly". The exit codes are read as torch shuts its workers down.
    # Forked from that thread at all, a worker could wait forever on a lock the main thread held
    # as it ran torch (once in about 25 resumed runs): the workers are forked in the main thread.
    import threading

    from torch.utils.data import dataloader
    exit_codes, forked_in = [], []
    shutdown = dataloader._MultiProcessingDataLoaderIter._shutdown_workers
    start = dataloader._MultiProcessingDataLoaderIter.__init__

    def recording(self):
        shutdown(self)
        exit_codes.extend(worker.exitcode for worker in self._workers)

    def starting(self, loader):
        forked_in.append(threading.current_thread() is threading.main_thread())
        start(self, loader)

    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "_shutdown_workers", recording)
    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "__init__", starting)
    result = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "imagenet-c",
                            "--corruptions", "fog", "--severities", "1", "--shard-size", 6, workers=2))
    assert result.exit_code == 0, result.output
    assert len(exit_codes) >= 4 and set(exit_codes) == {0}, exit_codes
    assert len(forked_in) == 2 and all(forked_in), forked_in  # two shards, each loader started in main


def test_corrupted_dir_reads_released_files_without_resizing(image_folder, gap_checkpoint, tmp_path):
    # Build a released-style ImageNet-C folder from the clean preprocessed images.
    released = tmp_path / "ImageNet-C"
    pre = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    images = scan_folder(image_folder)
    for name in images.names:
        target = released / "contrast" / "2" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image_folder / name) as image:
            pre(image.convert("RGB")).save(target.with_suffix(".png"))
            target.with_suffix(".png").rename(target)  # keep the original file name
    result = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "imagenet-c",
                            "--corrupted-dir", released, "--corruptions", "contrast", "--severities", 2,
                            "--format", "json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # lossless copies of the clean crops: the "corrupted" cell equals the clean cell
    assert report["cells"][0]["top1_error"] == report["clean"]["top1_error"]
    assert report["backend"] is None and report["corrupted_dir"] == str(released)
    # files that are not the clean crops (each holds the next class's picture): the cell is theirs
    swapped = tmp_path / "swapped"
    for name, other in zip(images.names, images.names[3:] + images.names[:3]):  # 3 images a class
        target = swapped / "contrast" / "3" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image_folder / other) as image:
            pre(image.convert("RGB")).save(target, format="PNG")
    result = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "swapped.db", "--suite", "imagenet-c",
                            "--corrupted-dir", swapped, "--corruptions", "contrast", "--severities", 3))
    assert result.exit_code == 0, result.output
    cells = {key.label: cell.correct.tolist() for key, cell in cells_of(tmp_path / "swapped.db").items()}
    expected = direct_correct(swapped / "contrast" / "3", gap_checkpoint, resize=False)
    assert cells["imagenet-c/contrast/3"] == expected and expected != cells["clean"]
    # given relative, it is absolute, as data and report's (it was the path as typed)
    import os

    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        again = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "imagenet-c",
                               "--corrupted-dir", "ImageNet-C", "--corruptions", "contrast",
                               "--severities", 2, "--format", "json"))
    finally:
        os.chdir(here)
    assert json.loads(again.stdout)["corrupted_dir"] == str(released)
    # the round-trip flags apply to corruptions computed here: named as typed
    for flag in ("--storage-roundtrip", "--no-storage-roundtrip"):
        refused = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "imagenet-c",
                                 "--corrupted-dir", released, "--corruptions", "contrast", flag))
        assert refused.exit_code == 2 and last_line(refused).startswith(f"Error: `{flag}` applies to "
                                                                        "corruptions computed on the fly")
    # folders of the selection that are missing: refused before any compute, all of them named
    missing = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "imagenet-c",
                             "--corrupted-dir", released, "--corruptions", "contrast,fog",
                             "--severities", "2,3"))
    assert missing.exit_code == 1
    assert last_line(missing) == (f"Error: {released} lacks 3 of the selected folders (contrast/3, fog/2, "
                                  "fog/3); pick the ones you have with --corruptions / --severities")
    # a cell folder without the images of --data: named before any compute
    first = sorted((released / "contrast" / "2").rglob("*.JPEG"))[0]
    (released / "fog" / "2" / first.parent.name).mkdir(parents=True)
    partial = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "imagenet-c",
                             "--corrupted-dir", released, "--corruptions", "fog", "--severities", 2))
    assert partial.exit_code == 1
    assert f"fog/2 lacks the files of {len(list(image_folder.rglob('*.JPEG')))} of the" in partial.stderr
    assert f"{first.parent.name}/{first.name}" in partial.stderr
    # released files of another size than ImageNet-C's 224 px: refused before any compute (the clean
    # cell too); larger or oblong ones were centre-cropped without a word
    for size in ((64, 64), (256, 256), (224, 250)):
        other = tmp_path / f"other{size[0]}x{size[1]}"
        for name in images.names[:2]:
            target = other / "contrast" / "2" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size).save(target, format="JPEG")
        refused = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "t.db", "--suite", "imagenet-c",
                                 "--corrupted-dir", other, "--corruptions", "contrast", "--severities", 2))
        assert refused.exit_code == 1 and (f"is {size[0]}x{size[1]}, not one of the 224x224 images of "
                                           "ImageNet-C") in last_line(refused), refused.output
        assert not (tmp_path / "t.db").exists()


def test_a_baseline_of_released_files_says_why_it_normalizes_no_generated_cell(demo_val, tmp_path):
    """helper-252: a baseline stored from released files left a generated run's CE empty saying it
    had no complete cells (not computed, or by an earlier version) and to store it again: in vain.
    (The demo's 10 classes: a stored baseline normalizes their CE, AlexNet's errors do not.)"""
    released = tmp_path / "ImageNet-C"
    pre = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])  # ImageNet-C's size
    for name in scan_folder(demo_val, class_order="sorted").names:
        target = released / "contrast" / "2" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(demo_val / name) as image:
            pre(image.convert("RGB")).save(target, format="PNG")
    common = ["--data", demo_val, "--class-order", "sorted", "--store", tmp_path / "s.db", "--workers", 0,
              "--limit", 10, "--suite", "imagenet-c", "--corruptions", "contrast", "--severities", 2]
    stored = run("baseline", "--model", "demo-gap", "--name", "rel", "--corrupted-dir", released, *common)
    assert stored.exit_code == 0, stored.output
    # fog made with CIFAR-10-C's parameters: said apart, with how (one way was said for all: helper-253)
    fog = [*common[:-4], "--corruptions", "fog", "--severities", 2, "--preset", "cifar"]
    stored = run("baseline", "--model", "demo-gap", "--name", "rel", *fog)
    assert stored.exit_code == 0, stored.output
    both = [*common[:-4], "--corruptions", "contrast,fog", "--severities", 2]
    result = run("eval", "--model", "demo-isqrt", "--baseline", "rel", "--format", "json", *both)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [e["CE"] for e in report["per_corruption"]] == [None, None]
    notes = [n for n in report["notes"] if n.startswith("CE left empty for")]
    end = ("; a baseline normalizes cells made as its own: store one made this way (gcp-robust baseline with "
           "this run's --corrupted-dir, --preset and --backend); so there is no mCE (nor relative mCE)")
    assert notes == [
        "CE left empty for fog: the stored baseline 'rel' holds fog/2 only made another way (torch, JPEG "
        "round trip, cifar parameters, 10 classes) than this run's (torch, JPEG round trip, 10 classes)"
        + end,
        "CE left empty for contrast: the stored baseline 'rel' holds contrast/2 only made another way "
        "(released, 10 classes) than this run's (torch, JPEG round trip, 10 classes)" + end], notes


def test_every_released_folder_holds_the_first_ones_images_before_compute(image_folder, gap_checkpoint,
                                                                        tmp_path):
    """Without --data a run's images are its first released folder's. An empty class folder in a
    later one (a partial extraction) passed the checks and failed halfway, after the first cell was
    computed; a file missing from the first shrank every cell, unsaid; a hidden ``._`` file (macOS)
    hid released images smaller than the benchmark's."""
    released = tmp_path / "C"
    names = scan_folder(image_folder).names
    for cell in ("fog/1", "contrast/1"):
        for name in names:
            target = released / cell / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(image_folder / name) as image:
                image.convert("RGB").resize((224, 224)).save(target, format="JPEG")
    store = tmp_path / "s.db"

    def evaluate(*extra):
        return run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--corrupted-dir",
                   released, "--store", store, "--workers", 0, "--suite", "imagenet-c", "--corruptions",
                   "fog,contrast", "--severities", 1, *extra)

    emptied = released / "contrast" / "1" / names[0].split("/")[0]
    shutil.move(emptied, tmp_path / "aside")
    emptied.mkdir()
    (emptied / "README.txt").write_text("not an image")
    refused = evaluate()
    assert refused.exit_code == 1 and last_line(refused).startswith(
        f"Error: released folder {released / 'contrast' / '1'} lacks the files of 3 of the 12 images of "
        f"{released / 'fog' / '1'}, the run's ({names[0]}, "), refused.output
    assert not store.exists()
    shutil.rmtree(emptied)
    shutil.move(tmp_path / "aside", emptied)

    (released / "fog" / "1" / names[-1]).unlink()  # the first folder lacks an image the others hold
    refused = evaluate()
    assert refused.exit_code == 1 and last_line(refused) == (
        f"Error: released folder {released / 'contrast' / '1'} holds 1 image beyond the 11 of "
        f"{released / 'fog' / '1'}, the run's ({names[-1]}): {released / 'fog' / '1'} lacks it (a partial "
        "extraction?); complete it, or pick complete ones"), refused.output
    assert not store.exists()
    limited = evaluate("--limit", 4)  # a subset of the first folder's images, all in the others
    assert limited.exit_code == 0, limited.output
    # with --data, released folders may hold more than its images (a subset of val evaluated)
    subset = tmp_path / "subset"
    shutil.copytree(image_folder, subset)
    (subset / names[-1]).unlink()
    part = evaluate("--data", subset, "--class-order", "imagenet", "--format", "json")
    assert part.exit_code == 0, part.output
    assert json.loads(part.stdout)["n_images"] == 11

    small = tmp_path / "small" / "fog" / "1" / names[0]
    small.parent.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(small, format="JPEG")
    (small.parent / "._0000.JPEG").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble, sorted first
    refused = run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--corrupted-dir",
                  tmp_path / "small", "--store", tmp_path / "t.db", "--suite", "imagenet-c", "--corruptions",
                  "fog", "--severities", 1)
    assert refused.exit_code == 1 and "is 64x64, not one of the 224x224" in last_line(refused)


def test_released_images_of_another_size_than_the_models_inputs_are_noted(image_folder, gap_checkpoint,
                                                                           tmp_path):
    """ImageNet-C's 224 px files, read as they are by a 64 px model (the clean images take its own
    preprocessing): said before the run and kept in its report; nothing said for a 224 px model."""
    released = tmp_path / "C"
    for name in scan_folder(image_folder).names:
        target = released / "fog" / "1" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image_folder / name) as image:
            image.convert("RGB").resize((224, 224)).save(target, format="JPEG")
    note = ("the model's inputs are 64 px, but the released ImageNet-C images are 224 px: they are given to "
            "it as they are, and its clean figures are of 64 px images")
    common = ("--suite", "imagenet-c", "--corruptions", "fog", "--severities", 1, "--format", "json",
              "--corrupted-dir", released, "--store", tmp_path / "s.db", "--workers", 0)
    small = run("eval", "--model", "demo-gap", "--random-weights", "--data", image_folder, "--class-order",
                "sorted", *common)
    assert small.exit_code == 0, small.output
    assert note in json.loads(small.stdout)["notes"] and note in " ".join(small.stderr.split())
    stored = run("report", "--store", tmp_path / "s.db", "--format", "json", "--models", "demo-gap")
    assert note in json.loads(stored.stdout)["reports"][0]["notes"], stored.output
    for flag, value in (("--models", ","), ("--models", ""), ("--suite", " , ")):  # reported everything
        none = run("report", "--store", tmp_path / "s.db", flag, value)
        assert none.exit_code == 2 and f"`{flag} {value!r}` names none (leave it out for all)" in none.stderr
    full = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", *common[:-4]))
    assert full.exit_code == 0, full.output
    assert not any("inputs are" in n for n in json.loads(full.stdout)["notes"]), full.stdout


def test_released_files_elsewhere_say_so_and_reports_name_them(image_folder, gap_checkpoint, tmp_path):
    """Released cells are found by the images' names and labels, as --data's: cells stored from one
    folder and reused for another are said, per cell, before anything is computed; cells computed
    from the second folder are not; reports name the folders their released cells came from, each once, and
    reports of generated cells none; a run of released files alone records no clean folder."""
    released = tmp_path / "C"
    for cell in ("fog/1", "fog/2", "contrast/1"):
        for name in scan_folder(image_folder).names:
            target = released / cell / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(image_folder / name) as image:
                image.convert("RGB").resize((224, 224)).save(target, format="JPEG")
    other = tmp_path / "C2"
    shutil.copytree(released, other)
    store = tmp_path / "s.db"

    def evaluate(folder, corruptions, *extra):
        out = run(*eval_args(image_folder, gap_checkpoint, store, "--suite", "imagenet-c", "--corruptions",
                             corruptions, "--severities", 1, "--format", "json", *extra,
                             *(("--corrupted-dir", folder) if folder else ())))
        assert out.exit_code == 0, out.output
        return " ".join(out.stderr.split()), json.loads(out.stdout)["notes"]

    alone = run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--corrupted-dir",
                released, "--store", store, "--workers", 0, "--suite", "imagenet-c", "--corruptions", "fog",
                "--severities", 1)
    assert alone.exit_code == 0, alone.output
    said, notes = evaluate(released, "fog")  # the same run (names and labels), fog/1 reused: nothing to say
    assert "results stored from" not in said and not any("results stored from" in n for n in notes)
    said, notes = evaluate(other, "fog,contrast")  # fog/1 reused from C; contrast/1 computed from C2
    note = (f"results stored from the released files in {released} are used for those in {other} (fog/1: "
            "the same file names and labels")
    (told,) = [n for n in notes if n.startswith("results stored from")]
    assert note in said and told.startswith(note) and "contrast/1" not in told
    said, _ = evaluate(released, "contrast")  # contrast/1 came from C2
    assert f"results stored from the released files in {other} are used for those in {released} (contrast/1" \
        in said
    evaluate(released, "fog", "--severities", 2)  # a second cell from C: C is still named once
    evaluate(None, "fog", "--no-storage-roundtrip")  # generated cells of the same run and kind

    reported = run("report", "--store", store, "--suite", "imagenet-c", "--format", "json", "--no-intervals")
    reports = json.loads(reported.stdout)["reports"]
    (released_report,) = [r for r in reports if r["source"] == "released"]
    assert [n for n in released_report["notes"] if n.startswith("released files read from")] == [
        f"released files read from {released}", f"released files read from {other}"]
    assert released_report["corrupted_dir"] is None  # two folders
    (generated,) = [r for r in reports if r["source"] != "released"]
    assert not any(n.startswith("released files read from") for n in generated["notes"])


# -- bad input: a clear one-line error, the right exit code, nothing stored lost ------------

def last_line(result):
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (("--model", "resnet18-gp"), 2, "Error: unknown model 'resnet18-gp'. Did you mean 'resnet18-gap'?"),
        (("--suite", "imagenet_c"), 2, "Error: unknown suite 'imagenet_c'. Did you mean 'imagenet-c'?"),
        (("--suite", "imagenet-c", "--corruptions", "gaussian_nosie"), 2,
         "Error: unknown corruption 'gaussian_nosie'. Did you mean 'gaussian_noise'?"),
        (("--suite", "imagenet-c", "--corruptions", "jpeg"), 2,  # its start (helper-263: nothing was said)
         "Error: unknown corruption 'jpeg'. Did you mean 'jpeg_compression'?"),
        (("--suite", "imagenet-c", "--corruptions", "rotate"), 2,  # not "Did you mean 'saturate'?"
         "Error: unknown corruption 'rotate'. 'rotate' is an ImageNet-P perturbation, not a corruption."),
        (("--suite", "imagenet-c", "--severities", "0,7"), 2, "Error: `--severities` should be 1..5. Got 0"),
        (("--severities", "3"), 2,
         "Error: `--severities` applies to the imagenet-c/landscape suite, not to 'clean'"),
        (("--baseline", "alexnet"), 2, "Error: --baseline normalizes the metrics of the "
         "imagenet-c/imagenet-p suites; the clean suite has none to normalize"),
        (("--checkpoint", "/nonexistent/r18.pth"), 1,
         "Error: checkpoint file /nonexistent/r18.pth does not exist"),
        (("--data", "/nonexistent/val"), 1, "Error: data folder /nonexistent/val does not exist"),
        (("--limit", "0"), 2, "Error: Invalid value for '--limit': 0 is not in the range x>=1."),
        (("--class-order", "alpha"), 2,
         "Error: Invalid value for '--class-order': 'alpha' is not one of 'imagenet', 'sorted'."),
        (("-o", "/nonexistent/out.json"), 2,
         "Error: Invalid value for '-o' / '--output': the folder /nonexistent of /nonexistent/out.json "
         "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(image_folder, gap_checkpoint, store_path, extra, code, message):
    args = eval_args(image_folder, gap_checkpoint, store_path)
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    result = run(*args)
    assert result.exit_code == code, result.output
    assert last_line(result) == message
    assert result.stdout == ""


def test_a_checkpoint_given_as_the_model_names_the_way_to_give_it(image_folder, gap_checkpoint, store_path):
    """`--model FILE` and compare's `--model NAME=FILE` under eval said "unknown model" (helper-209)."""
    args = eval_args(image_folder, gap_checkpoint, store_path)
    args[args.index("--model") + 1] = str(gap_checkpoint)
    result = run(*args)
    assert result.exit_code == 2 and last_line(result).startswith(
        f"Error: model '{gap_checkpoint}' is a file: name the architecture as the model and give the file as "
        f"its checkpoint (eval: `--model ARCH --checkpoint {gap_checkpoint}`;"), result.output
    args[args.index("--model") + 1] = f"resnet18-gap={gap_checkpoint}"
    result = run(*args)
    assert result.exit_code == 2 and last_line(result) == (
        f"Error: model 'resnet18-gap={gap_checkpoint}': give its checkpoint apart, as `--model resnet18-gap "
        f"--checkpoint {gap_checkpoint}` (MODEL=CHECKPOINT is `gcp-robust compare --model`'s form)")
    args[args.index("--model") + 1] = f"torchvision:resnet18={gap_checkpoint}"  # "unknown torchvision model"
    result = run(*args)
    assert result.exit_code == 2 and "give its checkpoint apart, as `--model torchvision:resnet18 " \
        f"--checkpoint {gap_checkpoint}`" in last_line(result), result.output
    assert not store_path.exists()


def test_malformed_config(image_folder, gap_checkpoint, store_path, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("suites:\n  clean: {kind: clean\n")
    result = run(*eval_args(image_folder, gap_checkpoint, store_path, "--config", bad))
    assert result.exit_code == 2
    assert last_line(result).startswith(f"Error: {bad}: malformed YAML (line 3")


def test_empty_folder_and_missing_labels(tmp_path, gap_checkpoint, store_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(*eval_args(empty, gap_checkpoint, store_path))
    assert result.exit_code == 1 and "is empty" in last_line(result)


def test_broken_images_are_named_and_stored_work_is_kept(image_folder, gap_checkpoint, store_path, tmp_path):
    good = run(*eval_args(image_folder, gap_checkpoint, store_path, "--shard-size", 4))
    assert good.exit_code == 0
    with Store(store_path) as store:
        before = store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
    for seed, kind in ((1, "fake"), (2, "truncated")):  # other seeds: new runs, nothing reused
        broken = tmp_path / kind
        shutil.copytree(image_folder, broken)
        victim = sorted((broken / "n01484850").glob("*.JPEG"))[1]
        if kind == "fake":
            victim.write_text("<html>not an image</html>")
        else:
            victim.write_bytes(victim.read_bytes()[:800])
        args = eval_args(broken, gap_checkpoint, store_path, "--shard-size", 4, "--seed", seed)
        result = run(*args)
        assert result.exit_code == 1
        assert last_line(result).startswith(f"Error: cannot read image {victim}: ")
        stored = re.search(r"\. (\d+) of (\d+) shards are stored: replace the file with a readable one of "
                           r"the same name and re-run the same command to resume \(an image list without "
                           r"it is a new run, started afresh\)$", last_line(result))
        assert stored and 0 < int(stored.group(1)) < int(stored.group(2)), last_line(result)
        if kind == "fake":  # replaced as said: the run resumes, the stored shards kept
            shutil.copy(image_folder / victim.relative_to(broken), victim)
            resumed = run(*args)
            assert resumed.exit_code == 0, resumed.output
            assert f"{stored.group(1)} of {stored.group(2)}" in " ".join(resumed.output.split())
    with Store(store_path) as store:
        after = store.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
        # the earlier run's shards are intact, and the broken runs kept the shards before the bad file
        assert after >= before + 2
        (first, *_) = store.runs()
        assert all(r.complete for r in store.results(first))


FLAKY_NET = """
import pathlib

import torch

CALLS = []


class Flaky(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=8)
        self.fc = torch.nn.Linear(4, 10)

    def forward(self, x):
        CALLS.append(1)
        if len(CALLS) > 4 and pathlib.Path(__file__).with_name("FAIL").exists():  # (3 calls check it)
            raise ValueError("bad shape in my layer")
        return self.fc(self.conv(x).mean((2, 3)))


def build():
    return Flaky()
"""


def test_a_model_you_bring_that_raises_mid_run_is_one_line_and_resumes(demo_val, on_sys_path, tmp_path):
    """A user's forward that raised half-way printed a traceback; now one line says where in their
    code, which shard, and how much is stored, and the mended code resumes the same run."""
    (on_sys_path / "flaky_net.py").write_text(FLAKY_NET)
    (on_sys_path / "FAIL").touch()
    args = ["eval", "--model", "flaky_net:build", "--data", demo_val, "--class-order", "sorted",
            "--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1,2", "--limit", 20,
            "--shard-size", 5, "--batch-size", 5, "--workers", 0, "--store", tmp_path / "s.db"]
    result = run(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    line = last_line(result)
    stored = re.search(r"^Error: [\w/ -]+, shard \d of 4: the forward pass of 'flaky_net:build' raised "
                       r"ValueError: bad shape in my layer \(at flaky_net\.py:\d+, in forward\); nothing was "
                       r"stored for this shard\. (\d+) of (\d+) shards are stored: mend the model's code and "
                       r"re-run the same command to resume$", line)
    assert stored and 0 < int(stored.group(1)) < int(stored.group(2)), line
    (on_sys_path / "FAIL").unlink()
    resumed = run(*args)
    assert resumed.exit_code == 0, resumed.output
    assert f"{stored.group(1)} of {stored.group(2)}" in " ".join(resumed.output.split())


NO_GRADIENT_NET = """
import torch


class Frozen(torch.nn.Module):
    def __init__(self, detach):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=8)
        self.fc = torch.nn.Linear(4, 10)
        self.detach = detach

    def forward(self, x):
        if self.detach == "in place":
            out = self.fc(self.conv(x).mean((2, 3)))
            x.mul_(0.0)  # after using it: the backward pass needs the x it saw
            return out
        if self.detach:
            return self.fc(self.conv(x).mean((2, 3)).detach())
        with torch.no_grad():
            features = self.conv(x).mean((2, 3))
        return self.fc(features)


def no_grad():
    return Frozen(False)


def detached():
    return Frozen(True)


def in_place():
    return Frozen("in place")
"""


@pytest.mark.parametrize("suite", [["adversarial", "--attacks", "fgsm"], ["landscape", "--etas", "0.01:0.1:2",
                                             "--landscape-at", "pixels"]])
def test_a_model_you_bring_without_input_gradients_is_one_line(demo_val, on_sys_path, tmp_path, suite):
    """A forward under torch.no_grad(), one that detaches its features and one that changes its
    input in place after using it ended the adversarial and landscape suites in autograd's
    RuntimeError traceback: one line says what the suite needs and what the model's code does."""
    (on_sys_path / "frozen_net.py").write_text(NO_GRADIENT_NET)
    for builder, autograd in (("no_grad", "element 0 of tensors does not require grad"),
                              ("detached", "element 0 of tensors does not require grad"),
                              ("in_place", "has been modified by an inplace operation")):
        result = run("eval", "--model", f"frozen_net:{builder}", "--data", demo_val, "--class-order",
                     "sorted", "--suite", *suite, "--limit", 4, "--workers", 0, "--store", tmp_path / "s.db")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        needs = "attack fgsm" if suite[0] == "adversarial" else "the landscape suite"
        said = last_line(result)
        assert f"{needs} needs the gradient of the model's loss with respect to its input" in said, said
        assert autograd in said and ("changes in place" in said) == (builder == "in_place"), said


def test_all_19_corruptions_and_the_reference_backend_through_the_cli(demo_val, tmp_path):
    """`--corruptions all` runs the 19 torch corruptions on the device; `--backend reference`
    runs imagecorruptions (with its compatibility fixes) through the same engine."""
    common = ["eval", "--model", "demo-isqrt", "--data", demo_val, "--class-order", "sorted",
              "--suite", "imagenet-c", "--limit", 10, "--workers", 0, "--format", "json", "--severities", "3"]
    torch_run = json.loads(run(*common, "--store", tmp_path / "a.db", "--corruptions", "all").stdout)
    assert len(torch_run["cells"]) == 19 and torch_run["backend"] == "torch"
    assert {c["corruption"] for c in torch_run["cells"]} >= {"speckle_noise", "gaussian_blur", "spatter",
                                                              "saturate"}
    # the demo's 10 classes: the unnormalized mean error over the 15, not AlexNet's mCE
    assert torch_run["metrics"]["missing"] == [] and torch_run["metrics"]["mean_error"] is not None
    assert torch_run["metrics"]["classes"] == 10 and torch_run["metrics"]["mCE"] is None
    reference = json.loads(run(*common, "--store", tmp_path / "b.db", "--backend", "reference",
                               "--corruptions", "contrast,brightness,defocus_blur").stdout)
    assert reference["backend"] == "reference" and len(reference["cells"]) == 3
    ours = {c["corruption"]: c["top1_error"] for c in torch_run["cells"]}
    for cell in reference["cells"]:  # deterministic corruptions: at most one image of ten differs
        assert abs(cell["top1_error"] - ours[cell["corruption"]]) <= 0.1 + 1e-9, cell


def test_a_model_without_checkpoint_needs_random_weights_said(image_folder, gap_checkpoint, store_path):
    base = ["--data", image_folder, "--store", store_path, "--workers", 0, "--limit", 4]
    missing = run("eval", "--model", "resnet18-mpncov", *base)
    assert missing.exit_code == 2
    assert last_line(missing) == (
        "Error: model 'resnet18-mpncov' has no checkpoint: pass --checkpoint FILE, or --random-weights "
        "to evaluate the architecture with seeded random weights (a pipeline check, not a result)")
    assert not store_path.exists()
    # a baseline above all: a random AlexNet must never become the normalizer of later reports
    baseline = run("baseline", "--model", "alexnet", *base)
    assert baseline.exit_code == 2 and "model 'alexnet' has no checkpoint" in last_line(baseline)
    both = run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--random-weights", *base)
    assert both.exit_code == 2 and "exclude each other" in last_line(both)
    # resnet18-gap of benchmarks.yaml names a URL: --random-weights uses none, and downloads nothing
    random = run("eval", "--model", "resnet18-gap", "--random-weights", *base, "--format", "json")
    assert random.exit_code == 0, random.output
    report = json.loads(random.stdout)
    assert report["checkpoint"] is None and report["clean"]["top1_error"] >= 0


def test_released_imagenet_p_folders_are_checked_first(image_folder, gap_checkpoint, tmp_path):
    released = tmp_path / "ImageNet-P"
    (released / "rotate").mkdir(parents=True)
    result = run(*eval_args(image_folder, gap_checkpoint, tmp_path / "s.db", "--suite", "imagenet-p",
                            "--corrupted-dir", released, "--perturbations", "gaussian_noise,rotate",
                            "--difficulties", "1,2"))
    assert result.exit_code == 1
    assert last_line(result) == (f"Error: {released} lacks 2 of the selected folders (gaussian_noise, "
                                 "gaussian_noise_2); pick the ones you have with "
                                 "--perturbations / --difficulties")
    assert not (tmp_path / "s.db").exists()


def test_a_limit_above_the_image_count_says_so(image_folder, gap_checkpoint, store_path):
    result = run(*eval_args(image_folder, gap_checkpoint, store_path, "--limit", 1000, "--format", "json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    note = f"--limit 1000 is more than the {report['n_images']} images: all of them were used"
    assert note in report["notes"]


def test_named_class_folders_need_class_order_sorted_which_the_report_notes(demo_val, tmp_path):
    """A stray hidden folder used to become class 0 and shift every label (more errors, exit 0)."""
    data = tmp_path / "val"
    shutil.copytree(demo_val, data)
    (data / ".ipynb_checkpoints").mkdir()
    args = ["eval", "--model", "demo-gap", "--limit", 20, "--workers", 0, "--format", "json"]
    refused = run(*args, "--data", data, "--store", tmp_path / "a.db")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert last_line(refused).startswith(f"Error: data folder {data} has class folders that are not "
                                         "ImageNet-1k wnids: astronaut, brick, chelsea, coffee, coins "
                                         "and 5 more. ")
    assert "pass --class-order sorted" in last_line(refused)
    ours = run(*args, "--data", data, "--class-order", "sorted", "--store", tmp_path / "a.db")
    clean = run(*args, "--data", demo_val, "--class-order", "sorted", "--store", tmp_path / "b.db")
    assert ours.exit_code == 0 and clean.exit_code == 0, ours.output + clean.output
    ours, clean = json.loads(ours.stdout), json.loads(clean.stdout)
    assert ours["clean"]["top1_error"] == clean["clean"]["top1_error"] < 0.5
    assert "labels: sorted folder order (--class-order sorted), 10 classes" in ours["notes"]


def test_class_order_is_part_of_the_data_identity(image_folder, gap_checkpoint, tmp_path):
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.pipeline import plan

    common = dict(checkpoint=str(gap_checkpoint), data=str(image_folder), store=str(tmp_path / "s.db"))
    standard = plan("resnet18-gap", **common)
    numbered = plan("resnet18-gap", class_order="sorted", **common)
    assert standard.images.labelling == "imagenet" and numbered.images.labelling == "folders"
    assert max(standard.images.labels) == 281 and max(numbered.images.labels) == 3
    assert standard.images.fingerprint() != numbered.images.fingerprint()
    with pytest.raises(ConfigError, match="`--class-order` should be one of imagenet, sorted. Got 'alpha'"):
        plan("resnet18-gap", class_order="alpha", **common)


def test_no_ema_of_a_file_without_ema_weights_is_said(image_folder, gap_checkpoint, store_path):
    """--no-ema of a checkpoint without state_dict_ema was taken and ignored without a word."""
    result = run("eval", "--model", "resnet18-gap", "--checkpoint", gap_checkpoint, "--data", image_folder,
                 "--store", store_path, "--workers", 0, "--limit", 4, "--no-ema", "--format", "json")
    assert result.exit_code == 0, result.output
    assert ("--no-ema: the checkpoint has no EMA weights (state_dict_ema); its only weights were "
            "evaluated") in json.loads(result.stdout)["notes"]
    # of that command, not of the run (the same run without the flag): `report` does not repeat it
    stored = run("report", "--store", store_path, "--format", "json", "--no-intervals")
    assert not any(note.startswith("--no-ema") for note in json.loads(stored.stdout)["reports"][0]["notes"])


def test_matrix_function_errors_name_the_options(image_folder, store_path):
    """The command line's errors about --sqrt / --ns-iters name those options, not the library's
    arguments (load_model's own messages keep sqrt= / ns_iters=)."""
    base = ["--data", image_folder, "--store", store_path, "--workers", 0, "--limit", 4, "--random-weights"]
    mixed = run("eval", "--model", "resnet18-isqrt", "--sqrt", "eig", "--ns-iters", 3, *base)
    assert mixed.exit_code == 2
    assert last_line(mixed) == ("Error: `--ns-iters` applies to the newton-schulz square root only; this "
                                "model uses eig. Pass --sqrt newton-schulz as well.")
    many = run("eval", "--model", "resnet18-isqrt", "--ns-iters", 21, *base)
    assert many.exit_code == 2 and "'--ns-iters': 21 is not in the range 1<=x<=20" in many.stderr
    gap = run("eval", "--model", "resnet18-gap", "--sqrt", "eig", *base)
    assert gap.exit_code == 2
    assert last_line(gap).startswith("Error: `--sqrt` cannot be used with resnet18-gap: it has no matrix")
    assert last_line(gap).endswith("`--sqrt` and `--ns-iters` apply to isqrt, mpncov and svdpade models. "
                                   "Got --sqrt eig")
    assert not store_path.exists()


def test_compare_refuses_a_baseline_no_compared_suite_uses(image_folder, store_path):
    args = ["compare", "--model", "resnet18-gap", "--model", "resnet18-isqrt", "--random-weights", "--data",
            image_folder, "--store", store_path, "--limit", 2, "--baseline", "alexnet"]
    refused = run(*args, "--suite", "clean")
    assert refused.exit_code == 2 and last_line(refused) == (
        "Error: --baseline normalizes the metrics of the imagenet-c/imagenet-p suites; the clean suite "
        "has none to normalize")
    assert not store_path.exists()


def test_eval_and_report_give_the_same_absolute_data_path(demo_val, tmp_path, monkeypatch):
    """eval's JSON gave --data as typed (`val`), report's the absolute path the store records."""
    monkeypatch.chdir(demo_val.parent)
    store = tmp_path / "s.db"
    result = run("eval", "--model", "demo-gap", "--data", "val", "--class-order", "sorted", "--store", store,
                 "--limit", 4, "--workers", 0, "--format", "json")
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    reported = run("report", "--store", store, "--format", "json", "--no-intervals")
    (stored,) = json.loads(reported.stdout)["reports"]
    assert evaluated["data"] == stored["data"] == str(demo_val)


def test_a_config_without_the_default_baseline(demo_val, tmp_path):
    """A config of your own without `baselines:` refused every ImageNet-C run ("unknown baseline
    'alexnet'"), though models of other classes never divide by it; ImageNet's 1000 classes need
    it, and say so (audit)."""
    config = tmp_path / "mine.yaml"
    config.write_text("models:\n  mine: {arch: demo-gap, checkpoint: 'package:demo/demo-gap.pth'}\n"
                      "suites:\n  imagenet-c: {kind: imagenet-c}\n")
    common = ["--config", config, "--suite", "imagenet-c", "--corruptions", "fog", "--severities", 1,
              "--data", demo_val, "--class-order", "sorted", "--store", tmp_path / "s.db", "--limit", 4,
              "--workers", 0]
    ten = CliRunner().invoke(main, [str(a) for a in ["eval", "--model", "mine", *common, "--format", "json"]])
    assert ten.exit_code == 0, ten.output
    assert json.loads(ten.stdout)["metrics"]["mCE"] is None
    thousand = CliRunner().invoke(main, [str(a) for a in ["eval", "--model", "resnet18-gap",
                                                          "--random-weights", *common]])
    assert thousand.exit_code == 2
    assert "`--baseline alexnet` (the default) is not among this config's baselines" in thousand.output
    # stored under the shipped configuration, then reported under this one: the note named
    # benchmarks.yaml and "e.g. alexnet", and spoke of CE sums of a baseline (helper-227)
    stored = CliRunner().invoke(main, [str(a) for a in ["eval", "--model", "resnet18-gap", "--random-weights",
                                                        *common[2:6], "--severities", "2,4", *common[8:]]])
    assert stored.exit_code == 0, stored.output
    store = str(tmp_path / "s.db")
    reported = CliRunner().invoke(main, ["report", "--config", str(config), "--store", store, "--suite",
                                         "imagenet-c", "--models", "resnet18-gap", "--format", "json"])
    assert reported.exit_code == 0, reported.output
    (report,) = json.loads(reported.stdout)["reports"]
    notes = " ".join(report["notes"])
    assert "no baseline named (--baseline, default alexnet) is among the configuration's `baselines:`" \
        in notes
    assert "the mean errors average severities 2,4 only" in notes and "CE sums" not in notes, notes
    unknown = CliRunner().invoke(main, ["report", "--config", str(config), "--store", store, "--baseline",
                                        "zzz"])
    assert unknown.exit_code == 2 and "unknown baseline 'zzz'. There are none to choose from." \
        in unknown.output


def test_a_config_baseline_without_a_corruption_says_so(demo_val, tmp_path):
    """A baselines entry of benchmarks.yaml lacking a corruption left its CE and the mCE empty
    without a word (audit)."""
    config = tmp_path / "mine.yaml"
    config.write_text("suites:\n  imagenet-c: {kind: imagenet-c}\nbaselines:\n  mybase:\n"
                      "    clean_error: 0.5\n    imagenet_c:\n      fog: [0.9, 0.9, 0.9, 0.9, 0.9]\n")

    def evaluate(corruptions: str, severity: int) -> dict:
        result = CliRunner().invoke(main, [str(a) for a in [
            "eval", "--config", config, "--model", "resnet18-gap", "--random-weights", "--suite",
            "imagenet-c", "--corruptions", corruptions, "--severities", severity, "--data", demo_val,
            "--class-order", "sorted", "--store", tmp_path / "s.db", "--limit", 4, "--workers", 0,
            "--baseline", "mybase", "--format", "json"]])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    report = evaluate("fog,brightness", 1)
    assert {e["corruption"]: e["CE"] is None for e in report["per_corruption"]} == {"fog": False,
                                                                                    "brightness": True}
    assert ("CE left empty for brightness: baseline 'mybase' (of benchmarks.yaml or --config) has no errors "
            "for them (add them to its imagenet_c); so there is no mCE (nor relative mCE)") in report["notes"]
    # and the mean over two corruptions is no mCE (the note said "mCE averages" beside an empty mCE)
    assert report["metrics"]["mCE"] is None
    assert any(note.startswith("the means average 2 of the 15") for note in report["notes"])
    # a table whose errors are 0 at the severities run: a zero normalizer, said (the CE was empty unsaid)
    config.write_text(config.read_text().replace("fog: [0.9, 0.9", "fog: [0.0, 0.9"))
    assert "CE left empty for fog: baseline 'mybase' made no error there (a zero normalizer); so there is " \
        "no mCE (nor relative mCE)" in evaluate("fog", 1)["notes"]
    # a table without clean_error: relative CE and relative mCE went missing without a word (helper-227)
    config.write_text(config.read_text().replace("    clean_error: 0.5\n", ""))
    report = evaluate("fog", 2)
    (fog,) = report["per_corruption"]
    assert fog["CE"] is not None and fog["relative_CE"] is None
    assert ("relative CE and relative mCE are empty: the baseline 'mybase' has no clean_error (relative CE "
            "subtracts each model's clean error from its errors)") in report["notes"], report["notes"]


@pytest.mark.parametrize("extra", [[], ["--class-order", "sorted"], ["--labels", "labels.txt"]])
def test_a_suite_without_images_says_it_needs_data_whatever_else_is_given(tmp_path, extra):
    """--class-order or --labels without --data (a clean suite of CIFAR-10) spoke of how released
    files are read, where there were none (audit)."""
    config = tmp_path / "mine.yaml"
    config.write_text("suites:\n  cleanc: {kind: clean, dataset: cifar10}\n")
    (tmp_path / "labels.txt").write_text("a.png 0\n")
    result = CliRunner().invoke(main, ["eval", "--config", str(config), "--model", "demo-gap", "--suite",
                                       "cleanc", "--store", str(tmp_path / "s.db"),
                                       *[str(tmp_path / a) if a.endswith(".txt") else a for a in extra]])
    assert result.exit_code == 2 and "Error: the clean suite needs --data DIR" in result.output, result.output
