"""Landscape cells of a model of other classes than ImageNet's 1000 on its images name them.

A 10-class model's losses are of another task than a 1000-class one's (chance is log 10, not
log 1000): its cells carry ``"classes": 10`` as ImageNet-C's and ImageNet-P's do, its reports
say so, and a comparison sets it apart from a 1000-class model's on the same images. Cells
stored before the mark are superseded by the marked ones, or left out with what computes them.
"""

from __future__ import annotations

import json
import sqlite3

import torch
from click.testing import CliRunner

from robustbench_gcp import evaluate
from robustbench_gcp.cli import main
from robustbench_gcp.suites import get_suite


def _eval(demo_val, store, model, **kwargs):
    options = dict(suite="landscape", data=str(demo_val), class_order="sorted", store=str(store), limit=2,
                   workers=0, landscape_at="pixels", etas="0:0.1:2")
    return evaluate(model, **{**options, **kwargs})


class Thousand(torch.nn.Module):
    """A tiny classifier of ImageNet's 1000 classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=4)
        self.fc = torch.nn.Linear(4, 1000)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def _variants(store, kind="landscape"):
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT runs.model, cells.name, cells.variant FROM cells JOIN runs ON "
                          "runs.id = cells.run_id WHERE cells.kind = ?", (kind,)).fetchall()
    return {(model, name): json.loads(variant) for model, name, variant in rows}


def test_a_ten_class_models_landscape_is_compared_apart_from_a_thousand_class_ones(demo_val, tmp_path):
    """The demo's 10-class model and a 1000-class one on the same images, at the same settings:
    their losses were paired row by row (helper-269)."""
    store = tmp_path / "s.db"
    ten = _eval(demo_val, store, "demo-gap", corruptions="fog", severities="1")
    thousand = _eval(demo_val, store, Thousand(), name="thousand", corruptions="fog", severities="1")
    variants = _variants(store)
    assert variants[("demo-gap", "clean")]["classes"] == 10 == variants[("demo-gap", "fog")]["classes"]
    assert "classes" not in variants[("thousand", "clean")] and "classes" not in variants[("thousand", "fog")]
    assert ten.source == "pixels, ascent, 2 etas 0 to 0.1, float64, 10 classes"
    assert thousand.source == "pixels, ascent, 2 etas 0 to 0.1, float64"
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "landscape", "--format",
                                       "json", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    comparisons = json.loads(result.stdout)["comparisons"]
    assert sorted([m["model"] for m in c["models"]] for c in comparisons) == [["demo-gap"], ["thousand"]]
    notes = " ".join(note for c in comparisons for note in c["notes"])
    assert "demo-gap (landscape (pixels, ascent, 2 etas 0 to 0.1, float64, 10 classes)) is compared apart " \
           "from thousand" in notes, notes
    # the same model's cells are computed the same way with the mark: the clean loss at X is log-softmax's
    assert ten.sections["landscape"]["loss"] > 0 and thousand.sections["landscape"]["n"] == 2


def _strip_marks(store):
    """The landscape cells as 0.7.29 stored them: no ``"classes"``."""
    with sqlite3.connect(store) as db:
        for cid, variant in db.execute("SELECT id, variant FROM cells WHERE kind = 'landscape' AND variant "
                                       "LIKE '%classes%'").fetchall():
            fields = json.loads(variant)
            assert fields.pop("classes") == 10
            db.execute("UPDATE cells SET variant = ? WHERE id = ?",
                       (json.dumps(fields, sort_keys=True, separators=(",", ":")), cid))


def _report(store):
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "landscape", "--format",
                                       "json", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cells_stored_before_the_mark_are_the_models_of_its_classes(demo_val, tmp_path):
    """One run is one model's: once its cells name its classes, those it stored before (no mark, the
    same numbers) are of them too, at any settings: shown once, under its classes, and set apart from
    a 1000-class model's (helper-276: cells at settings not evaluated since were paired with them)."""
    store = tmp_path / "s.db"
    first = _eval(demo_val, store, "demo-gap", corruptions="fog", severities="1")
    _eval(demo_val, store, "demo-gap", etas="0:0.2:2")
    _eval(demo_val, store, Thousand(), name="thousand", etas="0:0.2:2")
    _strip_marks(store)
    again = _eval(demo_val, store, "demo-gap")  # the clean cell at 0:0.1:2 only
    assert again.computed["computed"] > 0  # its marked version (another key)
    assert again.sections["landscape"]["loss"] == first.sections["landscape"]["loss"]  # the same numbers
    out = _report(store)
    shown = {r["source"]: r for r in out["reports"] if r["model"] == "demo-gap"}
    assert sorted(shown) == ["pixels, ascent, 2 etas 0 to 0.1, float64, 10 classes",
                             "pixels, ascent, 2 etas 0 to 0.2, float64, 10 classes"]
    both = shown["pixels, ascent, 2 etas 0 to 0.1, float64, 10 classes"]
    assert both["landscape"]["loss"] == first.sections["landscape"]["loss"]
    # the clean figures first, as stored (its marked twin, stored last, took its place: helper-277)
    markdown = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "landscape", "--format",
                                         "markdown", "--resamples", "100"]).output
    (table,) = [part for part in markdown.split("**landscape (")[1:]
                if part.startswith("pixels, ascent, 2 etas 0 to 0.1")]
    assert "| model | clean err % | loss | loss band |" in table, markdown
    assert [(c["corruption"], c["severity"]) for c in both["landscape_cells"]] == [("fog", 1)]  # unmarked
    assert not [n for n in both["notes"] if "left out" in n or "several ways" in n], both["notes"]
    comparisons = out["comparisons"]
    assert sorted([m["model"] for m in c["models"]] for c in comparisons) == [["demo-gap"], ["demo-gap"],
                                                                              ["thousand"]]


def test_a_runs_landscape_from_before_the_mark_takes_the_classes_its_imagenet_c_cells_say(demo_val, tmp_path):
    """ImageNet-C's cells name the model's classes since 0.7.11: a run stored before 0.7.30 whose
    landscape was not evaluated since is that model's, not paired with a 1000-class one (helper-277)."""
    store = tmp_path / "s.db"
    _eval(demo_val, store, "demo-gap", suite="imagenet-c", corruptions="fog", severities="1", etas=None,
          landscape_at=None)
    _eval(demo_val, store, "demo-gap")
    _eval(demo_val, store, Thousand(), name="thousand")
    _strip_marks(store)
    out = _report(store)
    (landscape,) = [r for r in out["reports"] if r["model"] == "demo-gap" and r["kind"] == "landscape"]
    assert landscape["source"] == "pixels, ascent, 2 etas 0 to 0.1, float64, 10 classes"
    apart = [[m["model"] for m in c["models"]] for c in out["comparisons"] if c["kind"] == "landscape"]
    assert sorted(apart) == [["demo-gap"], ["thousand"]]


def test_a_complete_cell_from_before_the_mark_is_shown_while_its_marked_one_is_unfinished(demo_val, tmp_path):
    """Its numbers are the marked one's: a run again that stopped mid-way made the report partial
    (helper-276)."""
    store = tmp_path / "s.db"
    first = _eval(demo_val, store, "demo-gap", limit=4, shard_size=2)
    _strip_marks(store)
    _eval(demo_val, store, "demo-gap", limit=4, shard_size=2)
    with sqlite3.connect(store) as db:  # the marked cell's second shard, as if stopped before it
        (cid,) = db.execute("SELECT id FROM cells WHERE kind = 'landscape' AND variant LIKE '%classes%'")
        db.execute("DELETE FROM shards WHERE cell_id = ? AND shard = 1", cid)
    (report,) = _report(store)["reports"]
    assert report["partial"] is None and report["landscape"]["n"] == 4
    assert report["landscape"]["loss"] == first.sections["landscape"]["loss"]
    assert report["source"].endswith("10 classes")


def test_groups_from_before_the_mark_join_the_runs_classes():
    """One run is one model's: its unmarked groups, of any settings, are of the K classes its marked
    ones name; a run with no mark (of ImageNet's classes, or not evaluated since) stays as stored."""
    suite = get_suite("landscape")
    settings = {"at": "pixels", "direction": "ascent", "etas": [0, 0.1, 2]}
    other = {**settings, "etas": [0, 1, 2]}

    def group(variant):
        return json.dumps(variant, sort_keys=True, separators=(",", ":"))

    groups = {group({**settings, "classes": 10}): ["new"], group(settings): ["old"], group(other): ["other"]}
    assert suite.merged_groups(groups) == {group({**settings, "classes": 10}): ["new", "old"],
                                           group({**other, "classes": 10}): ["other"]}
    unmarked = {group(settings): ["old"], group(other): ["other"]}
    assert suite.merged_groups(unmarked) == unmarked
    # another suite's cells of the run name them (reports.stored._grouped)
    assert suite.merged_groups(unmarked, classes=10) == {group({**settings, "classes": 10}): ["old"],
                                                         group({**other, "classes": 10}): ["other"]}


def test_a_suite_of_yours_whose_merged_groups_takes_no_classes_still_reports(demo_val, tmp_path, monkeypatch):
    """merged_groups(groups) as before ``classes=`` existed: a run whose cells name its classes (every
    demo model's) made report fail with a TypeError (helper-278)."""
    store = tmp_path / "s.db"
    _eval(demo_val, store, "demo-gap", suite="imagenet-c", corruptions="fog", severities="1", etas=None,
          landscape_at=None)
    suite = get_suite("imagenet-c")
    monkeypatch.setattr(type(suite), "merged_groups", lambda self, groups: groups)
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--no-intervals"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reports"][0]["source"] == "torch, JPEG round trip, 10 classes"


def test_of_twins_the_cell_stored_last_of_several_ways_is_still_shown_in_the_first_ones_place():
    """Dropping an unmarked twin keeps "the one stored last" of cells made in several ways (with and
    without the round trip), and the cells' order that of their first coming (clean first)."""
    from robustbench_gcp.store import CellKey, CellResult

    settings = {"at": "pixels", "direction": "ascent", "etas": [0, 0.1, 2]}

    def cell(name, level="", classes=True, **made):
        variant = {**settings, **made, **({"classes": 10} if classes else {})}
        key = CellKey("landscape", name, level, json.dumps(variant, sort_keys=True, separators=(",", ":")))
        return CellResult(key, 2, {}, [0], True)

    old_clean, old_trip = cell("clean", classes=False), cell("fog", "1", classes=False, roundtrip=True)
    no_trip, clean, trip = cell("fog", "1", roundtrip=False), cell("clean"), cell("fog", "1", roundtrip=True)
    shown, notes = get_suite("landscape").latest([old_clean, old_trip, no_trip, clean, trip], "m")
    assert shown == [clean, trip]
    assert notes == ["m: landscape cells made in several ways (fog/1): only the one stored last is shown"]
