"""Cells made by a changed corruption carry its revision: an older store's cells of it are
recomputed, not reused, and reports show the newest revision of each cell."""

from __future__ import annotations

import json
import sqlite3

from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.store import CellKey, CellResult, Store, canonical_json
from robustbench_gcp.suites.revisions import corruption_revision, newest, revision_mark


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_the_marks_of_changed_corruptions_only():
    assert revision_mark("brightness", "torch") == {"revision": 2}
    assert revision_mark("saturate", "torch") == {"revision": 2}
    for changed in ("contrast", "glass_blur", "motion_blur"):  # 0.7.12: the original's bytes
        assert revision_mark(changed, "torch") == {"revision": 2}
    assert revision_mark("snow", "torch") == {"revision": 3}  # 0.7.13: the small presets' bytes; 0.7.30 grey
    assert revision_mark("frost", "torch") == {"revision": 3}  # 0.7.5, 0.7.13 (Tiny's textures)
    assert revision_mark("gaussian_noise", "torch") == {}  # unchanged: older stores' cells stay found
    assert revision_mark("gaussian_noise", "reference") == {"revision": 2}
    assert revision_mark("snow", "reference") == {"revision": 3}  # 0.7.26: the original's trim
    assert corruption_revision("brightness", "released") == 1 and corruption_revision("unknown", "torch") == 1


def _cell(name, variant, n):
    return CellResult(CellKey("imagenet-c", name, "1", canonical_json(variant)), n, {"top1_wrong": 0.0},
                      [0], True)


def test_reports_show_the_newest_revision_whatever_the_order():
    made = {"source": "torch", "roundtrip": True}
    old, new = _cell("brightness", made, 1), _cell("brightness", {**made, "revision": 2}, 2)
    other = _cell("pixelate", made, 3)
    for cells in ([old, new, other], [new, old, other]):
        kept, notes = newest(cells, "m")
        assert [c.n for c in kept] == [c.n for c in cells if c is not old]
        assert notes == ["m: 1 cells computed by an earlier version of their corruption, perturbation or "
                         "attack are left out; the current version's are shown"]
    kept, notes = newest([old, other], "m")  # only the old revision stored: shown, and said so
    assert kept == [old, other] and len(notes) == 1 and notes[0].startswith("m: brightness were computed")
    released = _cell("brightness", {"source": "released"}, 4)
    assert newest([released], "m") == ([released], [])
    # the new revision stopped mid-way: the earlier, complete one is shown, and said so
    unfinished = CellResult(new.key, 2, {"top1_wrong": 0.0}, [0], False)
    kept, notes = newest([old, unfinished, other], "m")
    assert kept == [old, other] and notes[0] == (
        "m: the current version of brightness is not complete at every level stored (a run stopped "
        "mid-way, or one of fewer levels): the earlier one, complete at all of them, is shown")


def test_a_corruption_shows_one_revision_at_every_severity():
    """The new revision finished at severities 1-2 but not 3, the old one at all three: severity 3
    came from the old revision beside the new ones, and its CE averaged the two."""
    made = {"source": "torch", "roundtrip": True}

    def cell(level, revision, complete=True):
        variant = {**made, "revision": revision} if revision > 1 else made
        return CellResult(CellKey("imagenet-c", "brightness", level, canonical_json(variant)), 1,
                          {"top1_wrong": 0.0}, [0], complete)

    old = [cell(level, 1) for level in "123"]
    new = [cell("1", 2), cell("2", 2), cell("3", 2, complete=False)]
    kept, notes = newest([*new, *old], "m")
    assert kept == old and notes[0] == (
        "m: the current version of brightness is not complete at every level stored (a run stopped "
        "mid-way, or one of fewer levels): the earlier one, complete at all of them, is shown")
    assert notes[1].startswith("m: brightness were computed by an earlier")
    new[2] = cell("3", 2)  # finished: the new revision at every severity
    assert newest([*old, *new], "m")[0] == new
    # no revision complete at every severity: each severity's newest complete cell, as before
    kept, _ = newest([old[0], new[1], cell("3", 2, complete=False)], "m")
    assert [(c.key.level, c.complete) for c in kept] == [("1", True), ("2", True), ("3", False)]
    # a complete cell of the older revision before an unfinished one of the newer (the ranking
    # of (revision, complete) showed the unfinished cell, its CE over part of the images)
    kept, _ = newest([old[0], cell("1", 2, complete=False), new[1]], "m")
    assert kept == [old[0], new[1]]


def test_imagenet_p_cells_are_checked_against_the_perturbations_revisions():
    """A perturbation's revision is not its namesake corruption's: zoom_blur and brightness are at
    revision 1 as perturbations (2 as corruptions), spatter at 2 (1). Checked against the
    corruptions', current ImageNet-P zoom_blur cells were said to need computing again and an old
    spatter cell was not."""
    def p_cell(name, revision):
        variant = {"source": "torch", **({"revision": revision} if revision > 1 else {})}
        return CellResult(CellKey("imagenet-p", name, "1", canonical_json(variant)), 1, {}, [0], True)

    assert newest([p_cell("zoom_blur", 1), p_cell("brightness", 1)], "m")[1] == []
    (note,) = newest([p_cell("spatter", 1)], "m")[1]
    assert note.startswith("m: spatter were computed by an earlier version of gcp-robust")
    assert newest([p_cell("spatter", 2)], "m")[1] == []
    assert newest([p_cell("spatter", 3)], "m")[1] == []  # a later version's cell is not an earlier one


def _eval(image_folder, checkpoint, store):
    result = run("eval", "--model", "resnet18-gap", "--checkpoint", checkpoint, "--data", image_folder,
                 "--store", store, "--workers", 0, "--batch-size", 6, "--suite", "imagenet-c",
                 "--corruptions", "brightness,pixelate", "--severities", 2, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _report(store):
    result = run("report", "--store", store, "--suite", "imagenet-c", "--format", "json")
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["reports"]
    assert len(reports) == 1  # the old and the new brightness cell make one report
    return reports[0]


def unmark(store, name, unchanged, model=None):
    """Check that the cell of ``name`` carries revision 2 and that of ``unchanged`` none, then
    remove the mark from ``name``'s cell (of ``model``'s run; default: the first run), as the
    version before the change stored it."""
    with Store(store) as s:
        run = next(r for r in s.runs() if model in (None, r.model))
        cells = {key.name: (cid, json.loads(key.variant)) for cid, key in s.cells(run.id) if key.name}
    (cell_id, variant), unchanged_variant = cells[name], cells[unchanged][1]
    assert variant["revision"] == 2 and "revision" not in unchanged_variant
    unmarked = canonical_json({k: v for k, v in variant.items() if k != "revision"})
    with sqlite3.connect(store) as db:
        db.execute("UPDATE cells SET variant = ? WHERE id = ?", (unmarked, cell_id))
    db.close()


def test_an_earlier_revision_is_recomputed_and_reported_once(image_folder, gap_checkpoint, tmp_path):
    store = tmp_path / "results.db"
    first = _eval(image_folder, gap_checkpoint, store)
    unmark(store, "brightness", unchanged="pixelate")  # what gcp-robust 0.7.0 stored
    stale = _report(store)
    assert any("brightness were computed by an earlier version" in n for n in stale["notes"])

    again = _eval(image_folder, gap_checkpoint, store)
    shards = first["computed"]["computed"] // 3  # of each cell: clean, brightness, pixelate
    assert again["computed"]["computed"] == shards and again["computed"]["reused"] == 2 * shards
    assert again["cells"] == first["cells"] and again["metrics"] == first["metrics"]
    after = _report(store)
    assert [c["corruption"] for c in after["cells"]] == ["brightness", "pixelate"]
    assert any("1 cells computed by an earlier version" in n for n in after["notes"])
    assert not any("were computed by an earlier version" in n for n in after["notes"])
    assert after["cells"] == first["cells"]


def test_an_earlier_revision_of_a_perturbation_is_recomputed_and_reported_once(demo_val, tmp_path):
    """ImageNet-P's gaussian_blur gives the original's bytes since 0.7.7 (revision 2): the cells
    0.7.6 stored (unmarked) are computed again beside them, and reports show the new ones."""
    from robustbench_gcp.suites.revisions import current_revision, perturbation_revision

    assert perturbation_revision("gaussian_blur", "torch") == 2
    for changed in ("spatter", "motion_blur"):  # 0.7.12: black dry frames; sums in double
        assert perturbation_revision(changed, "torch") == 2
    assert perturbation_revision("snow", "torch") == 3  # 0.7.30: OpenCV's float32 grey, bit for bit
    assert perturbation_revision("gaussian_blur", "released") == perturbation_revision("rotate", "torch") == 1
    assert current_revision(CellKey("imagenet-p", "gaussian_blur", "1", '{"source":"torch"}')) == 2
    store = tmp_path / "s.db"
    args = ("eval", "--model", "demo-gap", "--data", demo_val, "--class-order", "sorted", "--store", store,
            "--suite", "imagenet-p", "--perturbations", "gaussian_blur,rotate", "--limit", 4, "--workers", 0,
            "--format", "json")
    first = json.loads(run(*args).stdout)
    unmark(store, "gaussian_blur", unchanged="rotate")  # what gcp-robust 0.7.6 stored
    stale = json.loads(run("report", "--store", store, "--format", "json", "--no-intervals").stdout)
    (report,) = stale["reports"]
    assert any("gaussian_blur were computed by an earlier version" in n for n in report["notes"]), report
    again = json.loads(run(*args).stdout)
    assert again["computed"]["computed"] == 1 and again["perturbations"] == first["perturbations"]
    after = json.loads(run("report", "--store", store, "--format", "json", "--no-intervals").stdout)
    (report,) = after["reports"]
    assert [e["perturbation"] for e in report["perturbations"]] == ["rotate", "gaussian_blur"]
    assert any("1 cells computed by an earlier version" in n for n in report["notes"]), report["notes"]


def test_a_baseline_holding_an_earlier_revision_is_said_to_need_storing_again(demo_val, tmp_path):
    """A baseline stored by 0.7.6 holds gaussian_blur's revision 1: the FR there was empty with the
    note that the baseline has no figures for it, or never flips. The other way round (a run's cell
    of 0.7.6, the baseline of 0.7.7), the run is to be evaluated again."""
    def notes(older: str) -> list[str]:
        store = tmp_path / f"{older}.db"
        common = ("--data", demo_val, "--class-order", "sorted", "--store", store, "--suite", "imagenet-p",
                  "--perturbations", "gaussian_blur,rotate", "--limit", 4, "--workers", 0, "--format", "json")
        run("baseline", "--model", "demo-gap", "--name", "base", *common)
        run("eval", "--model", "demo-isqrt", *common, "--baseline", "base")
        unmark(store, "gaussian_blur", unchanged="rotate", model=older)  # as 0.7.6 stored it
        result = run("report", "--store", store, "--models", "demo-isqrt", "--baseline", "base", "--format",
                     "json", "--no-intervals")
        (report,) = json.loads(result.stdout)["reports"]
        return report["notes"]

    said = ("FR left empty for gaussian_blur/1: baseline 'base' holds gaussian_blur/1 as an earlier version "
            "of gcp-robust computed them (store the baseline again: `gcp-robust baseline ... --replace`)")
    assert any(said in n for n in notes("demo-gap")), notes
    reversed_notes = notes("demo-isqrt")
    said = ("baseline 'base' holds gaussian_blur/1 as a later version of gcp-robust computed them than this "
            "run's (`gcp-robust eval` again computes the run's anew)")
    assert any(said in n for n in reversed_notes), reversed_notes
    assert not any("store the baseline again" in n for n in reversed_notes), reversed_notes
