"""A stored baseline run normalizes the protocol's way only on the same images and seed: then
comparisons resample it with those images (its figures are sample means too); otherwise reports
say so, and its figures stay fixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import robustbench_gcp
from robustbench_gcp.cli import main
from robustbench_gcp.store import Store

SELECTION = ("--perturbations", "translate,rotate,brightness")


def cli(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result


def p_args(demo_val, store, limit, *extra, selection=SELECTION):
    return ["--data", demo_val, "--class-order", "sorted", "--store", store, "--limit", limit,
            "--workers", 0, "--format", "json", *selection, *extra]


def other_images(notes):
    return [n for n in notes if n.startswith(("baseline 'gapbase' was evaluated on",
                                              "baseline 'gapbase' was evaluated with"))]


@pytest.fixture(scope="module")
def p_store(tmp_path_factory):
    """One store for the comparisons of :func:`compare_p`: each computes only the perturbations the
    ones before it did not (the same cells, computed three times, took a minute and a half)."""
    return tmp_path_factory.mktemp("imagenet-p") / "s.db"


def compare_p(demo_val, store, perturbations):
    """demo-gap stored as baseline 'gapbase' on 20 images, and compared with demo-isqrt: the
    comparison, and both models' mFR."""
    common = p_args(demo_val, store, 20, selection=("--perturbations", perturbations))
    cli("baseline", "--model", "demo-gap", "--name", "gapbase", *common)
    out = cli("compare", "--model", "demo-gap", "--model", "demo-isqrt", "--suite", "imagenet-p",
              "--baseline", "gapbase", "--resamples", 200, *common)
    (comparison,) = out["comparisons"]
    gap, isqrt = (m["metrics"]["mFR"] for m in comparison["models"])
    # the baseline against itself: 100 in every resample, not an interval around 100
    assert gap["estimate"] == gap["low"] == gap["high"] == pytest.approx(100.0, abs=1e-9)
    return out, comparison, isqrt


def test_an_imagenet_p_baseline_on_the_same_images_is_resampled_with_them(demo_val, p_store):
    # the demo baseline flips on several videos
    out, comparison, isqrt = compare_p(demo_val, p_store, "brightness,scale")
    assert isqrt["low"] < isqrt["estimate"] < isqrt["high"]
    assert not any(other_images(r["notes"]) for r in out["reports"])
    assert not any("fixed in these intervals" in n for n in comparison["notes"])


def test_a_baseline_that_rarely_flips_stays_fixed_and_says_so(demo_val, p_store):
    """On 20 images the demo baseline flips on rotate in a few videos: resampled with them, many
    resamples would have no flip at all (FR 0 / 0 or infinite), so the interval is taken with its
    figures fixed, and the comparison says so (the baseline itself is 100 whatever the resample:
    it used to get an interval around 100 here)."""
    _, comparison, isqrt = compare_p(demo_val, p_store, "rotate")
    assert isqrt["low"] <= isqrt["estimate"] <= isqrt["high"]
    assert any(note.startswith("the baseline's figures are fixed in these intervals (conditional on "
                               "them): it has fewer than 8 images with an error or flip in fp rotate/1")
               for note in comparison["notes"]), comparison["notes"]


def test_an_imagenet_p_baseline_is_resampled_where_it_flips_often_and_fixed_where_it_rarely_does(
        demo_val, p_store):
    """Rotate's few flips held the baseline's brightness and scale figures fixed too."""
    _, comparison, isqrt = compare_p(demo_val, p_store, "brightness,scale,rotate")
    assert isqrt["low"] < isqrt["estimate"] < isqrt["high"]
    fixed = [n for n in comparison["notes"] if "fixed in these intervals" in n]
    assert fixed and all(n.startswith("the baseline's figures of fp rotate/1")
                         and n.endswith("(its others are)") for n in fixed), comparison["notes"]


def test_a_baseline_on_other_images_or_seed_is_noted_and_fixed(demo_val, tmp_path):
    store = tmp_path / "s.db"
    rotate = ("--perturbations", "rotate")  # one perturbation says it as three (a third of the time)
    cli("baseline", "--model", "demo-gap", "--name", "gapbase",
        *p_args(demo_val, store, 20, selection=rotate))
    report = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", "--baseline", "gapbase",
                 *p_args(demo_val, store, 10, selection=rotate))
    (note,) = other_images(report["notes"])
    assert note.startswith("baseline 'gapbase' was evaluated on other images (20, this run 10): its "
                           "figures are means over other images than this run's"), note
    assert report["metrics"]["mFR"] is not None  # still normalized, as asked, and said
    seeded = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", "--baseline", "gapbase",
                 "--seed", 3, *p_args(demo_val, store, 20, selection=rotate))
    (note,) = other_images(seeded["notes"])
    assert "evaluated with seed 0 (this run 3): the cells that draw random numbers" in note, note
    stored = cli("report", "--store", store, "--suite", "imagenet-p", "--baseline", "gapbase",
                 "--format", "json", "--no-intervals")
    noted = {(r["n_images"], r["seed"]): bool(other_images(r["notes"])) for r in stored["reports"]}
    assert noted == {(20, 0): False, (10, 0): True, (20, 3): True}


def test_a_baseline_on_another_device_type_keeps_its_figures_fixed():
    """The CPU's and CUDA's generators draw other numbers from one seed: no pairing of draws."""
    from types import SimpleNamespace

    import numpy as np

    from robustbench_gcp.suites.imagenet_p_summary import FlipBaseline
    from robustbench_gcp.suites.stored_baselines import normalizer_for_run

    identity = {"data": "images", "seed": 0, "device_type": "cpu"}
    stored = SimpleNamespace(key="base", identity=identity, n_images=10)
    base = FlipBaseline("b", {}, run=stored, samples={"fp rotate/1": np.zeros(10)})
    same, notes = normalizer_for_run(base, SimpleNamespace(key="cpu", identity=identity, n_images=10))
    assert same is base and notes == []
    cuda = SimpleNamespace(key="cuda", identity={**identity, "device_type": "cuda"}, n_images=10)
    fixed, notes = normalizer_for_run(base, cuda)
    assert fixed.samples is None and notes == [
        "baseline 'b' was evaluated on cpu (this run on cuda): their random numbers differ for the same "
        "seed, so comparisons keep its figures fixed; store a baseline with --device cuda to normalize "
        "on the same draws"]


def test_several_baselines_each_suite_takes_the_first_that_normalizes_it(demo_val, tmp_path):
    """--baseline alexnet,gapbase: ImageNet-C by AlexNet's published errors, ImageNet-P by the run
    stored as gapbase, in one report (one name normalized only one of them); each name must exist.
    ImageNet-C on a model of ImageNet's 1000 classes (AlexNet's errors normalize no other task)."""
    store = tmp_path / "s.db"
    cli("baseline", "--model", "demo-gap", "--name", "gapbase",
        *p_args(demo_val, store, 10, selection=("--perturbations", "rotate")))
    cli("eval", "--model", "resnet18-gap", "--random-weights", "--suite", "imagenet-c", "--corruptions",
        "fog", "--severities", 1, *p_args(demo_val, store, 10, selection=()))
    cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p",
        *p_args(demo_val, store, 10, selection=("--perturbations", "rotate")))

    def metrics(baseline):
        out = cli("report", "--store", store, "--models", "resnet18-gap,demo-isqrt", "--baseline", baseline,
                  "--format", "json", "--no-intervals")
        return {r["kind"]: r["metrics"] for r in out["reports"]}

    both = metrics("alexnet,gapbase")
    assert both["imagenet-c"]["mCE"] is not None and both["imagenet-c"]["baseline"] == "alexnet"
    assert both["imagenet-p"]["mFR"] is not None and both["imagenet-p"]["baseline"] == "gapbase"
    assert metrics("gapbase,alexnet") == both  # the first name that normalizes each suite
    assert metrics("gapbase")["imagenet-c"]["mCE"] is None
    assert metrics("alexnet")["imagenet-p"]["mFR"] is None
    wrong = cli("report", "--store", store, "--baseline", "alexnet,gapbas", code=2)
    assert "unknown baseline 'gapbas'" in wrong.output


def test_a_baseline_with_random_weights_says_so_in_every_report_it_normalizes(demo_val, tmp_path):
    """A --random-weights baseline normalized other runs' mFR with no word of it (only its own
    report said its weights were random)."""
    store = tmp_path / "s.db"
    rare = ("--perturbations", "brightness")
    cli("baseline", "--model", "demo-gap", "--name", "randbase", "--random-weights",
        *p_args(demo_val, store, 10, selection=rare))
    cli("baseline", "--model", "demo-gap", "--name", "gapbase", *p_args(demo_val, store, 10, selection=rare))
    said = ("baseline 'randbase' has seeded random weights (--random-weights, seed 0): figures normalized "
            "by it are a pipeline check, not a result")
    for name, expected in (("randbase", True), ("gapbase", False)):
        report = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", "--baseline", name,
                     *p_args(demo_val, store, 10, selection=rare))
        assert (said in report["notes"]) is expected, report["notes"]
    stored = cli("report", "--store", store, "--suite", "imagenet-p", "--baseline", "randbase",
                 "--models", "demo-isqrt", "--format", "json", "--no-intervals")
    (report,) = stored["reports"]
    assert said in report["notes"]


def test_a_stored_imagenet_c_baseline_gives_ce_and_relative_ce_from_its_own_clean_error(demo_val, tmp_path):
    """Relative CE divides by the baseline's corrupted minus its own clean error: its stored clean cell
    left unread, relative CE and relative mCE came out empty and no test saw it (the small datasets'
    baseline never errs more corrupted than clean)."""
    store = tmp_path / "s.db"
    selection = ("--suite", "imagenet-c", "--corruptions", "contrast,fog", "--severities", "4,5")
    base = cli("baseline", "--model", "demo-gap", "--name", "dg",
               *p_args(demo_val, store, 20, selection=selection))
    ours = cli("eval", "--model", "demo-isqrt", "--baseline", "dg",
               *p_args(demo_val, store, 20, selection=selection))
    theirs = {(c["corruption"], c["severity"]): c["top1_error"] for c in base["cells"]}
    mine = {(c["corruption"], c["severity"]): c["top1_error"] for c in ours["cells"]}
    clean_theirs, clean_mine = base["clean"]["top1_error"], ours["clean"]["top1_error"]
    checked = 0
    for entry in ours["per_corruption"]:
        c = entry["corruption"]
        e, b = mine[c, 4] + mine[c, 5], theirs[c, 4] + theirs[c, 5]
        assert entry["CE"] == pytest.approx(100 * e / b)
        if b - 2 * clean_theirs > 0:
            assert entry["relative_CE"] == pytest.approx(100 * (e - 2 * clean_mine) / (b - 2 * clean_theirs))
            checked += 1
    assert checked and ours["metrics"]["relative_mCE"] is not None


def test_a_stored_baselines_unfinished_cell_normalizes_nothing(demo_val, tmp_path):
    """A baseline run whose contrast cell lacks a shard (extended, then stopped mid-way) normalizes
    fog but not contrast: its error over the finished shards alone would divide contrast's CE."""
    import sqlite3

    store = tmp_path / "s.db"
    selection = ("--suite", "imagenet-c", "--corruptions", "contrast,fog", "--severities", "5",
                 "--shard-size", "5")
    cli("baseline", "--model", "demo-gap", "--name", "dg", *p_args(demo_val, store, 20, selection=selection))
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM shards WHERE shard = 3 AND cell_id IN (SELECT id FROM cells WHERE "
                   "kind = 'imagenet-c' AND name = 'contrast')")
    ours = cli("eval", "--model", "demo-isqrt", "--baseline", "dg",
               *p_args(demo_val, store, 20, selection=selection))
    ce = {e["corruption"]: e["CE"] for e in ours["per_corruption"]}
    assert ce["contrast"] is None and ce["fog"] is not None, ce
    assert any("dg" in note and "contrast" in note for note in ours["notes"]), ours["notes"]


def test_a_baseline_without_a_severity_the_run_has_leaves_that_corruptions_ce_empty(demo_val, tmp_path):
    """A stored baseline of fog at severity 1 only, for a run of severities 1 and 2: fog's CE is
    left empty and said so (a table row with NaN at severity 2 made eval's JSON a traceback), and
    the baseline is not said to normalize CE."""
    store = tmp_path / "s.db"
    common = ("--suite", "imagenet-c", "--corruptions", "fog")
    cli("baseline", "--model", "demo-gap", "--name", "b",
        *p_args(demo_val, store, 10, "--severities", 1, selection=common))
    out = cli("eval", "--model", "demo-isqrt", "--baseline", "b",
              *p_args(demo_val, store, 10, "--severities", "1,2", selection=common))
    (fog,) = out["per_corruption"]
    assert fog["CE"] is None and out["metrics"]["mCE"] is None
    assert any(note.startswith("CE left empty for fog: the stored baseline 'b' has no complete cells made "
                               "as this run's of fog/2") for note in out["notes"]), out["notes"]
    # it said "CE is normalized by the stored baseline 'b'" all the same (helper-231)
    assert not any("normalized by the stored baseline" in note for note in out["notes"]), out["notes"]
    said = ("the stored baseline 'b' normalizes none of this run's corruptions (why below): the mean "
            "corruption error and accuracy are unnormalized")
    assert any(said in note for note in out["notes"]), out["notes"]


def test_a_baseline_cell_is_resampled_from_min_events_images_on_with_its_clean_row():
    """MIN_EVENTS (8) images with an error or flip are enough to resample a baseline cell with the
    run's images ("at least", 7 are not), and its clean error is resampled with them where it is
    stored (relative CE's intervals then vary it too)."""
    import numpy as np

    from robustbench_gcp.suites.stored_baselines import MIN_EVENTS, add_joint_rows

    assert MIN_EVENTS == 8
    ones, notes = [np.ones(20)], []
    eight = {"fog/1": np.r_[np.ones(8), np.zeros(12)], "clean": np.r_[np.ones(9), np.zeros(11)]}
    rows = ["fog/1"]
    assert add_joint_rows(rows, list(ones), eight, ["fog/1"], optional=["clean"], notes=notes) == {"fog/1",
                                                                                                 "clean"}
    assert rows == ["fog/1", "base fog/1", "base clean"] and notes == []
    seven = {"fog/1": np.r_[np.ones(7), np.zeros(13)]}
    assert add_joint_rows(["fog/1"], list(ones), seven, ["fog/1"], notes=notes) == set()
    assert notes and "fewer than 8 images with an error or flip in fog/1" in notes[0]


def test_a_denominator_of_several_cells_is_resampled_where_their_sum_has_enough_images():
    """ImageNet-C's CE divides by a corruption's errors summed over its severities: 3 errors at
    severity 1 and 6 at 2, on other images, are 9 images a resample rarely misses all of (fog/1 alone
    held the whole baseline fixed); a corruption short of them stays fixed alone, and says so."""
    import numpy as np

    from robustbench_gcp.suites.stored_baselines import add_joint_rows

    def errs(*images):
        return np.isin(np.arange(20), images).astype(float)

    samples = {"fog/1": errs(0, 1, 2), "fog/2": errs(*range(3, 9)), "snow/1": errs(0, 1, 2, 3, 4),
               "snow/2": errs(0, 1, 2, 3, 4), "clean": errs(0)}
    names, notes = ["fog/1", "fog/2", "snow/1", "snow/2"], []
    rows, values = list(names), [np.zeros(20)] * 4
    joint = add_joint_rows(rows, values, samples, names, optional=["clean"], notes=notes,
                           denominators={"fog": names[:2], "snow": names[2:]})
    assert joint == {"fog/1", "fog/2", "clean"} and rows[4:] == ["base fog/1", "base fog/2", "base clean"]
    assert notes == ["the baseline's figures of snow are fixed in these intervals (conditional on them): it "
                     "has fewer than 8 images with an error or flip in each, too few to resample them with "
                     "the images (its others are)"]
    assert add_joint_rows(list(names), [np.zeros(20)] * 4, samples, names, denominators={"snow": names[2:]},
                          notes=notes) == set() and notes[-1].startswith("the baseline's figures are fixed")


def test_an_imagenet_c_comparison_resamples_the_ratio_of_each_corruption_to_the_baseline(demo_val, tmp_path):
    """The mCE interval, recomputed from the stored per-image errors on the comparison's resamples: a
    corruption's CE is the ratio of the resampled sums of errors over its severities; one where the
    baseline errs on fewer than 8 images divides by its stored errors."""
    import numpy as np

    from robustbench_gcp.stats import percentile_bounds, resample_weights
    from robustbench_gcp.store import Store

    store = tmp_path / "s.db"
    selection = ("--suite", "imagenet-c", "--corruptions", "gaussian_noise,zoom_blur",
                 "--severities", "1,3,5")
    cli("baseline", "--model", "demo-gap", "--name", "dg", *p_args(demo_val, store, 40, selection=selection))
    out = cli("compare", "--model", "demo-gap", "--model", "demo-isqrt", "--baseline", "dg",
              "--resamples", 300, *p_args(demo_val, store, 40, selection=selection))
    (comparison,) = out["comparisons"]
    with Store(store) as s:
        errors = {}  # (model, corruption) -> per image, its errors at each severity
        for run in s.runs():
            for cell_id, key in s.cells(run.id):
                if key.kind == "imagenet-c":
                    wrong = 1.0 - s.cell_result(cell_id, key, run.n_shards).correct
                    errors.setdefault((run.model, key.name), []).append(wrong)
    base = {c: np.array(errors["demo-gap", c]) for c in ("gaussian_noise", "zoom_blur")}
    isqrt = {c: np.array(errors["demo-isqrt", c]) for c in base}
    rare = [c for c in base if np.count_nonzero(base[c].sum(axis=0)) < 8]
    assert rare == ["zoom_blur"], {c: np.count_nonzero(b.sum(axis=0)) for c, b in base.items()}
    draws = []
    for weights in resample_weights(40, 300, seed=0):  # the comparison's draws (default seed)
        ces = []
        for c in base:  # the errors summed over the severities, per resample
            resampled = (weights @ isqrt[c].T).sum(axis=1)
            divisor = base[c].sum() if c in rare else (weights @ base[c].T).sum(axis=1)
            ces.append(100 * resampled / divisor)
        draws.append(sum(ces) / len(ces))
    low, high = percentile_bounds(np.concatenate(draws))
    mce = comparison["models"][1]["metrics"]["mCE"]
    assert (mce["low"], mce["high"]) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert [n for n in comparison["notes"] if "fixed in these intervals" in n] == [
        "the baseline's figures of zoom_blur are fixed in these intervals (conditional on them): it has "
        "fewer than 8 images with an error or flip in each, too few to resample them with the images (its "
        "others are)"]


def test_percentages_are_computed_in_the_order_of_the_reports_formulas():
    """CE is 100 (E / E_base) and relative CE 100 ((E - C) / (E_base - C_base)): the two orders differ
    in the last bit (100 (1 / 3) = 33.33333333333333, 100 * 1 / 3 = 33.333333333333336), and
    comparisons promise the reports' figures to the bit (relative CE was 100 n / d in comparisons
    after the reports' became 100 (n / d): 6,947 of 20,000 random error sets differed)."""
    from robustbench_gcp.metrics import ce, relative_ce
    from robustbench_gcp.suites.imagenet_c import _ce, _relative_ce
    from robustbench_gcp.suites.stored_baselines import percent_of

    assert percent_of(1.0, 3.0) == 100 * (1 / 3) != 100 * 1 / 3
    rng = np.random.default_rng(0)
    for _ in range(2000):
        errors, baseline = np.round(rng.uniform(0.2, 1, (2, 5)), 4).tolist()
        clean, baseline_clean = np.round(rng.uniform(0, 0.2, 2), 4).tolist()
        assert float(_ce(errors, baseline)) == ce(errors, baseline)
        assert float(_relative_ce(errors, clean, baseline, baseline_clean)) == relative_ce(
            errors, clean, baseline, baseline_clean)


def test_a_baseline_name_with_a_comma_is_refused_before_compute(demo_val, tmp_path):
    """`--name a,b` was stored, and `--baseline a,b` then asked for 'a' and 'b' ('unknown baseline
    'a'. Did you mean 'a,b'?')."""
    store = tmp_path / "s.db"
    result = cli("baseline", "--model", "demo-gap", "--name", "a,b", *p_args(demo_val, store, 20), code=2)
    assert "--name 'a,b' holds a comma, which separates the names of --baseline" in result.output
    assert not store.exists()
    spaced = cli("baseline", "--model", "demo-gap", "--name", " gb ", *p_args(demo_val, store, 20), code=2)
    assert "--name ' gb ' begins or ends with a space, which --baseline strips" in spaced.output
    assert not store.exists()


def test_the_same_baseline_command_again_writes_nothing(demo_val, tmp_path, monkeypatch):
    """Its run reused, the name already its: the name was written again, which a read-only store
    (a mounted results folder) refused ("cannot store the baseline")."""
    from robustbench_gcp.store import Store

    store = tmp_path / "s.db"
    args = ["baseline", "--model", "demo-gap", "--name", "gapbase", *p_args(demo_val, store, 10)]
    cli(*args)

    def no_write(*_, **__):
        raise AssertionError("the baseline's name was written again")

    monkeypatch.setattr(Store, "set_baseline", no_write)
    again = cli(*args)
    assert any("stored as baseline 'gapbase'" in note for note in again["notes"])
    # another run under the name is still refused (without --replace), read first
    other = cli("baseline", "--model", "demo-isqrt", "--name", "gapbase", *p_args(demo_val, store, 10),
                code=2)
    assert "baseline 'gapbase' is already stored in" in other.stderr


def test_a_stored_baseline_named_after_alexnet_says_why_it_normalizes_nothing(demo_val, tmp_path):
    """--baseline alexnet,gb (README's order) on a 10-class model, gb lacking fog/5: no mCE, and the
    only note was AlexNet's ("a run stored with gcp-robust baseline normalizes CE"), gb unnamed."""
    store = tmp_path / "s.db"
    imagenet_c = ("--suite", "imagenet-c", "--corruptions", "fog")
    cli("baseline", "--model", "demo-gap", "--name", "gb", *p_args(demo_val, store, 10, "--severities", "3",
                                                                     selection=imagenet_c))
    for names in ("gb", "alexnet,gb"):
        out = cli("eval", "--model", "demo-isqrt", "--baseline", names,
                  *p_args(demo_val, store, 10, "--severities", "3,5", selection=imagenet_c))
        assert any(n.startswith("CE left empty for fog: the stored baseline 'gb' has no complete cells made "
                                "as this run's of fog/5") for n in out["notes"]), (names, out["notes"])
        # the stored baseline named as what normalizes CE, not "unnormalized (... normalizes CE: --baseline
        # alexnet,NAME)" beside it; without one, that advice
        (said,) = [n for n in out["notes"] if n.startswith("ImageNet-C on a model of 10 classes")]
        # (not "CE is normalized by the stored baseline 'gb'": its CE of fog is empty, helper-231)
        assert said.endswith("normalize no error of another task; the stored baseline 'gb' normalizes none "
                             "of this run's corruptions (why below): the mean corruption error and accuracy "
                             "are unnormalized"), said
    out = cli("eval", "--model", "demo-isqrt", *p_args(demo_val, store, 10, "--severities", "3",
                                                        selection=imagenet_c))
    (said,) = [n for n in out["notes"] if n.startswith("ImageNet-C on a model of 10 classes")]
    assert said.endswith("; the mean corruption error and accuracy are unnormalized (a run stored with "
                         "`gcp-robust baseline` normalizes CE: --baseline alexnet,NAME)"), said


def test_a_baseline_normalizes_models_whose_frames_are_cut_at_another_centre(demo_val, tmp_path):
    """A model whose resize less crop is not a multiple of 4 (the demo's 73 / 64, Inception's
    342 / 299) marks its non-geometric cells "centred-crop"; a baseline whose is (64 / 56, AlexNet's
    256 / 224) does not: its figures of brightness were not found ("has no figures ..."), and
    there was no mFR nor mT5D. Its figures are its own at its own sizes, as rotate's are."""
    store = tmp_path / "s.db"
    common = p_args(demo_val, store, 4, "--difficulties", 1,
                    selection=("--perturbations", "brightness,rotate"))
    weights = Path(robustbench_gcp.__file__).parent / "resources" / "demo" / "demo-gap.pth"
    cli("baseline", "--model", "robustbench_gcp.models.demo_nets:demo_gap", "--checkpoint", weights,
        "--preprocess", "resize_size=64,input_size=56",  # (64 - 56) % 4 == 0
        "--name", "square", *common)
    report = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", "--baseline", "square", *common)
    assert report["metrics"]["mFR"] is not None and report["metrics"]["mT5D"] is not None, report["notes"]
    figures = {p["perturbation"]: p for p in report["perturbations"]}
    assert set(figures) == {"brightness", "rotate"}
    with Store(store, read_only=True) as s:
        (base,) = [r for r in s.runs() if r.model != "demo-isqrt"]
        variants = {key.name: json.loads(key.variant) for _, key in s.cells(base.id)
                    if key.kind == "imagenet-p"}
    assert "geometry" not in variants["brightness"]  # the baseline's own cells, unmarked


def test_imagenet_p_normalizes_a_model_by_a_baseline_of_its_own_classes_only(demo_val, tmp_path):
    """A 10-class model's flips were normalized by a 1000-class AlexNet's without a word (mFR
    18.64, helper-240): flips among 10 classes are another task. The cells now carry the model's
    classes, as ImageNet-C's, so a baseline of other classes normalizes none of them, and says why."""
    store = tmp_path / "s.db"
    common = p_args(demo_val, store, 3, "--difficulties", 1,
                    selection=("--perturbations", "brightness,rotate"))
    cli("baseline", "--model", "alexnet", "--random-weights", "--suite", "imagenet-p", *common)
    cli("baseline", "--model", "demo-gap", "--name", "gap", "--suite", "imagenet-p", *common)
    ten = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", *common)  # the default: alexnet
    assert ten["metrics"]["mFR"] is None and all(p["FR"] is None for p in ten["perturbations"])
    assert ten["metrics"]["baseline"] is None and ten["metrics"]["classes"] == 10  # it normalized nothing
    assert not [n for n in ten["notes"] if "pipeline check" in n], ten["notes"]  # (alexnet's random weights)
    (said,) = [n for n in ten["notes"] if n.startswith("FR left empty")]
    assert "baseline 'alexnet' holds brightness/1, rotate/1 of a model of ImageNet's 1000 classes (or one " \
           "stored before 0.7.30, whose cells did not name the model's classes), this run's are of a model " \
           "of 10 classes: flips among other classes are another task" in said, said
    own = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", "--baseline", "gap", *common)
    assert own["metrics"]["mFR"] is not None  # a baseline of the same 10 classes normalizes
    thousand = cli("eval", "--model", "alexnet", "--random-weights", "--suite", "imagenet-p", "--baseline",
                   "gap", *common)
    assert thousand["metrics"]["mFR"] is None
    assert any("baseline 'gap' holds brightness/1, rotate/1 of a model of 10 classes, this run's are of a "
               "model of ImageNet's 1000 classes (they name none)" in n
               for n in thousand["notes"]), thousand["notes"]
    with Store(store, read_only=True) as s:
        variants = {run.model: {json.loads(key.variant).get("classes") for _, key in s.cells(run.id)
                                if key.kind == "imagenet-p"} for run in s.runs()}
    assert variants == {"alexnet": {None}, "demo-gap": {10}, "demo-isqrt": {10}}
    # compared apart, as ImageNet-C's: no paired test of a 10-class model's flips against a 1000-class one's
    weights = Path(robustbench_gcp.__file__).parent / "resources" / "demo" / "demo-gap.pth"
    out = cli("compare", "--model", "alexnet", "--random-weights", "--model", f"demo-gap={weights}",
              "--suite", "imagenet-p", *common)
    assert sorted(c["reference"] for c in out["comparisons"]) == ["alexnet", "demo-gap"]
    assert [len(c["models"]) for c in out["comparisons"]] == [1, 1]  # (no deltas, no tests)
    # a baseline holding rotate from before its cells named their classes, brightness since: rotate
    # is "an earlier version", not "no figures" (helper-245)
    import sqlite3

    with sqlite3.connect(store) as db:
        (gap,) = db.execute("SELECT run_id FROM baselines WHERE name = 'gap'").fetchone()
        for cid, variant in db.execute("SELECT id, variant FROM cells WHERE run_id = ? AND name = 'rotate'",
                                       (gap,)).fetchall():
            fields = {k: v for k, v in json.loads(variant).items() if k != "classes"}
            db.execute("UPDATE cells SET variant = ? WHERE id = ?",
                       (json.dumps(fields, sort_keys=True, separators=(",", ":")), cid))
    mixed = cli("eval", "--model", "demo-isqrt", "--suite", "imagenet-p", "--baseline", "gap", *common)
    figures = {p["perturbation"]: p["FR"] for p in mixed["perturbations"]}
    assert figures["rotate"] is None and figures["brightness"] is not None
    assert any("baseline 'gap' holds rotate/1 as an earlier version of gcp-robust computed them" in n
               for n in mixed["notes"]), mixed["notes"]


def test_a_baseline_that_never_flips_normalizes_nothing_and_old_groups_join_the_marked_run():
    """A random-weights baseline that predicts one class never flips: it normalized no figure, yet its
    notes ("a pipeline check") were said (helper-245). And a 10-class run's unmarked cells of another
    source than its marked ones stayed a group of their own, normalized by a 1000-class baseline."""
    from robustbench_gcp.store import CellKey, CellResult
    from robustbench_gcp.suites import get_suite
    from robustbench_gcp.suites.imagenet_p_summary import FlipBaseline

    suite = get_suite("imagenet-p")
    assert not suite.normalizes(FlipBaseline("rw", {("rotate", 1): (0.0, 0.0, 3)}))
    assert suite.normalizes(FlipBaseline("rw", {("rotate", 1): (0.0, 0.5, 3)}))
    marked, old = '{"classes":10,"source":"torch"}', '{"source":"released"}'
    cell = CellResult(CellKey("imagenet-p", "rotate", "1", old), 3, {}, [0], True)
    assert suite.merged_groups({marked: [], old: [cell]}) == {marked: [cell]}
    assert suite.merged_groups({old: [cell]}) == {old: [cell]}  # a run of no marked cell: as it is


def test_a_baseline_of_a_model_of_other_classes_is_told_apart_from_one_made_another_way():
    """helper-253: a baseline's cells of a model of other classes were said to be made another way,
    with advice (--corrupted-dir, --preset, --backend) that cannot make them; and a corruption whose
    one severity alone differs is named by that cell."""
    from robustbench_gcp.store import CellKey, canonical_json
    from robustbench_gcp.suites.stored_baselines import _made_otherwise

    def key(name, level, **variant):
        return CellKey("imagenet-c", name, str(level), canonical_json({"source": "torch", **variant}))

    asked = [key("fog", 1, classes=10), key("fog", 2, classes=10), key("snow", 1, classes=10)]
    held = [key("fog", 1, classes=10), key("fog", 2, classes=10, preset="cifar"), key("snow", 1, classes=100)]
    found = _made_otherwise(held, asked)
    assert found["snow"] == ("classes", "100", "10", (1,))
    why, theirs, ours, levels = found["fog"]
    assert (why, levels) == ("made", (2,)) and "cifar parameters" in theirs and "cifar" not in ours
