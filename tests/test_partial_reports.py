"""Reports of runs stopped before their end, on the images every cell has: the same images are one
experiment whatever the shard size, a stale budget does not cut what is shown, a suite report needs
one of its own cells, and a stored baseline over all images is said to be so."""

from __future__ import annotations

import json
import sqlite3

from click.testing import CliRunner

from robustbench_gcp.cli import main


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.startswith("{") else result


def common(demo_val, store, *extra):
    return ["--data", demo_val, "--class-order", "sorted", "--store", store, "--workers", 0, "--format",
            "json", *extra]


def drop(store, where):
    with sqlite3.connect(store) as db:
        db.execute(f"DELETE FROM shards WHERE {where}")


def test_two_stopped_runs_on_the_same_images_are_paired_whatever_their_shard_size(demo_val, tmp_path):
    store = tmp_path / "s.db"
    selection = ("--suite", "imagenet-c", "--corruptions", "fog", "--severities", 1, "--limit", 16)
    cli("eval", "--model", "demo-gap", "--shard-size", 4, *common(demo_val, store, *selection))
    cli("eval", "--model", "demo-isqrt", "--shard-size", 8, *common(demo_val, store, *selection))
    # each stopped after images 0-7: demo-gap's shards 0 and 1 (of 4 images), demo-isqrt's shard 0
    drop(store, "(shard > 1 AND cell_id IN (SELECT cells.id FROM cells JOIN runs ON runs.id = cells.run_id "
                "WHERE runs.model = 'demo-gap')) OR (shard > 0 AND cell_id IN (SELECT cells.id FROM cells "
                "JOIN runs ON runs.id = cells.run_id WHERE runs.model = 'demo-isqrt'))")
    out = cli("report", "--store", store, "--suite", "imagenet-c", "--format", "json", "--resamples", 100)
    assert [r["partial"]["image_range"] for r in out["reports"]] == ["0-7", "0-7"]
    (comparison,) = out["comparisons"]
    assert comparison["n_images"] == 8 and all(m["paired"] for m in comparison["models"])


def test_a_stale_budget_does_not_cut_the_latest_cells(demo_val, tmp_path):
    store = tmp_path / "s.db"
    selection = ("--suite", "adversarial", "--attacks", "pgd-linf", "--epsilons", "1/255", "--limit", 12,
                 "--shard-size", 4)
    cli("eval", "--model", "demo-gap", *common(demo_val, store, *selection, "--steps", 1))
    drop(store, "shard = 2 AND cell_id IN (SELECT id FROM cells WHERE kind = 'adversarial')")
    # the same attack with another budget, complete: the report shows it on all 12 images
    cli("eval", "--model", "demo-gap", *common(demo_val, store, *selection, "--steps", 2))
    (report,) = cli("report", "--store", store, "--suite", "adversarial", "--format", "json",
                    "--no-intervals")["reports"]
    assert report["n_images"] == 12 and report["partial"] is None, report["partial"]


def test_a_suite_report_needs_one_of_its_own_cells(demo_val, tmp_path):
    store = tmp_path / "s.db"
    selection = ("--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1,2", "--limit", 8,
                 "--shard-size", 4)
    cli("eval", "--model", "demo-gap", *common(demo_val, store, *selection))
    # fog/1 has shard 0 only, fog/2 shard 1 only: no image every cell has, only clean complete
    drop(store, "cell_id IN (SELECT id FROM cells WHERE kind = 'imagenet-c' AND level = '1') AND shard = 1")
    drop(store, "cell_id IN (SELECT id FROM cells WHERE kind = 'imagenet-c' AND level = '2') AND shard = 0")
    reports = cli("report", "--store", store, "--format", "json", "--no-intervals")["reports"]
    assert [r["suite"] for r in reports] == ["clean"]  # not an imagenet-c report without imagenet-c
    said = ("demo-gap: imagenet-c not reported: {} of 6 shards stored, and no image is in all its cells "
            "yet; re-run the command that made it to finish")
    assert said.format(4) in reports[0]["notes"]
    # stopped before any shard of its corruptions (only clean stored): the clean table says why too
    drop(store, "cell_id IN (SELECT id FROM cells WHERE kind = 'imagenet-c')")
    (report,) = cli("report", "--store", store, "--format", "json", "--no-intervals")["reports"]
    assert report["suite"] == "clean" and said.format(2) in report["notes"], report["notes"]
    # nothing stored at all: that one note, not this one as well (another run's report carries it)
    drop(store, "1")
    cli("eval", "--model", "demo-isqrt", "--random-weights", *common(demo_val, store, "--suite", "clean",
                                                                    "--limit", 8))
    (report,) = cli("report", "--store", store, "--format", "json", "--no-intervals")["reports"]
    assert any("demo-gap: a run with nothing stored yet" in note for note in report["notes"])
    assert not any("imagenet-c not reported" in note for note in report["notes"]), report["notes"]
    # --suite asks for that suite: the run is still said (the note above is for the whole store)
    cli("eval", "--model", "demo-isqrt", "--random-weights", *common(demo_val, store, *selection))
    (report,) = cli("report", "--store", store, "--suite", "imagenet-c", "--format", "json",
                    "--no-intervals")["reports"]
    assert said.format(0) in report["notes"], report["notes"]


def test_a_baseline_over_all_images_is_noted_on_a_partial_report(demo_val, tmp_path):
    store = tmp_path / "s.db"
    selection = ("--suite", "imagenet-p", "--perturbations", "brightness,scale", "--limit", 12,
                 "--shard-size", 4)
    cli("baseline", "--model", "demo-gap", "--name", "base", *common(demo_val, store, *selection))
    cli("eval", "--model", "demo-isqrt", *common(demo_val, store, *selection))
    drop(store, "shard = 2 AND cell_id IN (SELECT cells.id FROM cells JOIN runs ON runs.id = cells.run_id "
                "WHERE runs.model = 'demo-isqrt')")
    reports = cli("report", "--store", store, "--baseline", "base", "--format", "json",
                  "--no-intervals")["reports"]
    (partial,) = [r for r in reports if r["partial"]]
    assert partial["n_images"] == 8
    assert "baseline 'base' covers all 12 images, this partial report 8 of them: its figures are means " \
           "over more images than these" in partial["notes"]


def test_figures_mark_a_partial_run_and_mces_over_other_corruptions(demo_val, tmp_path, monkeypatch):
    """The tables said "(partial)", the figures' legends did not; and the CE bars' legend set an mCE
    over 2 corruptions beside one over 3 without saying so."""
    import matplotlib

    matplotlib.use("Agg")
    from robustbench_gcp.reports import figures

    drawn, panels, severity_legends = [], [], []

    def save(fig, path):  # the CE bars' legends, read before the figure is saved and closed
        if "ce_per_corruption" in str(path):
            legend = fig.legends[0]
            drawn.append([t.get_text() for t in legend.get_texts()] + [legend.get_title().get_text()])
        if "error_vs_severity" in str(path):
            panels.append({ax.get_title(): [len(bars.lines[0].get_xdata()) for bars in ax.containers]
                           for ax in fig.axes if ax.get_visible()})  # each model's line (with its bars)
            severity_legends.append([t.get_text() for t in fig.legends[0].get_texts()])
        return original(fig, path)

    original = figures.save
    monkeypatch.setattr(figures, "save", save)
    store = tmp_path / "s.db"
    # the demo's 10 classes: CE is relative to a stored run of them (demo-gap's, stored as "base")
    for command, model, corruptions in (("baseline", "demo-gap", "fog,contrast,brightness"),
                                        ("eval", "demo-isqrt", "fog,contrast")):
        named = ("--name", "base") if command == "baseline" else ()
        cli(command, "--model", model, *common(demo_val, store, "--suite", "imagenet-c", "--corruptions",
                                                corruptions, "--severities", 1, "--limit", 16,
                                                "--shard-size", 8), *named)
    report = ("report", "--store", store, "--suite", "imagenet-c", "--baseline", "base", "--plot")
    cli(*report, tmp_path / "all")
    (labels,) = drawn
    # named where they are few; each model's own mCE, said in the legend's title
    assert labels[0].startswith("demo-gap (mCE ") and labels[0].endswith(" over fog, brightness, contrast)")
    assert labels[1].startswith("demo-isqrt (mCE ") and labels[1].endswith(" over fog, contrast)"), labels
    assert labels[-1] == "model (mCE of its own report's cells)"
    # error against severity: demo-isqrt has no brightness line (it drew a lone clean point there),
    # and the legend names both models whichever panel comes first
    assert panels == [{"fog": [2, 2], "contrast": [2, 2], "brightness": [2]}], panels
    assert severity_legends == [["demo-gap", "demo-isqrt"]], severity_legends
    drop(store, "shard > 0 AND cell_id IN (SELECT cells.id FROM cells JOIN runs ON runs.id = cells.run_id "
                "WHERE runs.model = 'demo-isqrt')")
    drawn.clear()
    cli(*report, tmp_path / "partial")  # demo-isqrt's 8 images are an experiment of their own
    assert any(label.startswith("demo-isqrt (partial) (mCE ") for labels in drawn for label in labels), drawn
    # Markdown's paper-style table (CE per corruption) names it partial too, as its other tables
    markdown = cli("report", "--store", store, "--suite", "imagenet-c", "--baseline", "base", "--format",
                   "markdown").stdout
    detail = markdown[markdown.index("CE per corruption (base = 100)"):]
    assert "| demo-isqrt (partial) |" in detail, detail


def test_notes_of_a_model_in_two_tables_of_one_suite_say_which_table(demo_val, tmp_path):
    """Two runs of one model on two image sets are two tables; their notes ("CE sums over severities
    1,2 only", "... 1,3 only") were printed under both, each naming the model alone. (A model of
    ImageNet's 1000 classes: AlexNet's errors normalize its CE.)"""
    store = tmp_path / "s.db"
    for limit, severities in ((10, "1,2"), (6, "1,3")):
        cli("eval", "--model", "resnet18-gap", "--random-weights",
            *common(demo_val, store, "--suite", "imagenet-c", "--corruptions", "fog", "--severities",
                    severities, "--limit", limit))
    result = cli("report", "--store", store, "--suite", "imagenet-c", "--no-intervals")
    lines = [" ".join(line.split()) for line in result.stdout.split("note: ")[1:]]
    for images, severities in ((10, "1,2"), (6, "1,3")):
        said = (f"resnet18-gap (imagenet-c (torch, JPEG round trip), {images} images of {demo_val}): CE sums "
                "over severities")
        assert any(line.startswith(f"{said} {severities} only") for line in lines), lines
    assert not any(line.startswith("resnet18-gap: CE sums") for line in lines), lines


def test_unnormalized_means_over_some_severities_say_so(demo_val, tmp_path):
    """A 10-class model's ImageNet-C figures are unnormalized means; over severities 1,3 they are the
    means of the easier ones, and only the JSON's per-corruption severities said so (audit)."""
    store = tmp_path / "s.db"
    report = cli("eval", "--model", "demo-gap", "--random-weights",
                 *common(demo_val, store, "--suite", "imagenet-c", "--corruptions", "fog", "--severities",
                         "1,3", "--limit", 4))
    assert "the mean errors average severities 1,3 only, not the benchmark's 1-5" in report["notes"]
    assert not any("CE sums" in note for note in report["notes"])
    every = cli("eval", "--model", "demo-gap", "--random-weights",
                *common(demo_val, store, "--suite", "imagenet-c", "--corruptions", "fog", "--limit", 4))
    assert not any("severities" in note for note in every["notes"]), every["notes"]


def test_two_image_sets_of_one_size_are_told_apart_in_csv_and_markdown(demo_val, tmp_path):
    """Runs on two folders of as many images: the CSV rows (long and wide) and the Markdown detail
    tables' headings were alike, so nothing said which rows were of which images (audit)."""
    import csv
    import io
    import shutil

    store, other = tmp_path / "s.db", tmp_path / "copy"
    shutil.copytree(demo_val, other)
    for image in sorted(other.rglob("*.*")):  # other names: other images to the store
        image.rename(image.with_name(f"x{image.name}"))
    for data in (demo_val, other):
        cli("eval", "--model", "demo-gap", *common(data, store, "--suite", "imagenet-c", "--corruptions",
                                                   "fog", "--severities", "1", "--limit", 20))
    markdown = cli("report", "--store", store, "--suite", "imagenet-c", "--format", "markdown").stdout
    for data in (demo_val, other):
        assert f"), 20 images of {data}:_" in markdown
    for layout in ("wide", "long"):
        text = cli("report", "--store", store, "--suite", "imagenet-c", "--format", "csv", "--layout",
                   layout).stdout
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {row["data"] for row in rows} == {str(demo_val), str(other)}, layout


def test_a_run_one_cell_short_is_reported_on_the_images_every_cell_has(demo_val, tmp_path):
    """Only fog/2 lacks its last shard: every cell, clean's too, is counted on images 0-7, the
    images all of them have (each counted on its own shards, clean's error was over 12 images and
    fog/2's over 8, and mCE mixed them). The tests before dropped the same shards from every cell."""
    store = tmp_path / "s.db"
    selection = ("--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1,2", "--limit", 12,
                 "--shard-size", 4)
    cli("eval", "--model", "demo-isqrt", *common(demo_val, store, *selection))
    with sqlite3.connect(store) as db:
        first_two = {}  # (kind, level) -> top-1 errors of shards 0 and 1 (images 0-7)
        for kind, level, counts in db.execute(
                "SELECT kind, level, counts FROM shards JOIN cells ON cells.id = shards.cell_id "
                "WHERE shard < 2"):
            first_two[kind, level] = first_two.get((kind, level), 0) + json.loads(counts)["top1_errors"]
    drop(store, "cell_id IN (SELECT id FROM cells WHERE kind = 'imagenet-c' AND level = '2') AND shard = 2")
    reports = cli("report", "--store", store, "--format", "json", "--no-intervals")["reports"]
    (report,) = [r for r in reports if r["suite"] == "imagenet-c"]
    assert report["partial"]["image_range"] == "0-7" and report["n_images"] == 8
    assert report["clean"]["n"] == 8
    assert report["clean"]["top1_error"] == first_two["clean", ""] / 8
    for cell in report["cells"]:
        assert cell["n"] == 8
        assert cell["top1_error"] == first_two["imagenet-c", str(cell["severity"])] / 8


def test_a_run_with_half_its_images_in_every_cell_is_reported_on_those_images(demo_val, tmp_path):
    """The rule is "half the images or more": at exactly half (shard 0 of 2 in fog/2), every cell is
    reported on images 0-3; with fewer (shard 0 of 3), only the complete cells, on all images."""
    from robustbench_gcp.config import load_config
    from robustbench_gcp.reports.one_report import to_report_markdown
    from robustbench_gcp.reports.stored import reports_from_store

    def stopped(limit):
        store = tmp_path / f"{limit}.db"
        selection = ("--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1,2", "--limit", limit,
                     "--shard-size", 4)
        cli("eval", "--model", "demo-isqrt", *common(demo_val, store, *selection))
        drop(store, "cell_id IN (SELECT id FROM cells WHERE kind = 'imagenet-c' AND level = '2') "
                    "AND shard > 0")
        reports = cli("report", "--store", store, "--format", "json", "--no-intervals")["reports"]
        (report,) = [r for r in reports if r["suite"] == "imagenet-c"]
        return report

    half = stopped(8)
    assert half["partial"]["image_range"] == "0-3" and half["n_images"] == 4
    assert [c["severity"] for c in half["cells"]] == [1, 2] and half["clean"]["n"] == 4
    less = stopped(12)
    assert less["n_images"] == 12 and [c["severity"] for c in less["cells"]] == [1]
    assert less["partial"]["cells_complete"] == 2 and less["partial"]["cells"] == 3
    # one report's header line counts the complete cells (it said 3 of 3)
    (stored,) = reports_from_store(tmp_path / "12.db", load_config(), suites=["imagenet-c"],
                                   baseline="alexnet")
    assert "PARTIAL RUN (2 of 3 cells)" in to_report_markdown(stored)


def test_image_ranges_join_adjacent_shards_and_name_a_lone_image_once():
    from robustbench_gcp.reports.stored import image_ranges

    assert image_ranges([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 20], 2, 50) == "0-27,40-41"
    assert image_ranges([4, 2, 3], 1, 10) == "2-4" and image_ranges([7], 1, 10) == "7"
    assert image_ranges([2], 4, 10) == "8-9"  # the last shard, short
