"""The figures' layout: every model its own colour, legends beside the panels, whole titles."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

matplotlib = pytest.importorskip("matplotlib")


def _reports(n: int, corruptions=("fog",)):
    return [SimpleNamespace(model=f"model {i}", heading="imagenet-c (torch, JPEG round trip)",
                            sections={"clean": {"top1_error": 0.1},
                                      "cells": [{"corruption": c, "severity": s,
                                                 "top1_error": 0.1 + 0.02 * i * s}
                                                for c in corruptions for s in (1, 3)]})
            for i in range(n)]


def _drawn(monkeypatch):
    """The figures as saved: (figure facts read before it is closed, the PNG)."""
    from robustbench_gcp.reports import figures

    seen = []
    original = figures.save

    def save(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        panels = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
        legends = [legend.get_window_extent(renderer) for legend in fig.legends] + [
            ax.get_legend().get_window_extent(renderer) for ax in fig.axes if ax.get_legend()]
        colors = {tuple(matplotlib.colors.to_rgba(line.get_color()))
                  for ax in fig.axes for line in ax.get_lines()}
        colors |= {tuple(patch.get_facecolor()) for ax in fig.axes for patch in ax.patches}
        ys = [y for ax in fig.axes for line in ax.get_lines() for y in line.get_ydata()]
        seen.append(SimpleNamespace(panels=panels, legends=legends, colors=colors, ys=ys,
                                    ylims=[ax.get_ylim() for ax in fig.axes if ax.get_visible()],
                                    title=fig._suptitle.get_text() if fig._suptitle else None))
        return original(fig, path)

    monkeypatch.setattr(figures, "save", save)
    return seen


@pytest.mark.parametrize("n", [1, 12, 24])
def test_every_model_has_its_own_colour_and_the_legend_covers_no_panel(n, tmp_path, monkeypatch):
    """Colours repeated after 10 models (m10 drawn as m0), and the legend sat on the panels and the
    title; with one corruption the figure was narrower than its title, which was cut."""
    from robustbench_gcp.suites.charts import error_vs_severity

    seen = _drawn(monkeypatch)
    path = error_vs_severity(_reports(n), tmp_path / "severity.png")
    (figure,) = seen
    assert len(figure.colors) == n
    (legend,) = figure.legends
    assert all(legend.x0 >= panel.x1 for panel in figure.panels)  # beside them, covering nothing
    assert figure.title == "imagenet-c (torch, JPEG round trip): top-1 error against severity"
    with Image.open(path) as image:  # the canvas holds the whole title and legend
        assert image.size[0] >= legend.x1 and image.info["Axes"] == "1"


def test_bars_and_robust_accuracy_keep_their_legends_beside_the_panels(tmp_path, monkeypatch):
    from robustbench_gcp.reports import figures
    from robustbench_gcp.suites.adversarial import robust_accuracy

    seen = _drawn(monkeypatch)
    fig, ax = figures.pyplot().subplots()
    figures.grouped_bars(ax, ["fog", "snow"], {f"model {i}": [100 + i, 90 - i] for i in range(12)})
    figures.save(fig, tmp_path / "bars.png")
    attacks = [{"attack": a, "epsilon": e, "robust_accuracy": 0.9 - e, "norm": "linf"}
               for a in ("fgsm", "pgd-linf") for e in (1 / 255, 4 / 255)]
    reports = [SimpleNamespace(model=f"model {i}", heading="adversarial", sections={
        "clean": {"top1_error": 0.05}, "attacks": [{**a, "robust_accuracy": a["robust_accuracy"] - 0.02 * i}
                                                   for a in attacks]}) for i in range(3)]
    robust_accuracy(reports, tmp_path / "attacks.png")
    bars, lines = seen
    assert len(bars.colors) == 12 and len(lines.colors) == 3
    for figure in (bars, lines):
        (legend,) = figure.legends
        assert all(legend.x0 >= panel.x1 for panel in figure.panels)
    assert lines.title == "adversarial: robust accuracy against the attack budget"


def test_robust_accuracy_shows_every_point_of_every_panel(tmp_path, monkeypatch):
    """The shared y scale froze at the first panel's range (FGSM, 89.5-100.5): PGD's 81 % at 4/255,
    in the second panel, was drawn below the axes."""
    from robustbench_gcp.suites.adversarial import robust_accuracy

    seen = _drawn(monkeypatch)
    accuracy = {("fgsm", 1): 0.97, ("fgsm", 4): 0.90, ("pgd-linf", 1): 0.97, ("pgd-linf", 4): 0.81}
    report = SimpleNamespace(model="demo-gap", heading="adversarial", sections={
        "clean": {"top1_error": 0.0},
        "attacks": [{"attack": a, "epsilon": e / 255, "robust_accuracy": v, "norm": "linf"}
                    for (a, e), v in accuracy.items()]})
    robust_accuracy([report], tmp_path / "attacks.png")
    (figure,) = seen
    assert min(figure.ys) == pytest.approx(81.0) and max(figure.ys) == 100.0
    for low, high in figure.ylims:
        assert low < 81.0 and high > 100.0


def test_error_against_severity_has_wilson_bars_and_no_line_across_skipped_severities(tmp_path, monkeypatch):
    """A line went straight from clean to severity 3 when 1 and 2 were not run, and no point said
    how many images it stood on."""
    from robustbench_gcp.reports import figures
    from robustbench_gcp.stats import wilson
    from robustbench_gcp.suites.charts import error_vs_severity

    drawn = []
    original = figures.save

    def save(fig, path):
        (ax,) = [ax for ax in fig.axes if ax.get_visible()]
        drawn.append((ax.get_lines()[0].get_xydata(), ax.containers[0]))
        return original(fig, path)

    monkeypatch.setattr(figures, "save", save)
    report, other = (SimpleNamespace(model=name, heading="imagenet-c", sections={
        "clean": {"n": 40, "top1_error": 0.25},
        "cells": [{"corruption": "fog", "severity": s, "n": 40, "top1_error": e}
                  for s, e in ((1, 0.3), (3, 0.5), (4, 0.0)) if s in severities]})
        for name, severities in (("m", (3, 4)), ("other", (1, 3, 4))))
    error_vs_severity([report, other], tmp_path / "severity.png")
    ((points, bars),) = drawn
    xs, ys = points[:, 0], points[:, 1]
    shift = xs[0]  # the first of two models' points, a little left of each severity
    assert list(xs - shift) == [0, 0.5, 3, 4] and np.isnan(ys[1])  # the other has 1: not joined across it
    assert list(ys[[0, 2, 3]]) == [25.0, 50.0, 0.0]
    (segments,) = bars.lines[2]  # the vertical bars: one per point drawn, at the Wilson bounds
    ends = [tuple(s[:, 1]) for s in segments.get_segments() if len(s)]  # the gap has none
    for value, (low, high) in zip((0.25, 0.5, 0.0), ends):
        iv = wilson(np.r_[np.ones(round(40 * value)), np.zeros(40 - round(40 * value))])
        assert (low, high) == pytest.approx((100 * iv.low, 100 * iv.high))
    assert ends[2][0] == 0.0 and ends[2][1] > 5  # 0 of 40 wrong: up to 8.8 %, not a bare point


def test_severities_no_model_has_are_joined_over(tmp_path, monkeypatch):
    """A run of severities 1, 3 and 5 drew lone points: the line broke at every severity skipped,
    though no model had it."""
    from robustbench_gcp.reports import figures
    from robustbench_gcp.suites.charts import error_vs_severity

    seen = []
    original = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path: (
        seen.append([c.lines[0].get_ydata() for c in fig.axes[0].containers]), original(fig, path))[1])
    error_vs_severity(_reports(2), tmp_path / "severity.png")  # clean, 1 and 3 each
    (lines,) = seen
    assert len(lines) == 2 and all(len(ys) == 3 and not np.isnan(ys.astype(float)).any() for ys in lines)


def test_the_models_bars_stand_side_by_side_about_each_severity(tmp_path, monkeypatch):
    from robustbench_gcp.reports import figures
    from robustbench_gcp.suites.charts import error_vs_severity

    seen = []
    original = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path: (
        seen.append([c.lines[0].get_xdata() for c in fig.axes[0].containers]), original(fig, path))[1])
    error_vs_severity(_reports(3), tmp_path / "severity.png")
    (lines,) = seen
    shifts = [np.asarray(xs) - np.array([0, 1, 3]) for xs in lines]  # clean, 1, 3 (no model has 2)
    assert all(np.allclose(s, s[0]) for s in shifts)  # one shift per model
    assert [s[0] for s in shifts] == pytest.approx([-0.08, 0.0, 0.08])  # centred on each severity


def test_grouped_bars_stand_side_by_side_centred_on_each_category():
    """Three models' bars: each category's three bars touch, each is 0.8 / 3 wide, and together they
    are centred on the category's tick."""
    from robustbench_gcp.reports.figures import grouped_bars, pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    try:
        grouped_bars(ax, ["fog", "snow"], {"a": [1.0, 2.0], "b": [1.5, None], "c": [0.5, 1.0]})
        width = 0.8 / 3
        centres = sorted(patch.get_x() + patch.get_width() / 2 for patch in ax.patches)
        assert all(patch.get_width() == pytest.approx(width) for patch in ax.patches)
        assert centres == pytest.approx([-width, 0, width, 1 - width, 1, 1 + width])
        assert list(ax.get_xticks()) == [0, 1]
    finally:
        plt.close(fig)


def test_labels_from_file_names_are_drawn_as_written_and_selected_whole(demo_val, tmp_path, monkeypatch):
    """compare --checkpoints labels a model by its file name: a "$" in it was read as mathtext (a
    traceback at the figure, or "net$\\alpha$" drawn as "netα"), a leading "_" left the model out of
    the CE bars' legend, and `report --models` split a label holding a comma in two."""
    import json
    import shutil
    from importlib import resources

    from click.testing import CliRunner

    from robustbench_gcp.cli import main
    from robustbench_gcp.reports import figures

    legends, original = {}, figures.save

    def save(fig, path):
        texts = [legend.get_texts() for legend in fig.legends] + [
            ax.get_legend().get_texts() for ax in fig.axes if ax.get_legend()]
        legends[path.name] = [t.get_text() for group in texts for t in group]
        return original(fig, path)

    monkeypatch.setattr(figures, "save", save)
    label = "_net$\\foo{$, v2"
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    demo = resources.files("robustbench_gcp") / "resources" / "demo"
    shutil.copyfile(demo / "demo-gap.pth", folder / f"{label}.pth")
    shutil.copyfile(demo / "demo-isqrt.pth", folder / "other.pth")
    store = tmp_path / "s.db"
    common = ["--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1", "--limit", "8",
              "--data", str(demo_val), "--class-order", "sorted", "--store", str(store), "--workers", "0"]

    def cli(*args):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result

    cli("baseline", "--model", "demo-gap", "--name", "base", *common)
    cli("compare", "--checkpoints", folder, "--baseline", "base", "--format", "json", *common)
    cli("report", "--store", store, "--baseline", "base", "--suite", "imagenet-c", "--plot",
        tmp_path / "figs")
    bars = legends["imagenet-c_ce_per_corruption.png"]
    assert any(text.startswith(f"{label} (mCE ") for text in bars), bars
    assert label in legends["imagenet-c_error_vs_severity.png"]
    for name in ("imagenet-c_ce_per_corruption.png", "imagenet-c_error_vs_severity.png"):
        with Image.open(tmp_path / "figs" / name) as image:
            assert image.info["Axes"] == "1"
    out = json.loads(cli("report", "--store", store, "--models", label, "--suite", "imagenet-c",
                         "--no-intervals", "--format", "json").stdout)
    assert [r["model"] for r in out["reports"]] == [label]
    both = json.loads(cli("report", "--store", store, "--models", "other,", "--models", label, "--suite",
                          "imagenet-c", "--no-intervals", "--format", "json").stdout)
    assert sorted(r["model"] for r in both["reports"]) == [label, "other"]


def test_a_missing_bar_is_marked_and_a_zero_is_not():
    """A missing CE (None) and a CE of 0 both drew no bar: they looked alike. The missing one is
    marked "n/a" where its bar would stand, in its model's colour."""
    from robustbench_gcp.reports.figures import grouped_bars, model_color, pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    try:
        grouped_bars(ax, ["fog", "snow"], {"a": [0.0, 2.0], "b": [1.5, None]})
        zero, mark = ax.texts  # the 0 is marked "0" (and by a line at 0), the missing one "n/a"
        assert zero.get_text() == "0" and zero.get_position() == pytest.approx((0 - 0.2, 0))
        assert mark.get_text() == "n/a" and mark.get_position() == pytest.approx((1 + 0.2, 0))
        assert matplotlib.colors.same_color(mark.get_color(), model_color(1, 2))
    finally:
        plt.close(fig)


def test_a_ce_figure_that_nothing_normalizes_is_said_not_drawn(demo_val, tmp_path):
    """The demo models' 10-class ImageNet-C errors without a stored baseline have no CE: the CE
    figure was left out without a word. `--plot` says why."""
    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    store = tmp_path / "s.db"
    common = ["--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1", "--limit", "8",
              "--data", str(demo_val), "--class-order", "sorted", "--store", str(store), "--workers", "0"]
    for model in ("demo-gap", "demo-isqrt"):
        assert CliRunner().invoke(main, ["eval", "-m", model, *common]).exit_code == 0
    shown = CliRunner().invoke(main, ["report", "--store", str(store), "--plot", str(tmp_path / "figs")])
    assert shown.exit_code == 0, shown.output
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["imagenet-c_error_vs_severity.png"]
    said = [line for line in shown.stderr.splitlines() if line.startswith("--plot: ")]
    assert said == ["--plot: imagenet-c (torch, JPEG round trip, 10 classes): "
                    "imagenet-c_ce_per_corruption.png (CE per corruption) not drawn, as no model has a CE "
                    "here (the notes say why); the error-against-severity figure shows the errors"]
    # said too where another figure cannot be written
    (tmp_path / "other" / "imagenet-c_error_vs_severity.png").mkdir(parents=True)
    failed = CliRunner().invoke(main, ["report", "--store", str(store), "--plot", str(tmp_path / "other")])
    assert failed.exit_code != 0 and said[0] in failed.stderr.splitlines(), failed.stderr


def test_a_model_without_a_ce_beside_one_with_is_named_so_in_the_ce_figure(tmp_path, monkeypatch):
    """A model whose CE is missing was left out of the CE figure (its legend too), unsaid."""
    from robustbench_gcp.reports import figures
    from robustbench_gcp.suites.charts import ce_bars

    legends, original = [], figures.save

    def save(fig, path):
        legends.extend(t.get_text() for legend in fig.legends for t in legend.get_texts())
        marks.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        return original(fig, path)

    marks: list[str] = []
    monkeypatch.setattr(figures, "save", save)
    reports = [SimpleNamespace(model=name, heading="imagenet-c", sections={
        "per_corruption": [{"corruption": c, "CE": ce} for c in ("fog", "snow")],
        "metrics": {"mCE": ce, "corruptions": ["fog", "snow"] if ce else [], "baseline": "base"}})
        for name, ce in (("a", 80.0), ("b", None))]
    ce_bars(reports, tmp_path / "ce.png")
    assert legends == ["a (mCE 80.0)", "b (no CE)"] and marks == ["n/a", "n/a"]


def _layout(monkeypatch):
    """Each saved figure's suptitle box, its visible panels' boxes and their titles' boxes, its
    figure legends (texts and title) and whether any panel has a legend of its own."""
    from robustbench_gcp.reports import figures

    seen, original = [], figures.save

    def save(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        axes = [ax for ax in fig.axes if ax.get_visible()]
        seen.append(SimpleNamespace(
            title=fig._suptitle.get_window_extent(renderer), text=fig._suptitle.get_text(),
            panels=[ax.get_window_extent(renderer) for ax in axes],
            panel_titles=[ax.title.get_window_extent(renderer) for ax in axes if ax.get_title()],
            legends=[[t.get_text() for t in legend.get_texts()] for legend in fig.legends],
            legend_titles=[legend.get_title().get_text() for legend in fig.legends],
            legend_boxes=[legend.get_window_extent(renderer) for legend in fig.legends],
            panel_legends=sum(ax.get_legend() is not None for ax in fig.axes), axes=axes,
            width=fig.get_figwidth()))
        return original(fig, path)

    monkeypatch.setattr(figures, "save", save)
    return seen


def test_landscape_figures_have_one_legend_beside_the_panels_and_a_title_above_them(
        demo_val, tmp_path, monkeypatch):
    """Each panel drew its own legend over its lines and bands (with long names over the next
    panel), and the figure's title ran over the first row's panel titles; it named no run."""
    from robustbench_gcp import evaluate
    from robustbench_gcp.suites.landscape import loss_vs_eta

    seen = _layout(monkeypatch)
    kw = dict(suite="landscape", data=str(demo_val), class_order="sorted", workers=0, limit=4, etas="0:0.2:3",
              landscape_at="pixels", store=str(tmp_path / "s.db"))
    reports = [evaluate(model, **kw) for model in ("demo-gap", "demo-isqrt")]
    for report, label in zip(reports, ("a model with a rather long name of many words", "_b")):
        report.model = label
    loss_vs_eta(reports, tmp_path / "loss.png")
    (figure,) = seen
    assert figure.panel_legends == 0
    assert figure.legends == [["a model with a rather long name of many words", "_b"]]
    (legend,) = figure.legend_boxes
    assert all(legend.x0 >= panel.x1 for panel in figure.panels)
    assert all(figure.title.y0 >= box.y1 for box in figure.panel_titles)
    assert figure.text.startswith(f"{reports[0].heading}: loss along the gradient")


def test_a_title_stays_above_several_rows_of_panels(tmp_path, monkeypatch):
    from robustbench_gcp.suites.charts import error_vs_severity

    seen = _layout(monkeypatch)
    error_vs_severity(_reports(3, corruptions=("fog", "snow", "frost", "contrast", "pixelate", "glass_blur",
                                               "zoom_blur", "motion_blur", "elastic_transform", "brightness",
                                               "saturate")), tmp_path / "severity.png")
    (figure,) = seen
    assert len(figure.panels) == 11 and all(figure.title.y0 >= box.y1 for box in figure.panel_titles)


def test_bars_keep_a_last_missing_value_and_a_zero_in_view():
    """A last category whose bars were all missing had its "n/a" marks outside the axes (the x range
    came from the bars drawn); a value of 0 had no mark and looked missing."""
    from robustbench_gcp.reports.figures import grouped_bars, model_color, pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    try:
        grouped_bars(ax, ["fog", "snow", "frost"], {"a": [1.0, 0.0, None], "b": [1.5, 2.0, None]})
        low, high = ax.get_xlim()
        assert [mark.get_text() for mark in ax.texts] == ["0", "n/a", "n/a"]
        assert all(low < mark.get_position()[0] < high for mark in ax.texts)
        (zero,) = ax.get_lines()  # the 0 of a at snow: a line in a's colour at 0 over its bar's width
        assert list(zero.get_ydata()) == [0, 0] and matplotlib.colors.same_color(zero.get_color(),
                                                                                 model_color(0, 2))
        assert not zero.get_clip_on()  # whole: the axes cut its lower half off
        assert zero.get_xdata()[0] < 1 - 0.2 < zero.get_xdata()[1]
    finally:
        plt.close(fig)


def test_flip_probabilities_of_every_difficulty_are_drawn(tmp_path, monkeypatch):
    """Only the smallest difficulty was drawn: a model measured at difficulty 2 alone was all n/a."""
    from robustbench_gcp.suites.charts import flip_probability

    seen = _layout(monkeypatch)
    reports = [SimpleNamespace(model=name, heading="imagenet-p", sections={"perturbations": [
        {"perturbation": p, "difficulty": d, "flip_probability": fp}
        for p, d, fp in entries]}) for name, entries in (
        ("a", [("scale", 1, 0.05), ("scale", 2, 0.07), ("rotate", 1, 0.02)]),
        ("b", [("scale", 2, 0.12), ("rotate", 2, 0.0)]))]
    flip_probability(reports, tmp_path / "fp.png")
    (figure,) = seen
    assert [ax.get_title() for ax in figure.axes] == ["difficulty 1", "difficulty 2"]
    heights = [[round(patch.get_height(), 6) for patch in ax.patches] for ax in figure.axes]
    assert np.array_equal(heights[1], [7.0, np.nan, 12.0, 0.0], equal_nan=True)  # a has no rotate at 2
    assert [t.get_text() for t in figure.axes[0].texts] == ["n/a"] * 2  # b has neither at 1
    assert figure.text == "imagenet-p: flip probability per perturbation"


def test_wide_bar_figures_wrap_into_rows(tmp_path, monkeypatch):
    """15 corruptions of 8 models made a CE figure 48 inches wide and 4.5 high."""
    from robustbench_gcp.reports.figures import BARS_MAX_WIDTH
    from robustbench_gcp.suites.charts import ce_bars

    seen = _layout(monkeypatch)
    corruptions = [f"corruption_{k}" for k in range(15)]
    reports = [SimpleNamespace(model=f"model {i}", heading="imagenet-c", sections={
        "per_corruption": [{"corruption": c, "CE": 90.0 + i + k} for k, c in enumerate(corruptions)],
        "metrics": {"mCE": 97.0 + i, "corruptions": corruptions, "baseline": "alexnet"}}) for i in range(8)]
    ce_bars(reports, tmp_path / "ce.png")
    (figure,) = seen
    assert len(figure.axes) > 1 and figure.width <= BARS_MAX_WIDTH
    drawn = sorted(round(patch.get_height(), 6) for ax in figure.axes for patch in ax.patches)
    assert drawn == sorted(90.0 + i + k for i in range(8) for k in range(15))
    assert [len(labels) for labels in figure.legends] == [8]


def test_robust_accuracy_of_many_attacks_wraps_into_rows(tmp_path, monkeypatch):
    """Seven attacks drew seven panels in one row, a figure 26 inches wide; each row's first panel
    names the axis, and every panel keeps its own points."""
    from robustbench_gcp.suites.adversarial import robust_accuracy

    seen = _layout(monkeypatch)
    attacks = ["fgsm", "pgd-linf", "pgd-l2", "deepfool-linf", "deepfool-l2", "cw-l2", "boundary"]
    report = SimpleNamespace(model="m", heading="adversarial", sections={
        "clean": {"top1_error": 0.0},
        "attacks": [{"attack": a, "epsilon": 4 / 255, "robust_accuracy": 0.5 + 0.05 * k, "norm": "linf"}
                    for k, a in enumerate(attacks)]})
    robust_accuracy([report], tmp_path / "attacks.png")
    (figure,) = seen
    assert len(figure.axes) == 7 and figure.width <= 16
    rows = sorted({round(panel.y0) for panel in figure.panels}, reverse=True)
    assert len(rows) == 2
    named = "robust accuracy (%)"
    assert [ax.get_ylabel() for ax in figure.axes] == [named, "", "", "", named, "", ""]
    assert [ax.get_lines()[0].get_ydata()[-1] for ax in figure.axes] == pytest.approx(
        [50 + 5 * k for k in range(7)])


def test_a_model_with_ces_but_no_mce_says_which_ce_it_lacks(tmp_path, monkeypatch):
    from robustbench_gcp.suites.charts import ce_bars

    seen = _layout(monkeypatch)
    reports = [SimpleNamespace(model="a", heading="imagenet-c", sections={
        "per_corruption": [{"corruption": "fog", "CE": 80.0}, {"corruption": "jpeg_compression", "CE": None}],
        "metrics": {"mCE": None, "corruptions": ["fog", "jpeg_compression"], "baseline": "alexnet"}})]
    ce_bars(reports, tmp_path / "ce.png")
    assert seen[0].legends == [["a (no mCE: no CE for jpeg compression)"]]


def test_models_lacking_the_same_ce_say_it_once(tmp_path, monkeypatch):
    """A baseline without jpeg_compression's error leaves every model without its CE: each label
    repeated "(no mCE: no CE for jpeg compression)"; the legend's title says it once."""
    from robustbench_gcp.suites.charts import ce_bars

    seen = _layout(monkeypatch)
    reports = [SimpleNamespace(model=m, heading="imagenet-c", sections={
        "per_corruption": [{"corruption": "fog", "CE": 80.0 + k},
                           {"corruption": "jpeg_compression", "CE": None}],
        "metrics": {"mCE": None, "corruptions": ["fog", "jpeg_compression"], "baseline": "alexnet"}})
        for k, m in enumerate("abc")]
    ce_bars(reports, tmp_path / "ce.png")
    assert seen[0].legends == [["a", "b", "c"]]
    assert seen[0].legend_titles == ["model (no mCE: no CE for jpeg compression)"]
    reports[2].sections["per_corruption"][0]["CE"] = None  # c lacks another: each says its own
    ce_bars(reports, tmp_path / "ce.png")
    lacks = "(no mCE: no CE for jpeg compression)"
    assert seen[1].legends == [[f"a {lacks}", f"b {lacks}", "c (no CE)"]]
    assert seen[1].legend_titles == ["model"]
    for r in reports:  # no benchmark corruption, a CE of an extra one missing: no mCE for the first
        r.sections["per_corruption"] = [{"corruption": "speckle_noise", "CE": 90.0},
                                        {"corruption": "spatter", "CE": None}]
        r.sections["metrics"]["corruptions"] = []
    ce_bars(reports[:1], tmp_path / "ce.png")
    ce_bars(reports, tmp_path / "ce.png")
    assert seen[2].legends == [["a (no mCE: no benchmark corruption)"]]
    assert seen[3].legends == [["a", "b", "c"]]
    assert seen[3].legend_titles == ["model (no mCE: no benchmark corruption)"]


def _all_robust(n: int, attack: str) -> list:
    """``n`` models robust to every image at 1/255 and 4/255."""
    return [SimpleNamespace(model=f"m{i}", heading="adversarial", sections={
        "clean": {"top1_error": 0.0},
        "attacks": [{"attack": attack, "epsilon": e / 255, "robust_accuracy": 1.0, "norm": "linf"}
                    for e in (1, 4)]}) for i in range(n)]


def test_robust_accuracy_tells_coinciding_models_apart_and_keeps_100_on_a_scale(tmp_path, monkeypatch):
    """Models of the same accuracies drew one line (the last drawn); where every point was 100 %,
    the axis ran from 99.975 to 100.5 with ticks above 100."""
    from robustbench_gcp.suites.adversarial import robust_accuracy

    seen = _layout(monkeypatch)
    robust_accuracy(_all_robust(3, "fgsm"), tmp_path / "attacks.png")
    (figure,) = seen
    (ax,) = figure.axes
    lines = ax.get_lines()
    assert len({line.get_marker() for line in lines}) == 3
    assert len({tuple(line.get_xdata()) for line in lines}) == 3  # side by side, not on one another
    low, high = ax.get_ylim()
    assert low <= 90 and high == 100.5 and max(t for t in ax.get_yticks() if low <= t <= high) == 100


def test_eleven_to_twenty_models_take_tab20s_dark_shades_first():
    """tab20 taken in order gave models 0 and 1 one hue, dark and light."""
    from robustbench_gcp.reports.figures import model_color

    tab20 = matplotlib.colormaps["tab20"]
    assert [model_color(i, 12) for i in range(12)] == [tab20(2 * i) for i in range(10)] + [tab20(1), tab20(3)]


def test_figures_of_two_image_sets_say_which_in_their_titles(demo_val, tmp_path, monkeypatch):
    """Two figures named apart by their images had the same title."""
    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    seen = _layout(monkeypatch)
    store = tmp_path / "s.db"
    for limit in (8, 12):
        result = CliRunner().invoke(main, ["eval", "-m", "demo-gap", "--suite", "imagenet-c", "--corruptions",
                                           "fog", "--severities", "1", "--limit", str(limit), "--data",
                                           str(demo_val), "--class-order", "sorted", "--store", str(store),
                                           "--workers", "0"])
        assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(main, ["report", "--store", str(store), "--plot", str(tmp_path / "figs")])
    assert shown.exit_code == 0, shown.output
    titles = [figure.text for figure in seen]
    names = [p.name for p in (tmp_path / "figs").iterdir()]  # imagenet-c_8-images_8edceea8_error_vs_...
    assert len(titles) == len(names) == 2
    for name in names:
        count, fingerprint = name.split("_")[1].split("-")[0], name.split("_")[2]
        assert sum(f", {count} images {fingerprint}: top-1 error against severity" in t for t in titles) == 1


def test_many_models_legend_in_columns_and_equal_accuracies_a_marker_apart(tmp_path, monkeypatch):
    """16 models' legend, one column, ran over a one-panel figure's title; 8 models at the same
    accuracies stood 1.7 points apart, their 3-point markers one smear."""
    from robustbench_gcp.suites.adversarial import robust_accuracy

    seen = _layout(monkeypatch)
    robust_accuracy(_all_robust(16, "pgd-linf"), tmp_path / "attacks.png")
    (figure,) = seen
    (legend,) = figure.legend_boxes
    assert legend.y1 <= figure.title.y0
    xs = sorted(line.get_xdata()[-1] for line in figure.axes[0].get_lines())
    assert min(b - a for a, b in zip(xs, xs[1:])) >= 0.02 * 4 - 1e-9


def _ce_reports(models) -> list:
    """Reports of fog and snow CEs: (name, severities of its cells per corruption, severities its
    means average)."""
    return [SimpleNamespace(model=name, heading="imagenet-c", sections={
        "per_corruption": [{"corruption": c, "CE": 80.0, "severities": list(averaged)}
                           for c in ("fog", "snow")],
        "cells": [{"corruption": c, "severity": s} for c in ("fog", "snow") for s in stored[c]],
        "metrics": {"mCE": 80.0, "corruptions": ["fog", "snow"], "baseline": "base"}})
        for name, stored, averaged in models]


def test_mces_over_other_severities_say_which(tmp_path, monkeypatch):
    from robustbench_gcp.suites.charts import ce_bars

    seen = _layout(monkeypatch)
    ce_bars(_ce_reports([("a", {"fog": (1, 2, 3, 4, 5), "snow": (1, 2, 3, 4, 5)}, (1, 2, 3, 4, 5)),
                         ("b", {"fog": (1, 3), "snow": (1, 3)}, (1, 3))]), tmp_path / "ce.png")
    assert seen[0].legends == [["a (mCE 80.0 at severities 1, 2, 3, 4, 5)",
                                "b (mCE 80.0 at severities 1, 3)"]]


def test_mce_severities_are_those_its_means_average_not_its_cells(tmp_path, monkeypatch):
    """helper-248: b's fog lacks severity 3, so its own means average 1, 2 (a's 1-3); the legend
    said nothing, the severities of the cells being alike. And a severity 4 that a stored for fog
    alone was named in its legend though its mCE leaves it out."""
    from robustbench_gcp.suites.charts import ce_bars
    from robustbench_gcp.suites.imagenet_c import ImageNetCSuite

    seen = _layout(monkeypatch)
    reports = _ce_reports([("a", {"fog": (1, 2, 3, 4), "snow": (1, 2, 3)}, (1, 2, 3)),
                           ("b", {"fog": (1, 2), "snow": (1, 2, 3)}, (1, 2))])
    ce_bars(reports, tmp_path / "ce.png")
    assert seen[0].legends == [["a (mCE 80.0 at severities 1, 2, 3)", "b (mCE 80.0 at severities 1, 2)"]]
    # the paper-style Markdown table of each model's own figures says it too
    table = ImageNetCSuite().detail_markdown(reports)
    assert "| model | mCE | mCE of |" in table and "| a | 80.0 | at severities 1, 2, 3 |" in table, table
    alike = _ce_reports([("a", {"fog": (1, 2), "snow": (1, 2)}, (1, 2))] * 2)
    assert "mCE of" not in ImageNetCSuite().detail_markdown(alike)
    # unnormalized (a model of other classes, no baseline): its mean errors alike (helper-249)
    for r in reports:
        r.sections["metrics"].update(mCE=None, mean_error=0.5)
        for entry in r.sections["per_corruption"]:
            entry.update(CE=None, mean_error=0.5)
    table = ImageNetCSuite().detail_markdown(reports)
    assert "| model | mean | mean of |" in table and "| b | 50.00 | at severities 1, 2 |" in table, table
