"""The figures' layout: every model its own colour, legends beside the panels, whole titles."""

from __future__ import annotations

from types import SimpleNamespace

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
        seen.append(SimpleNamespace(panels=panels, legends=legends, colors=colors,
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
