"""`report` gives the notes that `eval` gave (labels from sorted folders, an exact matrix root under
gradients), from the store alone; and the label of a run is the same in both."""

from __future__ import annotations

import json
import sqlite3

from click.testing import CliRunner

from robustbench_gcp import evaluate
from robustbench_gcp.cli import main
from robustbench_gcp.store import Store

LABELS = "labels: sorted folder order (--class-order sorted), 10 classes"


def stored_reports(store, *options):
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--no-intervals",
                                       *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["reports"]


def test_report_gives_the_notes_eval_gave(demo_val, tmp_path):
    store = tmp_path / "s.db"
    common = dict(data=str(demo_val), class_order="sorted", store=str(store), workers=0, limit=6)
    evaluated = evaluate("demo-isqrt", name="mine", sqrt="eig", suite="adversarial", attacks="fgsm",
                         epsilons="1/255", **common)
    fog = evaluate("demo-gap", suite="imagenet-c", corruptions="fog", severities=[1], **common)
    # a name you chose is tagged with the matrix function too: the label `report` gives the run
    assert evaluated.model == "mine[sqrt=eig]"
    exact = [n for n in evaluated.notes if n.startswith("this model's matrix square root is exact (eig)")]
    assert len(exact) == 1 and LABELS in evaluated.notes and LABELS in fog.notes

    reports = {(r["model"], r["suite"]): r for r in stored_reports(store)}
    assert set(reports) == {("mine[sqrt=eig]", "adversarial"), ("demo-gap", "imagenet-c")}
    assert reports["mine[sqrt=eig]", "adversarial"]["notes"] == evaluated.notes
    assert reports["demo-gap", "imagenet-c"]["notes"] == fog.notes
    # a kind's notes stay with that kind: the clean report of the eig run has no gradient note
    clean = {r["model"]: r for r in stored_reports(store, "--suite", "clean")}
    assert clean["mine[sqrt=eig]"]["notes"] == [LABELS]
    # the clean suite asked for beside another: its own report too, before the other's
    both = [(r["model"], r["suite"])
            for r in stored_reports(store, "--suite", "clean", "--suite", "imagenet-c")]
    assert both == [("mine[sqrt=eig]", "clean"), ("demo-gap", "clean"), ("demo-gap", "imagenet-c")], both


def test_notes_are_replaced_not_repeated(demo_val, tmp_path):
    store = tmp_path / "s.db"
    common = dict(suite="clean", data=str(demo_val), class_order="sorted", store=str(store), workers=0,
                  limit=4)
    evaluate("demo-gap", **common)
    with Store(store) as s:
        (run,) = s.runs()
        assert s.notes(run.id)[""] == [LABELS]
        assert len(json.loads(s.notes(run.id)["image file sizes"][0])) == 4  # the run's own slot
        s.set_notes(run.id, "", ["an older wording", "an older wording"])  # a note given twice
        assert s.notes(run.id)[""] == ["an older wording"]
    again = evaluate("demo-gap", **common)
    assert again.computed["computed"] == 0
    with Store(store) as s:
        assert s.notes(run.id)[""] == [LABELS]


def test_a_store_from_before_notes_is_read_and_upgraded(demo_val, tmp_path):
    store = tmp_path / "s.db"
    common = dict(suite="clean", data=str(demo_val), class_order="sorted", store=str(store), workers=0,
                  limit=4)
    evaluate("demo-gap", **common)
    with sqlite3.connect(store) as db:
        db.execute("DROP TABLE notes")
    # read-only (as `report` opens it): no notes table, no notes, no error
    (report,) = stored_reports(store)
    assert report["notes"] == []
    with sqlite3.connect(store) as db:
        assert "notes" not in {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    # a writable open adds the table; the next eval keeps its notes there
    evaluate("demo-gap", **common)
    (report,) = stored_reports(store)
    assert report["notes"] == [LABELS]


def test_notes_never_stop_an_eval_on_a_full_store(demo_val, tmp_path, monkeypatch):
    """A complete run on a store that is full (or cannot take the new table) still reports: the
    notes are left out, nothing fails (a store of 0.5 reported there without writing)."""
    import robustbench_gcp.store.sqlite_file as sqlite_file

    store = tmp_path / "s.db"
    common = dict(suite="clean", data=str(demo_val), class_order="sorted", store=str(store), workers=0,
                  limit=4)
    first = evaluate("demo-gap", **common)
    with sqlite3.connect(store) as db:
        db.execute("DROP TABLE notes")

    def full(db):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sqlite_file, "_create_schema", full)  # the upgrade cannot write
    again = evaluate("demo-gap", **common)
    assert again.computed["computed"] == 0 and again.to_json()["clean"] == first.to_json()["clean"]
    monkeypatch.undo()
    evaluate("demo-gap", **common)  # the table is added now

    def no_writes(db):  # as a full disk: every write fails
        db.execute("PRAGMA query_only = ON")

    with Store(store) as s:
        (run,) = s.runs()
        s.set_notes(run.id, "", ["an older wording"])
    monkeypatch.setattr(Store, "connection_hooks", (no_writes,))
    third = evaluate("demo-gap", **common)  # set_notes cannot write: the report still comes
    assert third.computed["computed"] == 0 and LABELS in third.notes
    monkeypatch.setattr(Store, "connection_hooks", ())
    with Store(store) as s:
        assert s.notes(run.id)[""] == ["an older wording"]


RANDOM = "weights: seeded random (--random-weights, seed 0): a pipeline check, not a result"


def test_every_report_of_random_weights_says_so(demo_val, tmp_path):
    """eval, report and compare flag a run with seeded random weights, alone in the store or not;
    compare gives them to the models without =CHECKPOINT only, and names own weights `@own`."""
    store = tmp_path / "s.db"
    common = ["--data", str(demo_val), "--class-order", "sorted", "--limit", "10", "--store", str(store),
              "--format", "json"]
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--random-weights", *common])
    assert result.exit_code == 0, result.output
    assert RANDOM in json.loads(result.stdout)["notes"]
    (report,) = stored_reports(store)
    assert report["notes"].count(RANDOM) == 1  # the note kept, not said again
    # a run stored before the note was kept: the identity tells
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM notes WHERE note LIKE 'weights: %'")
    (report,) = stored_reports(store)
    assert RANDOM in report["notes"]
    # compare: a file given as =CHECKPOINT is loaded beside a model that gets random weights
    from robustbench_gcp.config import package_resource

    shipped = package_resource("demo/demo-isqrt.pth")
    result = CliRunner().invoke(main, ["compare", "--model", f"demo-isqrt={shipped}", "--model", "demo-gap",
                                       "--random-weights", *common])
    assert result.exit_code == 0, result.output
    reports = {r["model"]: r for r in json.loads(result.stdout)["reports"]}
    assert RANDOM in reports["demo-gap"]["notes"] and RANDOM not in reports["demo-isqrt"]["notes"]
    assert reports["demo-isqrt"]["clean"]["top1_error"] < 0.5  # trained weights
    # the same model with its own and another file: `@own`, not `@random`
    result = CliRunner().invoke(main, ["compare", "--model", "demo-isqrt", "--model", f"demo-isqrt={shipped}",
                                       *common])
    assert result.exit_code == 0, result.output
    assert sorted(r["model"] for r in json.loads(result.stdout)["reports"]) == ["demo-isqrt@demo-isqrt",
                                                                                 "demo-isqrt@own"]


def test_a_run_evaluated_under_another_name_says_it_takes_that_name(demo_val, tmp_path):
    """helper-247: the same weights and settings under a second name reuse the stored run, whose
    label became that name without a word (`report --models` of the first then found nothing)."""
    import yaml

    from robustbench_gcp.config import default_config_path

    config = yaml.safe_load(default_config_path().read_text())
    config["models"]["demo-gap-copy"] = config["models"]["demo-gap"]  # one file, two names
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    store = tmp_path / "s.db"
    common = ["--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1", "--data", str(demo_val),
              "--class-order", "sorted", "--store", str(store), "--workers", "0", "--limit", "6",
              "--config", str(tmp_path / "cfg.yaml")]
    first = CliRunner().invoke(main, ["eval", "-m", "demo-gap", *common])
    assert first.exit_code == 0, first.output
    assert "the store holds a run" not in first.stderr
    again = CliRunner().invoke(main, ["eval", "-m", "demo-gap-copy", *common])
    assert again.exit_code == 0, again.output
    note = ("the store holds a run of these weights and settings as demo-gap: its results are reused, and "
            "reports show it as demo-gap-copy from now on (`report --models demo-gap-copy`; a run takes the "
            "name it is evaluated under); to keep both names apart, give another --store")
    assert f"demo-gap-copy: {note}" in " ".join(again.stderr.split()), again.stderr
    assert [r["model"] for r in stored_reports(store)] == ["demo-gap-copy"]
    assert not evaluate("demo-gap", name="demo-gap-copy", data=str(demo_val), class_order="sorted",
                        store=str(store), workers=0, limit=6, suite="imagenet-c", corruptions="fog",
                        severities=[1]).notes.count(note)
    # one command under both names: the first labels the run, once (each relabelled it in turn, and
    # said both, every time the command ran: helper-249)
    both = ["compare", "-m", "demo-gap", "-m", "demo-gap-copy", *common, "--format", "json"]
    for time in range(2):
        compared = CliRunner().invoke(main, both)
        assert compared.exit_code == 0, compared.output
        assert " ".join(compared.stderr.split()).count("the store holds a run") == 1 - time, compared.stderr
        assert [r["model"] for r in stored_reports(store)] == ["demo-gap"]
