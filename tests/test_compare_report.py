"""compare and report: stored cells reused, formats that round-trip, plots that are real PNGs."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from robustbench_gcp.cli import main
from robustbench_gcp.reports.comparison import ALIGNED

SELECTION = ["--suite", "clean,imagenet-c", "--corruptions", "gaussian_noise,fog", "--severities", "1,3",
             "--workers", "0", "--batch-size", "6", "--resamples", "200"]


@pytest.fixture(scope="module")
def isqrt_checkpoint(tmp_path_factory):
    """A CVPR2020-style {'state_dict': module.*} iSQRT-COV ResNet-18 with random weights, d = 32."""
    from robustbench_gcp.models import create_model

    torch.manual_seed(3)
    model = create_model("resnet18-isqrt", reduction_dim=32)
    path = tmp_path_factory.mktemp("isqrt") / "r18_isqrt.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


@pytest.fixture(scope="module")
def compared(image_folder, gap_checkpoint, isqrt_checkpoint, tmp_path_factory):
    """A store with two models compared on clean and ImageNet-C (run once for the module)."""
    store = tmp_path_factory.mktemp("compare") / "s.db"
    args = ["compare", "--model", f"resnet18-gap={gap_checkpoint}", "--model",
            f"resnet18-isqrt={isqrt_checkpoint}", "--data", str(image_folder), "--store", str(store),
            *SELECTION, "--format", "json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    return store, args, json.loads(first.stdout)


def test_compare_computes_then_reuses(compared):
    store, args, first = compared
    assert [r["model"] for r in first["reports"]] == ["resnet18-gap", "resnet18-isqrt"] * 2
    assert sum(r["computed"]["computed"] for r in first["reports"]) > 0
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0
    second = json.loads(again.stdout)
    assert sum(r["computed"]["computed"] for r in second["reports"]) == 0
    assert second["comparisons"] == first["comparisons"]
    figures_alone = [a for a in args if a not in ("--resamples", "200")]  # which --no-intervals refuses
    result = CliRunner().invoke(main, [*figures_alone, "--no-intervals"])  # as report: the figures alone
    assert result.exit_code == 0, result.output
    plain = json.loads(result.stdout)
    assert plain["comparisons"] == []
    assert [r["clean"] for r in plain["reports"]] == [r["clean"] for r in second["reports"]]


def test_comparison_has_intervals_deltas_and_tests(compared):
    _, _, out = compared
    (clean, corrupted) = out["comparisons"]
    assert clean["suite"] == "clean" and corrupted["suite"] == "imagenet-c"
    ref, other = corrupted["models"]
    assert ref["model"] == corrupted["reference"] == "resnet18-gap" and ref["delta"] is None
    clean_error = other["metrics"]["clean_error"]  # Wilson's interval, whatever the number of images
    assert clean_error["low"] <= clean_error["estimate"] <= clean_error["high"]
    for metric in ("mCE", "relative_mCE"):  # 12 images: too few for a bootstrap interval, said in a note
        iv = other["metrics"][metric]
        assert iv["estimate"] is not None and iv["low"] is None and iv["high"] is None
    assert "bootstrap intervals left empty: 12 images, fewer than the 20" in " ".join(corrupted["notes"])
    report = {r["model"]: r for r in out["reports"] if r["suite"] == "imagenet-c"}
    assert other["metrics"]["mCE"]["estimate"] == pytest.approx(report["resnet18-isqrt"]["metrics"]["mCE"])
    delta = other["delta"]["mCE"]["estimate"]
    assert delta == pytest.approx(report["resnet18-isqrt"]["metrics"]["mCE"]
                                  - report["resnet18-gap"]["metrics"]["mCE"])
    assert set(other["tests"]) == {"clean", "gaussian_noise", "fog"}
    for test in other["tests"].values():
        assert 0.0 <= test["p_value"] <= 1.0


def test_report_takes_compares_short_and_repeated_model_and_suite_options(compared):
    """`report -m A -m B -s imagenet-c` (compare's way) was "No such option '-m'"; and a repeated
    --models kept its last value."""
    store = compared[0]
    common = ["report", "--store", str(store), "--format", "json", "--no-intervals"]
    listed = CliRunner().invoke(main, [*common, "--models", "resnet18-gap,resnet18-isqrt", "--suite",
                                       "imagenet-c"])
    assert listed.exit_code == 0, listed.output
    for flags in (["-m", "resnet18-gap", "-m", "resnet18-isqrt", "-s", "imagenet-c"],
                  ["--model", "resnet18-gap", "--models", "resnet18-isqrt", "--suite", "imagenet-c"]):
        repeated = CliRunner().invoke(main, [*common, *flags])
        assert repeated.exit_code == 0, repeated.output
        assert repeated.stdout == listed.stdout
    one = json.loads(CliRunner().invoke(main, [*common, "-m", "resnet18-isqrt", "-s", "clean"]).stdout)
    assert [(r["model"], r["suite"]) for r in one["reports"]] == [("resnet18-isqrt", "clean")]
    near = CliRunner().invoke(main, ["report", "--store", str(store), "--reference", "resnet18-isqr"])
    assert near.exit_code == 2 and near.stderr == (  # as compare says it
        "Error: `--reference resnet18-isqr` is not one of the models compared: resnet18-gap, resnet18-isqrt. "
        "Did you mean 'resnet18-isqrt'?\n")


def test_report_json_and_long_csv_round_trip(compared):
    store = compared[0]
    as_json = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json",
                                        "--suite", "imagenet-c", "--resamples", "200"])
    assert as_json.exit_code == 0, as_json.output
    reports = json.loads(as_json.stdout)["reports"]
    as_csv = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "csv",
                                       "--suite", "imagenet-c", "--no-intervals"])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows and set(rows[0]) >= {"model", "suite", "item", "level", "top1_error", "ce"}
    for report in reports:
        for cell in report["cells"]:
            (row,) = [r for r in rows if r["model"] == report["model"] and r["item"] == cell["corruption"]
                      and r["level"] == str(cell["severity"])]
            assert float(row["top1_error"]) == cell["top1_error"] and int(row["n"]) == cell["n"]
        (mean,) = [r for r in rows if r["model"] == report["model"] and r["item"] == "mean (benchmark)"]
        assert float(mean["ce"]) == pytest.approx(report["metrics"]["mCE"])
    wide = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "csv", "--layout", "wide",
                                     "--suite", "imagenet-c", "--resamples", "200"])
    wide_rows = list(csv.DictReader(io.StringIO(wide.stdout)))
    assert [r["model"] for r in wide_rows] == ["resnet18-gap", "resnet18-isqrt"]
    # the comparison's notes (the report's in the terminal) go to stderr beside a CSV
    notes = json.loads(as_json.stdout)["comparisons"][0]["notes"]
    assert notes and all(f"note: {note}" in wide.stderr.splitlines() for note in notes)
    assert {"mce", "mce_low", "mce_high", "delta_mce"} <= set(wide_rows[1])
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in wide_rows[1]), list(wide_rows[1])
    # one header whichever model is the reference, and with --no-intervals the same first columns:
    # files of several runs line up column by column
    header = wide.stdout.splitlines()[0].split(",")
    assert header[:13] == ["suite", "source", "n_images", "data", "data_fingerprint", "model", "precision",
                           "memory_format", "device", "reference", "partial", "cells_left_out", "clean_error"]
    assert {(row["precision"], row["device"]) for row in wide_rows} == {("float32", "cpu")}
    # which images, and each paired test's p-values (only the JSON had them)
    assert {row["data"] for row in wide_rows} == {row["data"] for row in rows} == {r["data"] for r in reports}
    assert {row["data_fingerprint"] for row in rows} == {r["data_fingerprint"] for r in reports}
    tests = [c for c in header if c.startswith("p_") and not c.startswith("p_holm_")]
    assert tests and all(f"p_holm_{c[2:]}" in header for c in tests)
    assert wide_rows[0][tests[0]] == "" and 0 <= float(wide_rows[1][tests[0]]) <= 1  # the reference: none
    # each column holds the JSON's value of its name (same --resamples, same bootstrap seed)
    (compared_json,) = [c for c in json.loads(as_json.stdout)["comparisons"] if c["suite"] == "imagenet-c"]
    other = compared_json["models"][1]
    checked = 0
    for prefix, intervals in (("delta_", other["delta"]), ("", other["metrics"])):  # deltas, then values
        for metric, interval in intervals.items():
            for bound in ("estimate", "low", "high"):
                column = f"{prefix}{metric.lower()}" + ("" if bound == "estimate" else f"_{bound}")
                if column in wide_rows[1]:
                    cell = wide_rows[1][column]
                    assert (float(cell) if cell else None) == pytest.approx(interval[bound]), column
                    checked += bound != "estimate" and interval[bound] is not None
    for label, test in other["tests"].items():
        assert float(wide_rows[1][f"p_{label}"]) == pytest.approx(test["p_value"])
        assert float(wide_rows[1][f"p_holm_{label}"]) == pytest.approx(test["p_holm"])
    assert checked >= 4 and len(other["tests"]) >= 2
    assert header[header.index("mce"):header.index("mce") + 6] == [
        "mce", "mce_low", "mce_high", "delta_mce", "delta_mce_low", "delta_mce_high"]
    other = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "csv", "--layout", "wide",
                                      "--suite", "imagenet-c", "--resamples", "200",
                                      "--reference", "resnet18-isqrt"])
    assert other.stdout.splitlines()[0].split(",") == header
    plain = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "csv", "--layout", "wide",
                                      "--suite", "imagenet-c", "--no-intervals"])
    plain_header = plain.stdout.splitlines()[0].split(",")
    assert plain_header[:9] == header[:9] and "mce" in plain_header
    # and the same metrics, in one order: the comparison has the unnormalized mean error beside mCE
    assert plain_header[9:] == [c for c in header[9:]
                                if not c.endswith(("_low", "_high")) and not c.startswith(("delta_", "p_"))]
    assert [row["cells_left_out"] for row in csv.DictReader(io.StringIO(plain.stdout))] == ["0", "0"]


def test_report_gives_the_intervals_compare_gave_whatever_its_seed(demo_val, tmp_path):
    """--seed draws the corruptions; the bootstrap has its own seed, so `report` on the store repeats
    `compare --seed 1`'s intervals digit for digit (on 20 images: bootstrap intervals, not only Wilson's)."""
    args = ["--store", str(tmp_path / "s.db"), "--suite", "imagenet-c", "--resamples", "200",
            "--format", "json"]
    compared = CliRunner().invoke(main, ["compare", "--model", "demo-gap", "--model", "demo-isqrt", "--data",
                                         str(demo_val), "--class-order", "sorted", "--limit", "20",
                                         "--corruptions", "fog", "--severities", "1", "--workers", "0",
                                         "--seed", "1", *args])
    assert compared.exit_code == 0, compared.output
    reported = CliRunner().invoke(main, ["report", *args])
    assert reported.exit_code == 0, reported.output
    first, again = json.loads(compared.stdout)["comparisons"], json.loads(reported.stdout)["comparisons"]
    (mce,) = {m["metrics"]["mean_error"]["low"] for m in first[0]["models"][1:]}  # 10 classes: no mCE
    assert mce is not None and [c["models"] for c in first] == [c["models"] for c in again]


def test_report_markdown_and_plots(compared, tmp_path):
    store = compared[0]
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "markdown",
                                       "--resamples", "200", "--plot", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert ("| model | clean err % | Δ clean err % | mCE | Δ mCE | rel. mCE | Δ rel. mCE | mean err % "
            "| Δ mean err % | tests p<0.05 (Holm) |" in result.stdout)
    assert ("Note: tests p<0.05 (Holm): how many of the model's paired tests (McNemar's test on the "
            "clean images; per corruption, the sign test" in result.stdout)
    assert re.search(r"\| \d+ of 3 differ \|", result.stdout), result.stdout  # clean, 2 corruptions
    assert "| model | mCE | gaussian noise | fog |" in result.stdout
    expected_axes = {"error_vs_severity": 2, "ce_per_corruption": 1}
    written = sorted((tmp_path / "plots").glob("*.png"))
    assert len(written) == 2  # clean has nothing to draw; imagenet-c: error curves and CE bars
    found = {}
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            found[path.name] = int(image.info["Axes"])
    for name, axes in expected_axes.items():
        (match,) = [n for n in found if n.endswith(f"{name}.png")]
        assert found[match] == axes
    assert "from an earlier report" not in result.stderr
    # the folder reused: figures of an earlier report (another suite's) are named, and kept
    earlier = tmp_path / "plots" / "imagenet-p_flip_probability.png"
    earlier.write_bytes(written[0].read_bytes())
    (tmp_path / "plots" / "notes.png").write_bytes(b"not a figure")  # not ours: not named
    again = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c",
                                      "--no-intervals", "--plot", str(tmp_path / "plots")])
    assert again.exit_code == 0, again.output
    assert all(f"wrote {p}" in again.stderr for p in written) and earlier.exists()
    assert (f"--plot: 1 figure in {tmp_path / 'plots'} is from an earlier report, not of these (left as "
            "it was): imagenet-p_flip_probability.png\n") in again.stderr


def test_a_figure_that_cannot_be_written_leaves_the_others_written(compared, tmp_path):
    """A folder in one figure's place: the report and every other figure are written, the failed
    one is named with how many were not, and the exit status is 1 (the later figures used not to
    be written)."""
    plots = tmp_path / "plots"
    (plots / "imagenet-c_error_vs_severity.png").mkdir(parents=True)  # the first figure drawn
    result = CliRunner().invoke(main, ["report", "--store", str(compared[0]), "--suite", "imagenet-c",
                                       "--no-intervals", "-o", str(tmp_path / "r.md"), "--format",
                                       "markdown", "--plot", str(plots)])
    assert result.exit_code == 1, result.output
    assert (tmp_path / "r.md").read_text().startswith("#")
    bars = plots / "imagenet-c_ce_per_corruption.png"
    assert bars.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {bars}" in result.stderr
    assert f"cannot write the figure {plots / 'imagenet-c_error_vs_severity.png'}" in result.stderr
    assert "1 of 2 figures not written; the other 1 written" in result.stderr


def test_report_keeps_experiments_apart(demo_val, tmp_path):
    """Runs of one suite on other images, or with cells made another way, are other experiments:
    report compares, tabulates and plots them apart, and its JSON names the suite as eval does."""
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    common = dict(data=str(demo_val), class_order="sorted", store=str(store), suite="imagenet-c",
                  corruptions="fog", severities="3", workers=0)
    for model in ("demo-gap", "demo-isqrt"):
        evaluate(model, limit=10, **common)
    evaluate("demo-gap", limit=6, **common)
    evaluate("demo-gap", limit=6, storage_roundtrip=False, **common)
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c", "--format",
                                       "json", "--resamples", "100", "--plot", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {r["suite"] for r in out["reports"]} == {"imagenet-c"}
    assert sorted((c["source"], c["n_images"], len(c["models"])) for c in out["comparisons"]) == [
        ("torch, 10 classes", 6, 1), ("torch, JPEG round trip, 10 classes", 6, 1),
        ("torch, JPEG round trip, 10 classes", 10, 2)]
    names = sorted(p.name for p in (tmp_path / "plots").glob("*error_vs_severity.png"))
    assert len(names) == 3 and len(set(names)) == 3
    assert any(n.startswith("imagenet-c_torch_10_classes_error") for n in names), names
    ten = "imagenet-c_torch_JPEG_round_trip_10_classes_10-images_"
    assert sum(n.startswith(ten) for n in names) == 1, names
    table = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c",
                                      "--no-intervals"])
    # one table per experiment, as the comparisons: the same suite and source on other images apart
    titles = [line for line in table.stdout.splitlines() if line.startswith("Results in")]
    assert titles == [
        f"Results in {store}: imagenet-c (torch, JPEG round trip, 10 classes): 10 images of {demo_val}",
        f"Results in {store}: imagenet-c (torch, JPEG round trip, 10 classes): 6 images of {demo_val}",
        f"Results in {store}: imagenet-c (torch, 10 classes)"], table.stdout
    assert "mean err %" in table.stdout and "mean_error" not in table.stdout
    markdown = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c",
                                         "--no-intervals", "--format", "markdown"]).stdout
    assert markdown.count("error per corruption (%, unnormalized)") == 3, markdown  # one per experiment
    for layout in ("wide", "long"):  # both CSV layouts tell the two ways apart
        text = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c",
                                         "--no-intervals", "--format", "csv", "--layout", layout]).stdout
        sources = {row["source"] for row in csv.DictReader(io.StringIO(text))}
        assert sources == {"torch, 10 classes", "torch, JPEG round trip, 10 classes"}, (layout, sources)


def test_robust_accuracy_plot(image_folder, gap_checkpoint, tmp_path):
    import dataclasses

    from robustbench_gcp import evaluate
    from robustbench_gcp.suites.adversarial import robust_accuracy
    from robustbench_gcp.suites.charts import flip_probability

    report = evaluate("resnet18-gap", checkpoint=str(gap_checkpoint), suite="adversarial",
                      data=str(image_folder), store=str(tmp_path / "s.db"), attacks="fgsm",
                      epsilons="1/255,2/255", limit=4)
    path = robust_accuracy([report, dataclasses.replace(report, model="copy")], tmp_path / "robust.png")
    with Image.open(path) as image:
        assert image.info["Axes"] == "1" and image.size[0] > 200
    assert flip_probability([report], tmp_path / "fp.png") is None  # nothing to draw


def test_compare_errors(image_folder, gap_checkpoint, tmp_path):
    bad_ref = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}",
                                        "--data", str(image_folder), "--store", str(tmp_path / "s.db"),
                                        "--workers", "0", "--reference", "nope", "--limit", "4"])
    assert bad_ref.exit_code == 2
    assert "Error: `--reference nope` is not one of the models compared: resnet18-gap." in bad_ref.stderr
    assert not (tmp_path / "s.db").exists()  # refused before any compute
    no_weights = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}", "--model",
                                           "resnet18-mpncov", "--data", str(image_folder), "--store",
                                           str(tmp_path / "s.db")])
    assert no_weights.exit_code == 2 and not (tmp_path / "s.db").exists()
    assert "model 'resnet18-mpncov' has no checkpoint: give one as --model resnet18-mpncov=CHECKPOINT" \
        in no_weights.stderr
    # --random-weights with every model's own weights given: it changed nothing, without a word
    ignored = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}",
                                        "--random-weights", "--data", str(image_folder), "--store",
                                        str(tmp_path / "s.db")])
    assert ignored.exit_code == 2 and not (tmp_path / "s.db").exists()
    assert "`--random-weights` applies to models given without =CHECKPOINT, and every model here comes " \
        "with its own weights" in " ".join(ignored.stderr.split()), ignored.stderr
    typo = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}", "--reference",
                                     "resnet18-gp", "--data", str(image_folder)])
    assert typo.exit_code == 2 and "Did you mean 'resnet18-gap'?" in typo.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    plots = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}", "--data",
                                      str(image_folder), "--store", str(tmp_path / "s.db"), "--plot",
                                      str(a_file / "plots")])
    assert plots.exit_code == 2 and not (tmp_path / "s.db").exists()  # before any compute
    assert f"cannot write figures into {a_file / 'plots'}: Not a directory" in plots.stderr
    dangling = tmp_path / "figures"
    dangling.symlink_to(tmp_path / "gone")  # makedirs said "File exists"
    plots = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}", "--data",
                                      str(image_folder), "--store", str(tmp_path / "s.db"), "--plot",
                                      str(dangling)])
    assert plots.exit_code == 2 and not (tmp_path / "s.db").exists()
    assert f"{dangling} is a symbolic link to {tmp_path / 'gone'}, which does not exist" in \
        " ".join(plots.stderr.split())
    empty = tmp_path / "empty"
    empty.mkdir()
    no_ckpt = CliRunner().invoke(main, ["compare", "--checkpoints", str(empty), "--data", str(image_folder)])
    assert no_ckpt.exit_code == 2 and "holds no checkpoint files" in no_ckpt.stderr
    (empty / "run1").mkdir()  # fast-MPN-COV's runs: run1/model_best.pth.tar
    (empty / "run1" / "model_best.pth.tar").write_bytes(b"")
    nested = CliRunner().invoke(main, ["compare", "--checkpoints", str(empty), "--data", str(image_folder)])
    assert nested.exit_code == 2, nested.stderr
    assert "its subfolders do (e.g. run1/model_best.pth.tar), which --checkpoints does not search: give " \
        "them as --model NAME=FILE" in " ".join(nested.stderr.split()), nested.stderr
    missing = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "none.db"), "--plot",
                                        str(tmp_path / "figs" / "new")])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    assert not (tmp_path / "figs").exists()  # the --plot check leaves no folder behind
    (tmp_path / "up").mkdir()  # the kernel cannot go up out of a folder that is not there
    upward = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "none.db"), "--plot",
                                       str(tmp_path / "up" / "missing" / ".." / "figs")])
    assert upward.exit_code == 2, upward.stderr
    assert f"{tmp_path / 'up' / 'missing'} of {tmp_path / 'up' / 'missing' / '..' / 'figs'} does not " \
        "exist (the path goes up out of it with ..)" in " ".join(upward.stderr.split())
    assert list((tmp_path / "up").iterdir()) == []  # no `missing` left behind
    for odd in ("new/figs/", "new/./figs", "new/figs/."):  # `new` was left behind by these
        missing = CliRunner().invoke(main, ["report", "--store", str(tmp_path / "none.db"), "--plot",
                                            f"{tmp_path / 'up'}/{odd}"])
        assert missing.exit_code == 1 and "does not exist" in missing.stderr
        assert list((tmp_path / "up").iterdir()) == [], odd
    listing = CliRunner().invoke(main, ["baseline", "--list", "--store", str(tmp_path / "none.db")])
    assert listing.exit_code == 0 and listing.stdout == "", listing.output  # a listing: none
    assert listing.stderr.startswith(f"no baselines stored in {tmp_path / 'none.db'} (it does not exist "
                                     "yet): store one with "), listing.output
    as_json = CliRunner().invoke(main, ["baseline", "--list", "--store", str(tmp_path / "none.db"),
                                        "--format", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []
    assert not (tmp_path / "none.db").exists()
    # --config is taken, and read: a missing file was passed without a word (helper-227)
    configured = CliRunner().invoke(main, ["baseline", "--list", "--store", str(tmp_path / "none.db"),
                                           "--config", str(tmp_path / "nothere.yaml")])
    assert configured.exit_code == 2 and "nothere.yaml does not exist" in configured.stderr, configured.output
    (tmp_path / "gone.db").symlink_to(tmp_path / "elsewhere.db")  # a broken link is not "none yet"
    broken = CliRunner().invoke(main, ["baseline", "--list", "--store", str(tmp_path / "gone.db")])
    assert broken.exit_code == 1 and "gone.db is a symbolic link to " in broken.stderr, broken.output
    (tmp_path / "empty.db").touch()  # listing never writes: it made an empty file a 61 KB store
    listing = CliRunner().invoke(main, ["baseline", "--list", "--store", str(tmp_path / "empty.db")])
    said = "is empty and opened for reading: nothing has been stored in it (eval, compare and baseline store"
    assert listing.exit_code == 1 and said in listing.stderr, listing.output
    assert (tmp_path / "empty.db").stat().st_size == 0
    # the clean suite has no figures: said, not a silent exit 0 with no folder
    clean = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}", "--data",
                                      str(image_folder), "--store", str(tmp_path / "c.db"), "--plot",
                                      str(tmp_path / "clean-figs"), "--workers", "0"])
    assert clean.exit_code == 0, clean.output
    assert "--plot: no figures for these reports (clean); the imagenet-c, imagenet-p, adversarial, " \
           "landscape suites have figures" in clean.stderr
    none = CliRunner().invoke(main, ["baseline", "--list", "--store", str(tmp_path / "c.db")])
    assert none.exit_code == 0 and none.stdout == "" and "no baselines stored in" in none.stderr, none.output
    as_json = CliRunner().invoke(main, ["baseline", "--list", "--store", str(tmp_path / "c.db"), "--format",
                                        "json"])
    assert json.loads(as_json.stdout) == []


def test_compare_checks_every_job_before_the_first_runs(image_folder, gap_checkpoint, tmp_path):
    """A checkpoint that does not fit the last model, or a flag no compared suite takes, stops the
    comparison before any compute: the store is never created."""
    store = tmp_path / "s.db"
    common = ["--data", str(image_folder), "--store", str(store), "--workers", "0", "--limit", "4"]
    wrong = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}", "--model",
                                      f"resnet18-isqrt={gap_checkpoint}", "--suite", "clean,imagenet-c",
                                      "--corruptions", "fog", "--severities", "1", *common])
    assert wrong.exit_code == 1, wrong.output
    assert "does not fit resnet18-isqrt" in wrong.stderr and "Traceback" not in wrong.output
    assert not store.exists()
    unused = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}",
                                       "--attacks", "fgsm", *common])
    assert unused.exit_code == 2
    assert "`--attacks` applies to the adversarial suite, and no suite compared is one" in unused.stderr
    assert not store.exists()


def test_compare_a_folder_of_checkpoints_matched_by_inspect(demo_val, tmp_path):
    import shutil

    from robustbench_gcp.config import load_config

    folder = tmp_path / "ckpt"
    folder.mkdir()
    cfg = load_config()
    shutil.copy(cfg.model("demo-isqrt").checkpoint, folder / "my_gcp.pth")
    shutil.copy(cfg.model("demo-gap").checkpoint, folder / "a_gap.pth")
    (folder / "notes.txt").write_text("not a checkpoint")
    result = CliRunner().invoke(main, ["compare", "--checkpoints", str(folder), "--data", str(demo_val),
                                       "--class-order", "sorted", "--store", str(tmp_path / "s.db"),
                                       "--limit", "10", "--workers", "0", "--resamples", "200",
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    pairs = [(r["model"], r["arch"]) for r in out["reports"]]
    assert pairs == [("a_gap", "demo-gap"), ("my_gcp", "demo-isqrt")]
    assert out["comparisons"][0]["reference"] == "a_gap"
    # a file there that fits no model: the file's problem (exit status 1), before any compute
    torch.save({"fc.weight": torch.zeros(3, 3)}, folder / "odd.pth")
    odd = CliRunner().invoke(main, ["compare", "--checkpoints", str(folder), "--data", str(demo_val),
                                    "--store", str(tmp_path / "t.db")])
    assert odd.exit_code == 1 and not (tmp_path / "t.db").exists()
    # why, as eval --checkpoint says it: it said "does not fit any registered model" alone (helper-234)
    assert f"checkpoint {folder / 'odd.pth'} holds a module's own key names" in odd.stderr, odd.stderr
    assert "--model package.module:callable=FILE" in odd.stderr, odd.stderr
    (folder / "odd.pth").unlink()
    weights = torch.load(cfg.model("demo-gap").checkpoint, weights_only=True)
    torch.save({**weights, "extra.weight": torch.zeros(2)}, folder / "extra.pth")
    extra = CliRunner().invoke(main, ["compare", "--checkpoints", str(folder), "--data", str(demo_val),
                                      "--store", str(tmp_path / "t.db")])
    said = (f"checkpoint {folder / 'extra.pth'} does not fit any registered model (layout torchvision); the "
            "closest is 'demo-gap': 1 unexpected key (first: extra.weight)")
    assert extra.exit_code == 1 and said in extra.stderr, extra.stderr


def test_compared_files_are_labelled_as_far_up_their_paths_as_tells_them_apart(tmp_path):
    """fast-MPN-COV writes model_best.pth.tar into every run's folder: two of them were refused as
    'the same model and checkpoint', and gcp.epoch10.pth / gcp.epoch20.pth both labelled 'gcp'."""
    import shutil

    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.pipeline.compare_models import model_entries

    cfg = load_config()
    own = cfg.model("demo-isqrt").checkpoint
    for run_dir in ("run1", "run2"):
        (tmp_path / run_dir).mkdir()
        shutil.copy(own, tmp_path / run_dir / "model_best.pth.tar")
    best = [f"demo-isqrt={tmp_path / run_dir / 'model_best.pth.tar'}" for run_dir in ("run1", "run2")]
    entries = model_entries((*best, "demo-isqrt"), None, cfg)
    assert [e.label for e in entries] == ["demo-isqrt@run1/model_best", "demo-isqrt@run2/model_best",
                                          "demo-isqrt@own"]
    # with --random-weights the model's own weights are random ones: labelled so, not "own"
    entries = model_entries((*best, "demo-isqrt"), None, cfg, random_weights=True)
    assert [e.label for e in entries][-1] == "demo-isqrt@random"
    folder = tmp_path / "epochs"
    folder.mkdir()
    for name in ("gcp.epoch10.pth", "gcp.epoch20.pth"):
        shutil.copy(own, folder / name)
    (folder / "latest.pth").symlink_to(folder / "gcp.epoch20.pth")  # the same file: compared once
    assert [e.label for e in model_entries((), str(folder), cfg)] == ["gcp.epoch10", "gcp.epoch20"]
    linked = tmp_path / "mine.pth"  # a link is labelled as it is named, not as its target
    linked.symlink_to(folder / "gcp.epoch10.pth")
    entries = model_entries((f"demo-isqrt={linked}", f"demo-isqrt={folder / 'gcp.epoch20.pth'}"), None, cfg)
    assert [e.label for e in entries] == ["demo-isqrt@mine", "demo-isqrt@gcp.epoch20"]
    refused = {
        ("demo-isqrt=",): "`--model` should be NAME or NAME=CHECKPOINT. Got 'demo-isqrt='",
        ("demo-gap", "demo-gap"): "--model demo-gap is given twice with its own weights",
        # report's --models splits commas: compare's took the whole as one name (helper-282)
        ("demo-gap,demo-isqrt",): "`--model` takes one model (NAME or NAME=CHECKPOINT): give it once for "
                                  "each (--model demo-gap --model demo-isqrt). Got 'demo-gap,demo-isqrt'",
        (",demo-gap",): "`--model` should be NAME or NAME=CHECKPOINT. Got ',demo-gap'",
        (f"demo-isqrt={folder / 'gcp.epoch10.pth'}",
         f"demo-isqrt={folder / '..' / 'epochs' / 'gcp.epoch10.pth'}"):
            f"--model demo-isqrt is given twice with the same checkpoint ({folder / 'gcp.epoch10.pth'})",
    }
    for models, message in refused.items():
        with pytest.raises(ConfigError) as error:
            model_entries(models, None, cfg)
        assert str(error.value) == message


def test_a_checkpoints_folder_takes_safetensors_skips_hidden_names_and_labels_stay_unique(tmp_path):
    """--checkpoints ignored .safetensors files (which eval reads), stopped at macOS's ._a.pth, and
    a file named own.pth beside the model's own weights made two rows 'demo-gap@own (ref)'."""
    import shutil

    from safetensors.torch import save_file

    from robustbench_gcp.config import load_config
    from robustbench_gcp.pipeline.compare_models import model_entries

    cfg = load_config()
    folder = tmp_path / "ckpts"
    folder.mkdir()
    save_file(torch.load(cfg.model("demo-gap").checkpoint, weights_only=True), folder / "gap.safetensors")
    shutil.copy(cfg.model("demo-isqrt").checkpoint, folder / "isqrt.pth")
    (folder / "._isqrt.pth").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    entries = model_entries((), str(folder), cfg)
    assert [(e.label, e.name) for e in entries] == [("gap", "demo-gap"), ("isqrt", "demo-isqrt")]
    shutil.copy(cfg.model("demo-gap").checkpoint, tmp_path / "own.pth")
    for flags, bare in (({}, "own"), ({"random_weights": True}, "random")):
        (tmp_path / f"{bare}.pth").exists() or shutil.copy(tmp_path / "own.pth", tmp_path / f"{bare}.pth")
        entries = model_entries(("demo-gap", f"demo-gap={tmp_path / f'{bare}.pth'}"), None, cfg, **flags)
        assert [e.label for e in entries] == [f"demo-gap@{bare}", f"demo-gap@{bare}.pth"]


def test_missing_checkpoints_of_benchmarks_yaml_are_counted_and_their_folder_named(tmp_path):
    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import CheckpointError
    from robustbench_gcp.pipeline.compare_models import model_entries

    names = [f"m{i}" for i in range(8)]
    yaml = "models:\n" + "".join(f"  {n}:\n    arch: resnet18-isqrt\n    checkpoint: ckpt/{n}.pth\n"
                                  for n in names)
    (tmp_path / "b.yaml").write_text(yaml)
    with pytest.raises(CheckpointError) as error:  # a missing file: exit status 1, as eval's (it was 2)
        model_entries((), None, load_config(tmp_path / "b.yaml"))
    assert str(error.value) == (f"comparing the models of benchmarks.yaml, but 8 of their checkpoints are "
                                f"missing from {tmp_path / 'ckpt'}: m0, m1, m2, m3, m4, m5 and 2 more; pick "
                                "models with --model NAME[=CHECKPOINT] or --checkpoints DIR (or check the "
                                "pipeline with --random-weights)")
    # seeded random weights need no file: every model is compared (README: --random-weights applies to
    # the models given without =CHECKPOINT, and these are)
    entries = model_entries((), None, load_config(tmp_path / "b.yaml"), random_weights=True)
    assert [e.label for e in entries] == names


def test_compare_matrix_functions_on_the_same_weights(image_folder, gap_checkpoint, isqrt_checkpoint,
                                                      tmp_path):
    store = tmp_path / "s.db"
    run_options = ["--data", str(image_folder), "--store", str(store), "--workers", "0", "--limit", "8",
                   "--format", "json"]
    common = [*run_options, "--resamples", "100"]
    result = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}",
                                       "--model", f"resnet18-isqrt={isqrt_checkpoint}",
                                       "--sqrt", "newton-schulz,eig", "--ns-iters", "2,5", *common])
    assert result.exit_code == 0, result.output
    reports = {r["model"]: r for r in json.loads(result.stdout)["reports"]}
    # the model as trained comes first of its variants: the default reference of its suite
    assert list(reports) == ["resnet18-gap", "resnet18-isqrt", "resnet18-isqrt[ns-iters=2]",
                             "resnet18-isqrt[sqrt=eig]"]
    # the default root (Newton-Schulz, 5 iterations) is the plain model: eval gives the same numbers
    plain = CliRunner().invoke(main, ["eval", "--model", "resnet18-isqrt", "--checkpoint",
                                      str(isqrt_checkpoint), *run_options])
    assert plain.exit_code == 0, plain.output
    plain = json.loads(plain.stdout)
    assert plain["clean"] == reports["resnet18-isqrt"]["clean"]
    assert plain["computed"]["images"] == 0  # the same run: nothing computed again
    # each variant is its own stored run
    from robustbench_gcp.store import Store

    with Store(store) as s:
        # an override equal to the model's own root is the plain model's run: eval reused it
        assert len(s.runs()) == 4
    # eval names its matrix function as compare does; report shows every run by that label, even
    # a run first stored under the plain name (by an older version)
    eig = CliRunner().invoke(main, ["eval", "--model", "resnet18-isqrt", "--checkpoint",
                                    str(isqrt_checkpoint), "--sqrt", "eig", *run_options])
    assert json.loads(eig.stdout)["model"] == "resnet18-isqrt[sqrt=eig]", eig.output
    with sqlite3.connect(store) as db:
        db.execute("UPDATE runs SET model = 'resnet18-isqrt' WHERE arch = 'resnet18-isqrt'")
    stored = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "clean",
                                       "--format", "json", "--no-intervals"])
    assert stored.exit_code == 0, stored.output
    assert sorted(r["model"] for r in json.loads(stored.stdout)["reports"]) == [
        "resnet18-gap", "resnet18-isqrt", "resnet18-isqrt[ns-iters=2]", "resnet18-isqrt[sqrt=eig]"]
    chosen = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "clean", "--format",
                                       "json", "--no-intervals", "--models", "resnet18-isqrt[sqrt=eig]"])
    assert [r["model"] for r in json.loads(chosen.stdout)["reports"]] == ["resnet18-isqrt[sqrt=eig]"]
    plain = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "clean", "--format",
                                      "json", "--no-intervals", "--models", "resnet18-isqrt"])
    assert [r["model"] for r in json.loads(plain.stdout)["reports"]] == ["resnet18-isqrt"], plain.output

    only_gap = CliRunner().invoke(main, ["compare", "--model", f"resnet18-gap={gap_checkpoint}",
                                         "--sqrt", "eig", *common])
    assert only_gap.exit_code == 2
    assert "`--sqrt` applies to models with a matrix square root" in only_gap.stderr
    eig_only = CliRunner().invoke(main, ["compare", "--model", f"resnet18-isqrt={isqrt_checkpoint}",
                                         "--sqrt", "eig", "--ns-iters", "3", *common])
    assert eig_only.exit_code == 2
    assert "`--ns-iters` applies to Newton-Schulz square roots" in eig_only.stderr
    typo = CliRunner().invoke(main, ["compare", "--model", "resnet18-isqrt", "--sqrt", "eigh", *common])
    assert typo.exit_code == 2 and "unknown square root 'eigh'. Did you mean 'eig'?" in typo.stderr


def test_cells_left_out_are_all_named_and_the_reference_is_the_first_of_models(demo_val, tmp_path):
    """helper-248: the note named the cells not every model has (fog/3) alone, while the comparison
    left out a severity the means then lacked too (contrast/3) and `cells_left_out` counted both; and
    `report --models B,A` took the store's first run as the reference, not B."""
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    common = dict(suite="imagenet-c", data=str(demo_val), class_order="sorted", store=str(store), workers=0,
                  limit=8)
    evaluate("demo-gap", corruptions="fog,contrast", severities=[1, 2, 3], **common)
    evaluate("demo-isqrt", corruptions="fog", severities=[1, 2], **common)
    evaluate("demo-isqrt", corruptions="contrast", severities=[1, 2, 3], **common)
    report = ["report", "--store", str(store), "--suite", "imagenet-c", "--format", "json",
              "--resamples", "100"]
    result = CliRunner().invoke(main, report)
    assert result.exit_code == 0, result.output
    (comparison,) = json.loads(result.stdout)["comparisons"]
    assert comparison["reference"] == "demo-gap"
    assert [m["cells_left_out"] for m in comparison["models"]] == [2, 0]
    assert comparison["notes"][0] == (
        "demo-gap: 2 cells left out of the comparison: 1 that not every compared model has (fog/3), and 1 "
        "that its means leave out then, at a severity not every compared corruption has (contrast/3)"
        + ALIGNED)
    assert not any(n.startswith("demo-isqrt:") for n in comparison["notes"])
    result = CliRunner().invoke(main, [*report, "--models", "demo-isqrt,demo-gap"])
    assert result.exit_code == 0, result.output
    (comparison,) = json.loads(result.stdout)["comparisons"]
    assert comparison["reference"] == "demo-isqrt"
    assert [m["model"] for m in comparison["models"]] == ["demo-isqrt", "demo-gap"]
    assert [m["cells_left_out"] for m in comparison["models"]] == [0, 2]


def test_report_compares_common_cells_and_separates_image_sets(demo_val, tmp_path):
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    common = dict(suite="imagenet-c", data=str(demo_val), class_order="sorted", store=str(store), workers=0)
    evaluate("demo-gap", corruptions="fog,contrast", severities=[1, 2], limit=10, **common)
    evaluate("demo-isqrt", corruptions="fog", severities=[1, 2, 3], limit=10, **common)
    evaluate("demo-gap", corruptions="fog", severities=[1], limit=20, **common)
    evaluate("demo-isqrt", corruptions="fog", severities=[1], limit=20, **common)

    result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c",
                                       "--format", "json", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [(c["n_images"], [m["model"] for m in c["models"]]) for c in out["comparisons"]] == [
        (10, ["demo-gap", "demo-isqrt"]), (20, ["demo-gap", "demo-isqrt"])]
    small = out["comparisons"][0]
    assert all(m["paired"] for m in small["models"][1:])
    assert small["notes"][:2] == [
        "demo-gap: 2 cells that not every compared model has are left out of the comparison "
        "(contrast/1, contrast/2)" + ALIGNED,
        "demo-isqrt: 1 cell that not every compared model has is left out of the comparison (fog/3)"
        + ALIGNED]
    assert small["notes"][2].startswith("bootstrap intervals left empty: 10 images")
    assert [m["cells_left_out"] for m in small["models"]] == [2, 1]  # its figures are not its report's
    assert not any(n.startswith("bootstrap") for n in out["comparisons"][1]["notes"])  # 20 images
    # the reference where it was run; elsewhere the first model, said in a note
    report = ["report", "--store", str(store), "--suite", "imagenet-c", "--resamples", "100"]
    ref = CliRunner().invoke(main, [*report, "--format", "json", "--reference", "demo-isqrt"])
    assert ref.exit_code == 0, ref.output
    assert [c["reference"] for c in json.loads(ref.stdout)["comparisons"]] == ["demo-isqrt", "demo-isqrt"]
    prefix = CliRunner().invoke(main, [*report, "--format", "json", "--reference", "demo-is"])
    assert prefix.exit_code == 2 and "`--reference demo-is` is not one of the models" in prefix.stderr, \
        prefix.output  # a name's start is not the name (it was taken as demo-isqrt)
    evaluate("demo-gap", corruptions="fog", severities=[1], limit=30, **common)  # a set without demo-isqrt
    ref = CliRunner().invoke(main, [*report, "--format", "json", "--reference", "demo-isqrt"])
    assert ref.exit_code == 0, ref.output
    third = json.loads(ref.stdout)["comparisons"][2]
    assert third["reference"] == "demo-gap" and third["n_images"] == 30
    assert ("demo-isqrt is not in this comparison (it has no results on these 30 images): the reference here "
            "is demo-gap") in third["notes"]
    # image sets are told apart in the wide CSV and the markdown titles too
    wide = CliRunner().invoke(main, [*report, "--format", "csv", "--layout", "wide"])
    rows = csv.DictReader(io.StringIO(wide.stdout))
    assert [(r["model"], r["n_images"], r["cells_left_out"]) for r in rows] == [
        ("demo-gap", "10", "2"), ("demo-isqrt", "10", "1"), ("demo-gap", "20", "0"),
        ("demo-isqrt", "20", "0"), ("demo-gap", "30", "0")]
    markdown = CliRunner().invoke(main, [*report, "--format", "markdown"])
    assert ": 20 images (reference demo-gap, 95 % intervals)" in markdown.stdout
    # the comparison's mean error is that of fog 1-2 alone: the same as an evaluation of just those
    # cells (the demo's 10 classes: no AlexNet mCE)
    fog_only = evaluate("demo-gap", corruptions="fog", severities=[1, 2], limit=10, **common)
    expected = fog_only.sections["metrics"]["mean_error"]
    assert small["models"][0]["metrics"]["mean_error"]["estimate"] == pytest.approx(expected)


def test_comparisons_of_one_suite_on_two_image_sets_of_one_size_say_which(demo_val, tmp_path):
    """Two folders of as many images: the titles name each folder, the JSON its data and fingerprint."""
    import shutil

    from robustbench_gcp import evaluate

    other = tmp_path / "other"
    shutil.copytree(demo_val, other)
    for image in other.glob("*/*"):  # other names: another image set
        image.rename(image.with_name("x" + image.name))
    store = tmp_path / "s.db"
    for data in (demo_val, other):
        for model in ("demo-gap", "demo-isqrt"):
            evaluate(model, data=str(data), class_order="sorted", store=str(store), workers=0, limit=6)
    report = ["report", "--store", str(store), "--resamples", "100"]
    out = json.loads(CliRunner().invoke(main, [*report, "--format", "json"]).stdout)
    assert sorted(c["data"] for c in out["comparisons"]) == sorted([str(demo_val), str(other)])
    assert len({c["data_fingerprint"] for c in out["comparisons"]}) == 2
    markdown = CliRunner().invoke(main, [*report, "--format", "markdown"]).stdout
    for data in (demo_val, other):
        assert f"clean: 6 images of {data} (reference demo-gap, 95 % intervals)" in markdown, markdown


def test_matrix_variant_labels_name_every_change():
    from robustbench_gcp.config import load_config
    from robustbench_gcp.pipeline.compare_models import CompareEntry, matrix_variants

    cfg = load_config()
    entries = [CompareEntry("isqrt", "resnet50-isqrt", "a.pth"),
               CompareEntry("mpn", "resnet50-mpncov", "b.pth"), CompareEntry("gap", "resnet50-gap", "c.pth")]
    labels = [v.label for v in matrix_variants(entries, ("newton-schulz", "eig"), (3, 5), cfg)]
    assert labels == ["isqrt", "isqrt[ns-iters=3]", "isqrt[sqrt=eig]",
                      "mpn", "mpn[sqrt=newton-schulz,ns-iters=3]", "mpn[sqrt=newton-schulz]", "gap"]


def test_table_titles_and_headers_are_text_not_markup():
    """Labels carry brackets (``demo-isqrt[sqrt=eig]``): rich must not take them for markup."""
    from rich.console import Console

    from robustbench_gcp.reports.tables import Column, rich_table

    console = Console(width=120, record=True, file=io.StringIO())
    console.print(rich_table([{"model": "demo-isqrt[sqrt=eig]", "x": 1.0}],
                             [Column("model", justify="left"), Column("x", "err [%]", ".1f")],
                             title="clean: 10 images, reference demo-isqrt[sqrt=eig]", caption="[bold]x"))
    text = " ".join(console.export_text().split())  # the title wraps over the narrow table
    assert "reference demo-isqrt[sqrt=eig]" in text and "err [%]" in text and "[bold]x" in text, text


def test_markdown_cells_titles_and_headings_are_text_not_markup():
    """A checkpoint named ``isqrt_*v2*`` rendered v2 in italics in compare's Markdown: only ``|`` was
    escaped. Parsed by markdown-it (as GitHub's CommonMark), every label reads as it is."""
    from markdown_it import MarkdownIt

    from robustbench_gcp.reports.tables import Column, to_markdown

    labels = ["isqrt_*v2*", "a|b", "<b>x</b>", "`code`", "back\\slash", "demo-isqrt[sqrt=eig]", "_best_",
              "ckpt/_v2_.pt", "torchvision:__x__", "[x](y)", "resnet50_isqrt"]
    text = to_markdown([{"model": label} for label in labels], [Column("model", "model *", justify="left")],
                       title="reference *a*")
    assert "| resnet50_isqrt |" in text  # an underscore inside a word is no markup: left as it is
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<em>" not in html and "<code>" not in html and "<b>" not in html and "<a " not in html
    assert html.count("<strong>") == 1  # the title's, no label's (__x__)
    for label in ["isqrt_*v2*", "a|b", "&lt;b&gt;x&lt;/b&gt;", "`code`", "back\\slash", "model *",
                  "reference *a*", "_best_", "ckpt/_v2_.pt", "torchvision:__x__", "[x](y)"]:
        assert label in html, (label, html)


def test_notes_and_the_header_line_are_text_in_markdown(demo_val, tmp_path):
    """Notes and the header line (a checkpoint's path) went into Markdown as they were: a file
    named ``isqrt_*v2*.pth`` rendered v2 in italics, a note's ``_raw_`` ended the italic note."""
    import dataclasses

    import torch
    from markdown_it import MarkdownIt

    from robustbench_gcp import evaluate
    from robustbench_gcp.models import create_model
    from robustbench_gcp.reports.many_reports import render_comparison
    from robustbench_gcp.reports.one_report import to_report_markdown

    checkpoint = tmp_path / "isqrt_*v2*.pth"
    torch.save(create_model("demo-isqrt").state_dict(), checkpoint)
    report = evaluate("demo-isqrt", checkpoint=str(checkpoint), data=str(demo_val), class_order="sorted",
                      store=str(tmp_path / "s.db"), suite="clean", workers=0, limit=4)
    note = "weights _raw_ of <b>ckpt</b> with `keys` [x](y) | *all*"
    report = dataclasses.replace(report, notes=[*report.notes, note])
    for text in (to_report_markdown(report), render_comparison([report], [], fmt="markdown")):
        html = MarkdownIt("commonmark").enable("table").render(text)
        assert "<b>" not in html and "<code>" not in html and "<a " not in html, html
        literal = note.replace("<", "&lt;").replace(">", "&gt;")
        assert literal in html, html
    html = MarkdownIt("commonmark").enable("table").render(to_report_markdown(report))
    assert "isqrt_*v2*.pth" in html and html.count("<em>") == len(report.notes), html  # each note's own


def test_paper_tables_have_every_models_corruptions(demo_val, tmp_path):
    """The CE-per-corruption table's columns are what any model has (in the registry's order),
    not the first model's: a model's only corruption is never dropped."""
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    common = dict(data=str(demo_val), class_order="sorted", store=str(store), suite="imagenet-c",
                  severities="3", workers=0, limit=6)
    evaluate("demo-gap", corruptions="fog", **common)
    evaluate("demo-isqrt", corruptions="gaussian_noise", **common)
    for models in ("demo-gap,demo-isqrt", "demo-isqrt,demo-gap"):
        markdown = CliRunner().invoke(main, ["report", "--store", str(store), "--no-intervals", "--format",
                                             "markdown", "--models", models]).stdout
        lines = markdown.splitlines()  # the demo's 10 classes: errors, not AlexNet's CE
        at = next(i for i, line in enumerate(lines) if line.startswith("| model | mean |"))
        # each mean of its own corruption: said (helper-249)
        assert lines[at] == "| model | mean | mean of | gaussian noise | fog |", markdown
        rows = [line for line in lines[at:] if line.startswith("| demo-")]
        assert len(rows) == 2 and all(row.count(" - ") == 1 for row in rows), rows
        assert [row.split(" | ")[0] for row in rows] == [f"| {model}" for model in models.split(",")]
        # the headline table (--no-intervals) comes first
        assert lines.index("| model | images | clean err % | mean err % | mean acc % |") < at
        # the notes come with it, each saying whose it is where the models differ
        assert "Note: demo-isqrt: the means average 1 of the 15 benchmark corruptions" in markdown
        assert "Note: demo-gap: the means average 1 of the 15 benchmark corruptions" in markdown
        assert markdown.count("Note: labels: sorted folder order") == 1


def test_the_perturbation_table_of_unnormalized_runs_gives_their_mean_flip_probability(demo_val, tmp_path):
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    evaluate("demo-gap", data=str(demo_val), class_order="sorted", store=str(store), suite="imagenet-p",
             perturbations="translate,brightness", workers=0, limit=4)
    markdown = CliRunner().invoke(main, ["report", "--store", str(store), "--no-intervals", "--format",
                                         "markdown"]).stdout
    lines = markdown.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| model | mean FP"))
    header = lines[at]
    (row,) = [line.split("|")[2:-1] for line in lines[at:] if line.startswith("| demo-gap")]
    values = [float(v) for v in row]
    assert header.split("|")[3:-1] == [" brightness ", " translate "]
    assert values[0] == pytest.approx(sum(values[1:]) / 2, abs=0.006)  # the mean of the shown ones
    # a validation perturbation shown beside them: the mean is of the test ones, and says so
    evaluate("demo-gap", data=str(demo_val), class_order="sorted", store=str(store), suite="imagenet-p",
             perturbations="shear", workers=0, limit=4)
    markdown = CliRunner().invoke(main, ["report", "--store", str(store), "--no-intervals", "--format",
                                         "markdown"]).stdout
    assert any(line.startswith("| model | mean FP (test) | brightness | translate | shear |")
               for line in markdown.splitlines()), markdown


def test_notes_of_several_models_name_whose_they_are():
    from types import SimpleNamespace

    from robustbench_gcp.reports.many_reports import all_notes

    table = dict(kind="imagenet-c", experiment=("imagenet-c (torch)", "images"), heading="imagenet-c (torch)",
                 n_images=10, suite="imagenet-c", source="torch", data_fingerprint="images")
    gap = SimpleNamespace(model="demo-gap", run="r1", notes=["shared", "mCE averages 1 of the 15",
                                                   "partial run of demo-gap: 2 of 3 cells",
                                                   "demo-gap, fgsm: only one budget"], **table)
    isqrt = SimpleNamespace(model="demo-isqrt", run="r2",
                            notes=["shared", "baseline 'demo-gap' was evaluated",
                                   "demo-isqrt: 3 cells left out"], **table)
    assert all_notes([gap, isqrt], [{"notes": ["from the comparison"], "models": [], "suite": "other"}]) == [
        "demo-gap, fgsm: only one budget", "demo-gap: mCE averages 1 of the 15",
        "demo-isqrt: 3 cells left out",
        "demo-isqrt: baseline 'demo-gap' was evaluated", "from the comparison",
        "partial run of demo-gap: 2 of 3 cells", "shared"]
    # a note every model's report of the suite has is one note, though another suite's lack it (it
    # was said once per model)
    attack = dict(table, kind="adversarial", experiment=("adversarial", "images"), heading="adversarial")
    others = [SimpleNamespace(model=m, run=m, notes=[], **attack) for m in ("demo-gap", "demo-isqrt")]
    assert all_notes([gap, isqrt, *others], []) == [
        "demo-gap, fgsm: only one budget", "demo-gap: mCE averages 1 of the 15",
        "demo-isqrt: 3 cells left out", "demo-isqrt: baseline 'demo-gap' was evaluated",
        "partial run of demo-gap: 2 of 3 cells", "shared"]
    # one that another suite's reports have in part: whose, each time (not once bare, once named)
    others[0].notes.append("shared")
    assert [n for n in all_notes([gap, isqrt, *others], []) if n.endswith("shared")] == [
        "demo-gap: shared", "demo-isqrt: shared"]
    # a model shown only in another suite's table: a note of the others is named, not read as its
    # too (the audit's "weights: seeded random ..." of a random-weights run beside a checkpoint's)
    only_clean = dict(table, kind="clean", experiment=("clean", "images"), heading="clean")
    clean = SimpleNamespace(model="resnet18-gap", run="r3", notes=[], **only_clean)
    assert [n for n in all_notes([gap, isqrt, clean], []) if n.endswith("shared")] == [
        "demo-gap: shared", "demo-isqrt: shared"]


def test_a_note_of_one_of_a_models_tables_names_its_images_and_range():
    """Two tables of one suite and model, on the same folder's first 8 images (a partial run) and all
    12: a note of the partial one names its table by images and range."""
    from types import SimpleNamespace

    from robustbench_gcp.reports.many_reports import all_notes

    def report(n_images, partial, notes):
        subset = (partial or {}).get("image_range")
        return SimpleNamespace(model="demo-gap", kind="imagenet-c", heading="imagenet-c", data="val",
                               n_images=n_images, partial=partial, notes=notes, run="r",
                               experiment=("imagenet-c", f"fp images {subset}" if subset else "fp"))

    half = report(8, {"image_range": "0-7"}, ["only half"])
    assert all_notes([report(12, None, []), half], []) == [
        "demo-gap (imagenet-c, 8 images of val, images 0-7): only half"]


def test_headline_tables_mark_partial_runs_and_leave_out_a_metric_no_run_has():
    """mCE is None where no normalizer covers the cells: a column of dashes said nothing; a partial
    run's row says so, as the comparison tables do."""
    from types import SimpleNamespace

    from robustbench_gcp.reports.many_reports import headline_table

    def report(model, partial, mean_error):
        return SimpleNamespace(model=model, kind="imagenet-c", suite="imagenet-c", source=None, n_images=10,
                               partial=partial, experiment=("imagenet-c", "data"),
                               sections={"cells": [None], "metrics": {
                                   "mCE": None, "relative_mCE": None, "mean_error": mean_error}})

    rows, columns = headline_table([report("a", None, 0.25), report("b", {"cells": 3}, 0.5)])
    assert [c.key for c in columns] == ["model", "n_images", "mean_error"]
    assert rows == [{"model": "a", "n_images": 10, "mean_error": 25.0},
                    {"model": "b (partial)", "n_images": 10, "mean_error": 50.0}]


def test_paper_tables_of_two_image_sets_say_which_images_each_is_of():
    """Two experiments of one suite with as many images: each detail table names its folder; with
    other counts the count tells them apart; one experiment needs no title."""
    from types import SimpleNamespace

    from robustbench_gcp.reports.many_reports import detail_markdown

    entry = {"corruption": "fog", "severities": [1], "mean_error": 0.25, "CE": None, "relative_CE": None}

    def report(data, n_images):
        return SimpleNamespace(model="m", kind="imagenet-c", heading="imagenet-c", data=data,
                               n_images=n_images, partial=None, experiment=("imagenet-c", data), sections={
                                   "per_corruption": [entry], "metrics": {"mean_error": 0.25}})

    detail = detail_markdown([report("val", 10), report("c32", 10)])
    assert "_imagenet-c, 10 images of val:_" in detail and "_imagenet-c, 10 images of c32:_" in detail
    detail = detail_markdown([report("val", 10), report("c32", 20)])
    assert "_imagenet-c, 10 images:_" in detail and "_imagenet-c, 20 images:_" in detail
    assert "_imagenet-c" not in detail_markdown([report("val", 10)])


def test_the_tests_column_counts_holm_adjusted_p_values():
    """Two outcomes at p 0.03 and 0.04 (Holm: 0.06 each) differ in neither; counted on the raw p,
    the column said 2 of 2."""
    from robustbench_gcp.reports.many_reports import comparison_rows

    interval = {"estimate": 0.5, "low": 0.4, "high": 0.6}
    comparison = {"reference": "a", "models": [
        {"model": "a", "metrics": {"clean_error": interval}},
        {"model": "b", "metrics": {"clean_error": interval}, "delta": {"clean_error": interval},
         "tests": {"x": {"p_value": 0.03, "p_holm": 0.06}, "y": {"p_value": 0.04, "p_holm": 0.06}}}]}
    rows, _ = comparison_rows(comparison)
    assert rows[1]["tests"] == "0 of 2 differ"


def _comparison(metrics: dict, *, partial: bool = False, notes=()) -> dict:
    """A comparison of models a (the reference) and b on ``metrics`` (name -> p-value of its
    test, or None for none), every value 0.5 [0.4, 0.6] and every delta 0 [-0.1, 0.1]."""
    interval = {"estimate": 0.5, "low": 0.4, "high": 0.6}
    zero = {"estimate": 0.0, "low": -0.1, "high": 0.1}
    tests = {("clean" if m in ("clean_error", "clean_accuracy") else m.removeprefix("robust ")):
             {"p_value": p, "p_holm": min(1.0, 2 * p)} for m, p in metrics.items() if p is not None}
    return {"suite": "adversarial", "source": None, "n_images": 40, "reference": "a", "tests_text": "McNemar",
            "notes": list(notes), "models": [
                {"model": "a", "metrics": dict.fromkeys(metrics, interval), "delta": None},
                {"model": "b", "partial": partial, "metrics": dict.fromkeys(metrics, interval),
                 "delta": dict.fromkeys(metrics, zero), "tests": tests}]}


def test_comparison_rows_sign_a_zero_difference_and_put_intervals_under_values_in_a_terminal():
    """A zero delta is "+0.00" like every other non-negative one; the terminal's compact rows put each
    interval and the tests' "differ" on a second line; a metric no suite knows is shown as stored."""
    from robustbench_gcp.reports.many_reports import comparison_rows

    comparison = _comparison({"clean_error": 0.01, "some_metric": 0.5}, partial=True)
    rows, columns = comparison_rows(comparison)
    assert rows[0]["model"] == "a (ref)" and rows[1]["model"] == "b (partial)"
    assert rows[1]["d clean_error"] == "+0.00 [-10.00, 10.00]"
    assert rows[1]["clean_error"] == "50.00 [40.00, 60.00]"
    assert rows[1]["some_metric"] == "0.5 [0.4, 0.6]"  # no suite's: no scale, no percent
    assert rows[1]["tests"] == "1 of 2 differ"
    compact, _ = comparison_rows(comparison, compact=True)
    assert compact[1]["clean_error"] == "50.00\n[40.00, 60.00]"
    assert compact[1]["tests"] == "1 of 2\ndiffer"
    assert [c.key for c in columns] == ["model", "clean_error", "d clean_error", "some_metric",
                                        "d some_metric", "tests"]


def test_the_long_rows_name_each_model_once_and_find_each_outcomes_test():
    """A row per (model, metric): the model's name on its first row only; the clean accuracy's row
    has the "clean" test's p and "robust fgsm 1/255" the "fgsm 1/255" test's."""
    from robustbench_gcp.reports.many_reports import comparison_long_rows

    p = {"clean_accuracy": 0.01, "robust fgsm 1/255": 0.02, "robust pgd 2/255": 0.3}
    rows, columns = comparison_long_rows(_comparison(p))
    assert [r["model"] for r in rows] == ["a (ref)", "", "", "b", "", ""]
    assert [r["metric"] for r in rows[3:]] == ["clean acc %", "robust fgsm 1/255 %", "robust pgd 2/255 %"]
    assert [r["p"] for r in rows] == [None, None, None, 0.01, 0.02, 0.3]
    assert [r["p_holm"] for r in rows[3:]] == [0.02, 0.04, 0.6]
    assert rows[3]["delta"] == "+0.0 [-10.0, 10.0]"
    assert [c.key for c in columns][-2:] == ["p", "p_holm"]
    # a model on images of another shape is unpaired: said so, as in the compact rows (the long
    # layout dropped its Δ column, empty, as for one model alone)
    unpaired = _comparison(dict.fromkeys(p))
    unpaired["models"][1].update(delta=None, tests=None, paired=False)
    rows, columns = comparison_long_rows(unpaired)
    assert [r["delta"] for r in rows] == [None] * 3 + ["unpaired"] * 3
    assert [c.key for c in columns] == ["model", "metric", "value", "delta"]


def test_the_terminal_shows_up_to_four_metrics_a_row_per_model_and_says_what_its_tests_column_counts():
    """Four metrics: a row per model with a tests column, whose meaning the caption gives; five: a row
    per (model, metric) with paired p-values; no paired test: the caption says no more than the
    intervals' meaning."""
    from robustbench_gcp.reports.many_reports import DELTAS, VALUES, comparison_table, tests_note

    four = {"clean_accuracy": 0.01, **{f"robust fgsm {e}/255": 0.5 for e in (1, 2, 4)}}
    five = {**four, "robust fgsm 8/255": 0.5}
    for metrics, keys, caption in ((four, "tests", tests_note), (five, "p", lambda c: "paired p: McNemar")):
        comparison = _comparison(metrics)
        (table,) = comparison_table([], [comparison]).renderables
        headers = [str(c.header) for c in table.columns]
        assert headers[:2] == (["model", "metric"] if keys == "p" else ["model", "clean acc %"])
        assert ("tests p<0.05 (Holm)" in headers) == (keys == "tests")
        assert ("paired p" in headers) == (keys == "p")
        assert caption(comparison) in str(table.caption)
    untested = _comparison(dict.fromkeys(four))
    (table,) = comparison_table([], [untested]).renderables
    assert str(table.caption) == f"{VALUES}; {DELTAS}"


def test_one_model_alone_has_no_reference_differences_or_tests_in_its_tables():
    """A comparison of one model (report --models NAME) named it "(ref)", had an empty Δ column in
    the long layout, and its caption explained differences and tests it did not have."""
    from robustbench_gcp.reports.many_reports import VALUES, comparison_table, render_comparison

    for metrics, headers in (({"clean_accuracy": None}, ["model", "clean acc %"]),
                             ({f"robust fgsm {e}/255": None for e in range(1, 7)},
                              ["model", "metric", "value [95 % interval]"])):
        alone = _comparison(metrics)
        alone["models"] = alone["models"][:1]
        (table,) = comparison_table([], [alone]).renderables
        assert [str(c.header) for c in table.columns] == headers
        assert str(table.caption) == VALUES and "reference" not in str(table.title)
        assert "a (ref)" not in str(table.columns[0]._cells)
        markdown = render_comparison([], [alone], fmt="markdown")
        assert "(95 % intervals)" in markdown and "reference" not in markdown and "(ref)" not in markdown


def test_markdown_gives_a_comparisons_note_once():
    """The comparison's own note ("bootstrap intervals left empty ...") follows its table and is not
    repeated among the reports' notes at the end."""
    from robustbench_gcp.reports.many_reports import render_comparison

    note = "bootstrap intervals left empty: 12 images"
    markdown = render_comparison([], [_comparison({"clean_accuracy": 0.2}, notes=[note])], fmt="markdown")
    assert markdown.count(note) == 1, markdown
    assert markdown.index("| b |") < markdown.index(note)


def test_markdown_without_intervals_has_the_headline_tables(demo_val, tmp_path):
    """`--no-intervals --format markdown` printed no table at all for the clean suite (the headline
    tables of the terminal view were missing)."""
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    for model in ("demo-gap", "demo-isqrt"):
        evaluate(model, data=str(demo_val), class_order="sorted", store=str(store), suite="clean", limit=6)
    markdown = CliRunner().invoke(main, ["report", "--store", str(store), "--no-intervals", "--format",
                                         "markdown"]).stdout
    lines = markdown.splitlines()
    at = lines.index("| model | images | clean err % |")
    assert [line.split("|")[1].strip() for line in lines[at + 2:at + 4]] == ["demo-gap", "demo-isqrt"]
    # in percent, as the header says (random weights: errors that are neither 0 nor 1)
    store = tmp_path / "random.db"
    errors = [evaluate(model, data=str(demo_val), class_order="sorted", store=str(store), suite="clean",
                       limit=20, seed=1, random_weights=True).sections["clean"]["top1_error"]
              for model in ("demo-gap", "demo-isqrt")]
    assert all(0 < error < 1 for error in errors), errors
    lines = CliRunner().invoke(main, ["report", "--store", str(store), "--no-intervals", "--format",
                                      "markdown"]).stdout.splitlines()
    at = lines.index("| model | images | clean err % |")
    shown = [float(line.split("|")[3]) for line in lines[at + 2:at + 4]]
    assert shown == pytest.approx([100 * error for error in errors], abs=0.01)


def test_a_store_of_amp_runs_says_their_precision_in_every_view(demo_val, tmp_path):
    """A bfloat16 (--amp) result could not be told from a float32 one once exported: the labels say
    a precision only where runs of both sit in one store."""
    from robustbench_gcp import evaluate

    store = tmp_path / "amp.db"
    for model in ("demo-gap", "demo-isqrt"):
        evaluate(model, data=str(demo_val), class_order="sorted", store=str(store), suite="clean", workers=0,
                 limit=20, amp=True)
    common = ["report", "--store", str(store), "--resamples", "100"]
    markdown = CliRunner().invoke(main, [*common, "--format", "markdown"]).stdout
    assert "clean: 20 images, bfloat16 (--amp) (reference demo-gap" in markdown, markdown
    for layout in ("long", "wide"):
        rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(
            main, [*common, "--format", "csv", "--layout", layout]).stdout)))
        assert rows and {(r["precision"], r["device"]) for r in rows} == {("bfloat16", "cpu")}, layout


def test_a_corruptions_paired_test_counts_images_by_their_correct_severities(demo_val, tmp_path):
    """The unit of a corruption's paired test is the image, scored by how many of the corruption's
    severities it gets right (recomputed here from the stored per-image bitmaps): a test on one
    severity's correctness passed every test before."""
    import numpy as np

    from robustbench_gcp.store import Store

    store = tmp_path / "s.db"
    result = CliRunner().invoke(main, [
        "compare", "--model", "demo-gap", "--model", "demo-isqrt", "--suite", "imagenet-c", "--corruptions",
        "contrast,fog", "--severities", "1,5", "--data", str(demo_val), "--class-order", "sorted",
        "--store", str(store), "--limit", "30", "--workers", "0", "--resamples", "100", "--format", "json"])
    assert result.exit_code == 0, result.output
    (comparison,) = json.loads(result.stdout)["comparisons"]
    tests = comparison["models"][1]["tests"]
    with Store(store) as s:
        right = {}  # (model, corruption) -> per image, its correct severities
        for run in s.runs():
            for cell_id, key in s.cells(run.id):
                if key.kind == "imagenet-c":
                    correct = s.cell_result(cell_id, key, run.n_shards).correct.astype(int)
                    right[run.model, key.name] = right.get((run.model, key.name), 0) + correct
    for corruption in ("contrast", "fog"):
        a, b = right["demo-gap", corruption], right["demo-isqrt", corruption]
        assert (tests[corruption]["only_a"], tests[corruption]["only_b"]) == (
            int(np.sum(a > b)), int(np.sum(b > a))), corruption
    assert any(tests[c]["only_a"] + tests[c]["only_b"] for c in ("contrast", "fog"))


def test_compare_takes_its_reference_layout_and_output_file(demo_val, tmp_path):
    """compare's --reference, --layout and -o were only tested through report: compare could have
    checked the reference's name and compared against its first model anyway."""
    common = ["compare", "--model", "demo-gap", "--model", "demo-isqrt", "--suite", "clean,imagenet-c",
              "--corruptions", "fog", "--severities", "1", "--data", str(demo_val), "--class-order", "sorted",
              "--store", str(tmp_path / "s.db"), "--limit", "10", "--workers", "0", "--resamples", "100"]
    result = CliRunner().invoke(main, [*common, "--reference", "demo-isqrt", "--format", "json"])
    assert result.exit_code == 0, result.output
    comparisons = json.loads(result.stdout)["comparisons"]
    assert [c["reference"] for c in comparisons] == ["demo-isqrt", "demo-isqrt"]
    for comparison in comparisons:
        by_name = {m["model"]: m for m in comparison["models"]}
        reference, other = by_name["demo-isqrt"], by_name["demo-gap"]
        assert reference["delta"] is None and other["delta"] is not None
        errors = [m["metrics"]["clean_error"]["estimate"] for m in (other, reference)]
        assert other["delta"]["clean_error"]["estimate"] == pytest.approx(errors[0] - errors[1])
    out = tmp_path / "long.csv"
    written = CliRunner().invoke(main, [*common, "--format", "csv", "--layout", "long", "-o", str(out)])
    assert written.exit_code == 0, written.output
    assert written.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {(r["model"], r["suite"], r["item"], r["level"]) for r in rows} >= {
        ("demo-gap", "imagenet-c", "fog", "1"), ("demo-isqrt", "imagenet-c", "fog", "1")}


def test_the_long_comparison_table_gives_each_metric_its_tests_p(compared):
    """The long layout (a row per model and metric) gives the clean error row the clean images'
    McNemar p and each corruption's row its own; the clean row's was lost and passed."""
    from robustbench_gcp.reports.many_reports import comparison_long_rows

    _, _, out = compared
    (corrupted,) = [c for c in out["comparisons"] if c["suite"] == "imagenet-c"]
    rows, columns = comparison_long_rows(corrupted)
    other = corrupted["models"][1]
    mine = rows[len(corrupted["models"][0]["metrics"]):]
    assert len(mine) == len(other["metrics"]) and [c.key for c in columns][-2:] == ["p", "p_holm"]
    by_metric = dict(zip(other["metrics"], mine))
    clean = other["tests"]["clean"]
    assert (by_metric["clean_error"]["p"], by_metric["clean_error"]["p_holm"]) == (clean["p_value"],
                                                                                   clean["p_holm"])
    assert all(row["p"] is None for row in rows[:len(mine)])  # the reference has no test


def test_a_comparison_heading_names_amp_only_when_every_model_ran_so():
    """``, bfloat16 (--amp)`` after the image count when every compared run used that precision; a
    run that does not record one (stored before precisions were) is no --amp run."""
    from robustbench_gcp.reports.comparison import comparison_images

    def comparison(*precisions):
        return {"suite": "clean", "n_images": 5, "models": [{"precision": p} for p in precisions]}

    for precisions, said in (((None, None), "5 images"), (("float32",), "5 images"),
                             (("bfloat16", "bfloat16"), "5 images, bfloat16 (--amp)"),
                             (("bfloat16", "float32"), "5 images")):
        one = comparison(*precisions)
        assert comparison_images(one, [one]) == said, precisions
    # channels-last likewise (a comparison of channels-last runs alone did not say so)
    for formats, said in ((("channels_last", "channels_last"), "5 images, channels-last"),
                          (("channels_last", "contiguous"), "5 images")):
        one = {"suite": "clean", "n_images": 5, "models": [{"memory_format": f} for f in formats]}
        assert comparison_images(one, [one]) == said, formats


def test_a_comparison_normalizes_its_common_cells_by_a_baseline_run_that_has_only_those(demo_val, tmp_path):
    """A stored baseline with gaussian_noise at severities 4-5 left a model run at 3-5 without CE
    (its own report: the baseline lacks severity 3); compared with a model run at 4-5 only, the
    comparison covers 4-5, which the baseline has: its mCE is 100 sum E / sum E_base there, as
    `compare` on those cells gives (report left it empty)."""
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    common = dict(suite="imagenet-c", data=str(demo_val), class_order="sorted", store=str(store), workers=0,
                  limit=20, random_weights=True, corruptions="gaussian_noise")
    stored = CliRunner().invoke(main, [
        "baseline", "--model", "demo-gap", "--name", "base", "--random-weights", "--suite", "imagenet-c",
        "--data", str(demo_val), "--class-order", "sorted", "--store", str(store), "--workers", "0",
        "--limit", "20", "--corruptions", "gaussian_noise", "--severities", "4,5"])
    assert stored.exit_code == 0, stored.output
    isqrt = evaluate("demo-isqrt", severities=[3, 4, 5], baseline="base", **common)
    assert isqrt.sections["metrics"]["mCE"] is None  # the baseline lacks severity 3
    base = evaluate("demo-gap", severities=[4, 5], **common)
    errors = {(m, c["severity"]): c["top1_error"] for m, r in (("isqrt", isqrt), ("base", base))
              for c in r.sections["cells"]}
    assert errors[("base", 4)] + errors[("base", 5)] > 0

    result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c", "--baseline",
                                       "base", "--format", "json", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    (comparison,) = json.loads(result.stdout)["comparisons"]
    models = {m["model"]: m["metrics"] for m in comparison["models"]}
    expected = 100 * (errors[("isqrt", 4)] + errors[("isqrt", 5)]) / (errors[("base", 4)]
                                                                      + errors[("base", 5)])
    assert models["demo-isqrt"]["mCE"]["estimate"] == pytest.approx(expected)
    assert models["demo-gap"]["mCE"]["estimate"] == pytest.approx(100.0)  # the baseline run itself


def test_runs_of_other_seeds_compared_say_their_draws_differ(demo_val, tmp_path):
    """Paired over the same images but not over the same noise: a note says so, where the suite
    draws (not for the clean images, which no seed changes)."""
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    common = dict(data=str(demo_val), class_order="sorted", store=str(store), workers=0, limit=10)
    for suite in ("imagenet-c", "clean"):
        flags = {"corruptions": "gaussian_noise", "severities": [1]} if suite == "imagenet-c" else {}
        evaluate("demo-gap", suite=suite, seed=0, **flags, **common)
        evaluate("demo-isqrt", suite=suite, seed=3, **flags, **common)
    notes = {}
    for suite in ("imagenet-c", "clean"):
        result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", suite,
                                           "--format", "json", "--resamples", "100"])
        assert result.exit_code == 0, result.output
        (comparison,) = json.loads(result.stdout)["comparisons"]
        notes[suite] = comparison["notes"]
    said = [n for n in notes["imagenet-c"] if "was evaluated with seed" in n]
    assert said == ["demo-isqrt was evaluated with seed 3, the reference demo-gap with seed 0: where a cell "
                    "draws random numbers (noise, glass_blur's shuffles, random starts) their inputs differ, "
                    "so the paired differences and tests there compare each image under other draws; "
                    "evaluate with one --seed to compare on the same inputs"]
    assert not any("was evaluated with seed" in n for n in notes["clean"])


def test_a_model_of_models_without_the_suites_results_is_named_in_a_note(demo_val, tmp_path):
    """--models demo-gap,demo-isqrt where demo-isqrt has only clean results: the ImageNet-C report
    showed demo-gap alone and said nothing of demo-isqrt."""
    from robustbench_gcp import evaluate

    store = tmp_path / "s.db"
    common = dict(data=str(demo_val), class_order="sorted", store=str(store), workers=0, limit=10)
    evaluate("demo-gap", suite="imagenet-c", corruptions="fog", severities=[1], **common)
    evaluate("demo-isqrt", suite="clean", **common)
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c",
                                       "--models", "demo-gap,demo-isqrt", "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["model"] for r in out["reports"]] == ["demo-gap"]
    assert "--models demo-isqrt: no imagenet-c results stored for it" in out["reports"][0]["notes"]
    both = CliRunner().invoke(main, ["report", "--store", str(store), "--models", "demo-gap,demo-isqrt"])
    assert both.exit_code == 0 and "no imagenet-c results stored" not in both.output  # each has some


def test_a_model_compared_with_a_copy_of_its_file_is_said_to_be_one_run(demo_val, tmp_path):
    """A byte-identical copy is one stored run: a Δ of 0 and "0 of 1 differ" were shown as a finding."""
    import shutil

    from robustbench_gcp.config import load_config

    copy = tmp_path / "copy.pth"
    shutil.copyfile(load_config().model("demo-gap").checkpoint, copy)
    result = CliRunner().invoke(main, ["compare", "--model", "demo-gap", "--model", f"demo-gap={copy}",
                                       "--model", "demo-isqrt", "--suite", "clean", "--data", str(demo_val),
                                       "--class-order", "sorted", "--store", str(tmp_path / "s.db"),
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    (comparison,) = json.loads(result.stdout)["comparisons"]
    same = [n for n in comparison["notes"] if "one stored run" in n]
    assert len(same) == 1 and "demo-isqrt" not in same[0], comparison["notes"]
    assert same[0].endswith("are one stored run (the same weights and settings): their differences are 0 "
                            "by construction")
    # without intervals (no differences shown) the equal figures are said to be so, once
    plain = CliRunner().invoke(main, ["compare", "--model", "demo-gap", "--model", f"demo-gap={copy}",
                                      "--suite", "clean", "--data", str(demo_val), "--class-order", "sorted",
                                      "--store", str(tmp_path / "s.db"), "--no-intervals"])
    assert plain.exit_code == 0, plain.output
    assert plain.output.count("one stored run") == 1 and "their figures are the same by construction" in \
        " ".join(plain.output.split()), plain.output


def test_a_comparison_says_what_its_own_means_average(demo_val, tmp_path):
    """demo-gap ran fog and contrast, demo-isqrt fog: the comparison's means average fog, and a note
    said "demo-gap: the means average 2 of the 15 benchmark corruptions" beneath them."""
    common = ["--data", str(demo_val), "--class-order", "sorted", "--limit", "20", "--store",
              str(tmp_path / "s.db"), "--suite", "imagenet-c", "--severities", "1", "--workers", "0"]
    for model, corruptions in (("demo-gap", "fog,contrast"), ("demo-isqrt", "fog")):
        done = CliRunner().invoke(main, ["eval", "-m", model, "--corruptions", corruptions, *common])
        assert done.exit_code == 0, done.output
    store = ["--store", str(tmp_path / "s.db")]
    for fmt in ("table", "markdown"):
        shown = CliRunner().invoke(main, ["report", *store, "--format", fmt], env={"COLUMNS": "300"})
        assert shown.exit_code == 0, shown.output
        text = " ".join(shown.stdout.split())
        assert "the means average 1 of the 15 benchmark corruptions; missing: gaussian_noise" in text
        # Markdown's per-model table of CE per corruption gives demo-gap's own mean: its note too
        assert ("demo-gap: the means average 2 of the 15" in text) == (fmt == "markdown")
    # without a comparison, each model's own table: each its own coverage
    plain = CliRunner().invoke(main, ["report", *store, "--no-intervals"], env={"COLUMNS": "300"})
    text = " ".join(plain.stdout.split())
    assert "demo-gap: the means average 2 of the 15" in text and "demo-isqrt: the means average 1 of" in text


def test_two_comparisons_notes_on_their_means_say_whose_table(demo_val, tmp_path):
    """Two comparisons (20 and 10 images) whose means average 1 and 2 corruptions: the terminal's
    notes beneath both tables said "the means average 1 of the 15" and "... 2 of the 15", unprefixed."""
    store = ["--store", str(tmp_path / "s.db")]
    common = ["--data", str(demo_val), "--class-order", "sorted", *store, "--suite", "imagenet-c",
              "--severities", "1", "--workers", "0"]
    for model, corruptions, limit in (("demo-gap", "fog,contrast", "20"), ("demo-isqrt", "fog", "20"),
                                      ("demo-gap", "fog,contrast,brightness", "10"),
                                      ("demo-isqrt", "fog,contrast", "10")):
        done = CliRunner().invoke(main, ["eval", "-m", model, "--corruptions", corruptions, "--limit", limit,
                                         *common])
        assert done.exit_code == 0, done.output
    shown = CliRunner().invoke(main, ["report", *store], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    heading = "imagenet-c (torch, JPEG round trip, 10 classes)"
    assert f"note: {heading}, 20 images: the means average 1 of the 15" in text
    assert f"note: {heading}, 10 images: the means average 2 of the 15" in text
    assert "note: the means average" not in text
    # markdown puts each comparison's notes beneath its table, unprefixed and once; then the notes of
    # its per-model tables (each model's own means), naming the model and the table
    markdown = CliRunner().invoke(main, ["report", *store, "--format", "markdown"]).stdout
    notes = [line for line in markdown.splitlines() if "the means average" in line]
    assert [note.split(": the means average ")[0].split(" (")[0] for note in notes] == [
        "Note", "Note", "Note: demo-gap", "Note: demo-gap", "Note: demo-isqrt", "Note: demo-isqrt"]
    assert [note.split("the means average ")[1][0] for note in notes] == ["1", "2", "3", "2", "2", "1"]
    assert f"{heading}, 20 images: the means" not in markdown


def test_a_reference_made_another_way_on_the_same_images_is_said_so(demo_val, tmp_path):
    """A 1000-class reference beside a 10-class model: its cells of the same images are another
    table's (other labels); the note said it had no results on these images."""
    result = CliRunner().invoke(main, [
        "compare", "--model", "demo-gap", "--model", "torchvision:resnet18", "--random-weights", "--suite",
        "imagenet-c", "--corruptions", "fog", "--severities", "3", "--reference", "torchvision:resnet18",
        "--data", str(demo_val), "--class-order", "sorted", "--limit", "4", "--store", str(tmp_path / "s.db"),
        "--format", "json"])
    assert result.exit_code == 0, result.output
    notes = [n for c in json.loads(result.stdout)["comparisons"] for n in c["notes"] if "not in this" in n]
    assert notes and notes[0].startswith("torchvision:resnet18 is not in this comparison (its cells of these "
                                         "images were made another way: imagenet-c (")
    assert notes[0].endswith("): the reference here is demo-gap")


def test_a_comparison_counts_and_says_the_severities_its_means_leave_out(demo_val, tmp_path):
    """demo-gap ran frost and fog at 1,2, demo-isqrt fog at 1,2 and frost at 1 (stored first): the
    comparison's mean error is of severity 1 alone, but `cells_left_out` counted only frost/2 (1 for
    demo-gap; 0 for demo-isqrt, right: its own report's means leave fog/2 out too), the notes beneath
    the comparison said each model's own severities ("demo-gap: the mean errors average severities
    1,2 only"), and the p-columns came in storage order (fog before frost). The outputs that show
    each model's own figures (the long CSV, Markdown's per-model tables) keep its own notes."""
    store = tmp_path / "s.db"
    common = ["--data", str(demo_val), "--class-order", "sorted", "--limit", "10", "--store", str(store),
              "--suite", "imagenet-c", "--workers", "0"]
    for model, corruptions, severities in (("demo-gap", "frost,fog", "1,2"), ("demo-isqrt", "fog", "1,2"),
                                           ("demo-isqrt", "frost", "1")):
        done = CliRunner().invoke(main, ["eval", "-m", model, "--corruptions", corruptions, "--severities",
                                         severities, *common])
        assert done.exit_code == 0, done.output
    report = ["report", "--store", str(store), "--resamples", "100"]
    out = json.loads(CliRunner().invoke(main, [*report, "--format", "json"]).stdout)
    (comparison,) = out["comparisons"]
    assert [m["cells_left_out"] for m in comparison["models"]] == [2, 0]  # frost/2 and fog/2; none
    own = {r["model"]: r for r in out["reports"]}
    # the comparison's mean error is over severity 1, recomputed from each model's own cells
    for entry in comparison["models"]:
        cells = own[entry["model"]]["cells"]
        ones = [c["top1_error"] for c in cells if c["severity"] == 1]
        assert entry["metrics"]["mean_error"]["estimate"] == pytest.approx(sum(ones) / len(ones))
    assert sum(c["severity"] == 2 for c in own["demo-gap"]["cells"]) == 2  # its own report keeps them
    assert "the mean errors average severities 1 only, not the benchmark's 1-5" in comparison["notes"]
    shown = CliRunner().invoke(main, report, env={"COLUMNS": "300"})
    text = " ".join(shown.stdout.split())
    assert "note: the mean errors average severities 1 only" in text
    assert "severities 1,2 only" not in text and "demo-isqrt: the corruptions were stored" not in text
    own = "demo-gap: the mean errors average severities 1,2 only"
    plain = CliRunner().invoke(main, [*report[:3], "--no-intervals"], env={"COLUMNS": "300"})
    assert own in " ".join(plain.stdout.split())
    long = CliRunner().invoke(main, [*report, "--format", "csv"])
    assert f"note: {own}, not the benchmark's 1-5" in long.stderr.splitlines()
    assert "note: the mean errors average severities 1 only, not the benchmark's 1-5" not in long.stderr
    markdown = " ".join(CliRunner().invoke(main, [*report, "--format", "markdown"]).stdout.split())
    assert own in markdown and "the mean errors average severities 1 only" in markdown
    wide = CliRunner().invoke(main, [*report, "--format", "csv", "--layout", "wide"])
    rows = list(csv.DictReader(io.StringIO(wide.stdout)))
    assert [r["cells_left_out"] for r in rows] == ["2", "0"]
    assert own not in wide.stderr
    assert [k for k in rows[1] if k.startswith("p_")] == [
        "p_clean", "p_holm_clean", "p_frost", "p_holm_frost", "p_fog", "p_holm_fog"]


def test_a_config_without_models_has_nothing_to_compare(image_folder, tmp_path):
    """A config of baselines alone: compare compared nothing, said nothing and exited 0 (its CSV one
    byte), helper-222."""
    config = tmp_path / "b.yaml"
    config.write_text("baselines:\n  half:\n    clean_error: 0.4\n"
                      "    imagenet_c: {fog: [0.5, 0.5, 0.5, 0.5, 0.5]}\n")
    out = CliRunner().invoke(main, ["compare", "--config", str(config), "--data", str(image_folder),
                                    "--store", str(tmp_path / "s.db"), "--format", "csv"])
    assert out.exit_code == 2 and out.stderr.strip().endswith(
        f"Error: nothing to compare: {config} has no models, nor suites to run them on (define some "
        "under `suites:`); give --model NAME[=CHECKPOINT] or --checkpoints DIR"), out.output
    assert not (tmp_path / "s.db").exists()
    # with suites, only the models are missing (--model alone then failed on "unknown suite 'clean'")
    config.write_text(config.read_text() + "suites:\n  clean: {kind: clean}\n")
    out = CliRunner().invoke(main, ["compare", "--config", str(config), "--data", str(image_folder),
                                    "--store", str(tmp_path / "s.db"), "--format", "csv"])
    assert out.exit_code == 2 and out.stderr.strip().endswith(
        f"Error: nothing to compare: {config} has no models; give --model NAME[=CHECKPOINT] or "
        "--checkpoints DIR"), out.output


def test_a_config_table_named_for_a_model_of_other_classes_is_refused(tmp_path):
    """`--baseline mine`, a benchmarks.yaml table, for a 10-class model: dropped without a word (no
    CE, no note naming it), helper-222. Refused before any compute, unless a run is stored so."""
    from robustbench_gcp.data.demo_images import build_demo_dataset

    val = build_demo_dataset(tmp_path / "demo") / "val"
    config = tmp_path / "b.yaml"
    shipped = (Path(__file__).parents[1] / "benchmarks.yaml").read_text()
    config.write_text(shipped.replace("baselines:\n", "baselines:\n  mine:\n    clean_error: 0.1\n"
                                      "    imagenet_c:\n      fog: [0.5, 0.6, 0.7, 0.8, 0.9]\n", 1))
    store = tmp_path / "s.db"
    common = ["--model", "demo-isqrt", "--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1",
              "--data", str(val), "--class-order", "sorted", "--limit", "10", "--config", str(config),
              "--store", str(store), "--workers", "0", "--format", "json"]
    refused = CliRunner().invoke(main, ["eval", *common, "--baseline", "mine"])
    assert refused.exit_code == 2 and "`--baseline mine`: mine is a table of published ImageNet-C errors " \
        "(the configuration's `baselines:`), which normalize no error of a model of other classes than " \
        "ImageNet's 1000" in refused.stderr, refused.output
    # ImageNet images under CIFAR's parameters (--preset cifar): named so, not "ImageNet images"
    preset = CliRunner().invoke(main, ["eval", *common[2:], "--model", "resnet18-gap", "--random-weights",
                                       "--preset", "cifar", "--baseline", "mine"])
    assert preset.exit_code == 2 and "which normalize no error of ImageNet (cifar parameters) images" \
        in preset.stderr, preset.output
    assert not store.exists()
    plain = CliRunner().invoke(main, ["eval", *common])  # the default: unnormalized, as before
    assert plain.exit_code == 0 and json.loads(plain.stdout)["metrics"]["mCE"] is None, plain.output
    stored = CliRunner().invoke(main, ["baseline", "--name", "mine", *common])
    assert stored.exit_code == 0, stored.output
    again = CliRunner().invoke(main, ["eval", *common, "--baseline", "mine"])
    assert again.exit_code == 0 and json.loads(again.stdout)["metrics"]["baseline"] == "mine", again.output


def test_the_long_csv_says_the_severities_a_mean_row_covers(demo_val, tmp_path):
    """fog stored at 1,2 and 3 beside corruptions of 1,2 and of 1,3: its `all` row is the mean of
    severity 1 alone (what every benchmark corruption has), under rows of 1, 2 and 3, and nothing in
    the file said so (helper-228)."""
    store = tmp_path / "s.db"
    for corruptions, severities in (("gaussian_noise,fog", "1,2"), ("brightness,fog", "1,3")):
        done = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--data", str(demo_val),
                                         "--class-order", "sorted", "--store", str(store), "--workers", "0",
                                         "--limit", "8", "--suite", "imagenet-c", "--corruptions",
                                         corruptions, "--severities", severities])
        assert done.exit_code == 0, done.output
    reported = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-c", "--format",
                                         "csv"])
    assert reported.exit_code == 0, reported.output
    rows = list(csv.DictReader(io.StringIO(reported.stdout)))
    assert sorted(r["level"] for r in rows if r["item"] == "fog") == ["1", "2", "3", "all"]
    means = {r["item"]: r["severities"] for r in rows if r["level"] == "all"}
    assert means == {"gaussian_noise": "1", "fog": "1", "brightness": "1", "mean (benchmark)": "1"}
    assert all(r["severities"] == "" for r in rows if r["level"] != "all")


def test_a_model_and_its_own_file_named_again_are_said_to_be_one_run(demo_val, tmp_path):
    """`--model demo-gap --model demo-gap=<its shipped file>`: one run compared with itself (Δ 0),
    said so in a note, as for a copy of the file (helper-282; refusing it refused two names of one
    file in benchmarks.yaml too: helper-283)."""
    from robustbench_gcp.config import load_config

    own = load_config().model("demo-gap").checkpoint
    result = CliRunner().invoke(main, [
        "compare", "--model", "demo-gap", "--model", f"demo-gap={own}", "--data", str(demo_val),
        "--class-order", "sorted", "--limit", "4", "--store", str(tmp_path / "s.db"), "--format", "json"])
    assert result.exit_code == 0, result.output
    notes = [n for c in json.loads(result.stdout)["comparisons"] for n in c["notes"]]
    assert "demo-gap@own and demo-gap@demo-gap are one stored run (the same weights and settings): their " \
           "differences are 0 by construction" in notes, notes


def test_a_reference_with_results_of_another_suite_only_is_said_so(demo_val, tmp_path):
    """Its clean cells in its ImageNet-C table are no clean-suite cells "made another way": the note
    on the clean comparison said so (helper-282)."""
    store = ["--store", str(tmp_path / "s.db")]
    common = ["--data", str(demo_val), "--class-order", "sorted", "--limit", "4", *store]
    for model, suite in (("demo-gap", ["--suite", "clean"]), ("demo-isqrt", ["--suite", "imagenet-c",
                                                                             "--corruptions", "fog",
                                                                             "--severities", "3"])):
        done = CliRunner().invoke(main, ["eval", "--model", model, *suite, *common])
        assert done.exit_code == 0, done.output
    # a second run in the clean suite: a comparison there
    done = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--suite", "clean", "--seed", "1",
                                     *common])
    assert done.exit_code == 0, done.output
    shown = CliRunner().invoke(main, ["report", *store, "--reference", "demo-isqrt", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    notes = [n for c in json.loads(shown.stdout)["comparisons"] for n in c["notes"] if "not in this" in n]
    assert notes and notes[0].startswith("demo-isqrt is not in this comparison (its results on these images "
                                         "are of another suite: imagenet-c (")


def test_report_refuses_a_baseline_where_nothing_is_normalized(demo_val, tmp_path):
    """`report --baseline alexnet` of a store of clean results exited 0, normalizing nothing, where
    eval and compare refuse it (helper-289); left out, the default is no word."""
    from robustbench_gcp import evaluate

    store = str(tmp_path / "s.db")
    evaluate("demo-gap", suite="clean", data=str(demo_val), class_order="sorted", limit=2, store=store,
             workers=0)
    refused = CliRunner().invoke(main, ["report", "--store", store, "--baseline", "alexnet"])
    assert refused.exit_code == 2 and ("--baseline normalizes the metrics of the imagenet-c/imagenet-p "
                                       "suites; the clean suite has none to normalize") in refused.stderr
    assert CliRunner().invoke(main, ["report", "--store", store]).exit_code == 0
