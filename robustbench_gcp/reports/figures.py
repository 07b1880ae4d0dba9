"""Figure primitives shared by the suites' plots (matplotlib, no display needed).

Every figure has a title, labelled axes and a legend naming the models; :func:`save`
writes the number of visible axes into the PNG's metadata (``Axes``) so tests and tools
can check a figure without looking at it.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path


class NotDrawn(Exception):  # noqa: N818 (an outcome, not a failure: write_plots says it and goes on)
    """A figure the reports have data for but cannot show (CE where nothing normalizes the errors);
    its message says why, for :func:`~robustbench_gcp.reports.plots.write_plots` to pass on."""


def pyplot():
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (folders created), close it, return the path.

    Raises:
        OutputError: the folder or file cannot be written (no half-written file is left, and an
            older figure at ``path`` stays).
    """
    from robustbench_gcp.errors import OutputError, absent, foreign_link, link_loop, real_path

    n_axes = sum(1 for ax in fig.axes if ax.get_visible())
    if link_loop(path):  # the figure would replace the link
        pyplot().close(fig)
        raise OutputError(f"{path} {absent(path)}: not written")
    if foreign_link(path):
        pyplot().close(fig)
        raise OutputError(f"{path} is another user's symbolic link in a shared folder: not written "
                          "through (the kernel would not follow it either); choose another --plot folder")
    target = real_path(path)  # through a symbolic link, to its file
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp{target.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # tight: the canvas takes in a title wider than the panels and a legend beside them
        fig.savefig(staged, dpi=110, format=target.suffix.lstrip(".") or None, bbox_inches="tight",
                    pad_inches=0.1, metadata={"Axes": str(n_axes), "Software": "gcp-robust"})
        os.replace(staged, target)  # whole or not at all: an older figure stays on a full disk
    except OSError as error:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
        raise OutputError(f"cannot write the figure {path}: {error.strerror or error}") from None
    finally:
        pyplot().close(fig)
    return path


#: a marker per model, cycled: lines that coincide (models with the same accuracies) stay told apart
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")

#: the widest a bar figure's panels are drawn (inches); more categories wrap into rows of panels
BARS_MAX_WIDTH = 14.0


def model_color(i: int, n: int):
    """The colour of the ``i``-th of ``n`` models, the same in every panel and figure of a report:
    matplotlib's 10 default colours, 20 for up to 20 models (tab20's dark shades first, then its
    light ones: taken in order, models 0 and 1 were one hue, dark and light), a spectrum beyond
    (colours repeated after 10 made two models' lines alike)."""
    if n <= 10:
        return f"C{i}"
    import matplotlib

    if n <= 20:
        return matplotlib.colormaps["tab20"](2 * i if i < 10 else 2 * (i - 10) + 1)
    return matplotlib.colormaps["turbo"](i / (n - 1))


def model_marker(i: int) -> str:
    """The marker of the ``i``-th model's points (:data:`MARKERS`, cycled)."""
    return MARKERS[i % len(MARKERS)]


def model_handles(n: int, *, marker: bool = True) -> list:
    """Legend entries for ``n`` models in their colours (and markers; patches for bars)."""
    import matplotlib.lines
    import matplotlib.patches

    if not marker:
        return [matplotlib.patches.Patch(color=model_color(i, n)) for i in range(n)]
    return [matplotlib.lines.Line2D([], [], marker=model_marker(i), markersize=4, color=model_color(i, n))
            for i in range(n)]


def spread(i: int, n: int, span: float, *, least: float = 0.0) -> float:
    """The ``i``-th of ``n`` models' shift along x, centred on each point, within ``span``: their
    points and bars side by side, not on one another; neighbours at least ``least`` apart."""
    return (i - (n - 1) / 2) * max(min(0.08, 0.4 / n) * span, least)


def panel_grid(n: int, *, cols: int, width: float, height: float, least_width: float = 0.0,
               margin: float = 0.0):
    """A figure of ``n`` panels sharing their y axis, in rows of ``cols`` at most (``width`` by
    ``height`` inches each, plus ``margin`` across and 0.8 in for the title, the whole
    ``least_width`` wide at least); panels past ``n`` hidden.
    Returns (figure, the ``n`` axes in order, the number of columns)."""
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    size = (max(width * cols + margin, least_width), height * rows + 0.8)
    fig, axes = pyplot().subplots(rows, cols, figsize=size, squeeze=False, sharey=True)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)[:n], cols


def panel_labels(axes: list, cols: int, x: str | None, y: str, fontsize: float | None = None) -> None:
    """Axis labels of a :func:`panel_grid`: x under the bottom panel of each column (None: the
    panels keep their own), y beside the first panel of each row."""
    for index, ax in enumerate(axes):
        if x is not None and index >= len(axes) - cols:
            ax.set_xlabel(x, fontsize=fontsize)
        if index % cols == 0:
            ax.set_ylabel(y, fontsize=fontsize)


def title_and_layout(fig, title: str) -> None:
    """``title`` above the panels, a fixed height from the top (matplotlib's place for it is a
    fraction of the height: in a tall figure it ran over the first row's panel titles), the
    panels laid out below it."""
    fig.suptitle(title, y=1 - 0.06 / fig.get_figheight(), va="top")
    fig.tight_layout()  # which lays the panels out below the title


def legend_beside(target, *args, **kwargs):
    """A legend (of an axes or a figure) to the right of the panels, where it covers no data."""
    anchor = (1.01, 1.0) if hasattr(target, "bar") else (1.0, 0.5)
    loc = "upper left" if hasattr(target, "bar") else "center left"
    # columns of 15 at most: a legend of 16 models in one ran over the title of a one-panel figure
    ncol = math.ceil(len(args[1]) / 15) if len(args) > 1 else 1
    return target.legend(*args, loc=loc, bbox_to_anchor=anchor, borderaxespad=0, fontsize=8, ncol=ncol,
                         **kwargs)


def grouped_bars(ax, categories: list[str], series: dict[str, list[float | None]], *,
                 legend: bool = True) -> None:
    """Bars per category, one bar per series (model), with a legend beside them (``legend``); a
    value that is missing (None) is marked "n/a" where its bar would stand, and a value of 0 by a
    line at 0 in its model's colour (it has no bar: it looked missing)."""
    width = 0.8 / max(1, len(series))
    handles = []
    for i, values in enumerate(series.values()):
        xs = [k + (i - (len(series) - 1) / 2) * width for k in range(len(categories))]
        color = model_color(i, len(series))
        handles.append(ax.bar(xs, [math.nan if v is None else v for v in values], width=width, color=color))
        for x, value in zip(xs, values):
            if value is None:
                ax.text(x, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color=color)
            elif value == 0:
                ax.plot([x - width / 2, x + width / 2], [0, 0], color=color, linewidth=2.5,
                        solid_capstyle="butt", clip_on=False, zorder=3)  # whole, over the axis line
                ax.text(x, 0, "0", ha="center", va="bottom", fontsize=7, color=color)
    # every category's room, a last one with only "n/a" marks too (they fell outside the axes)
    ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([c.replace("_", " ") for c in categories], rotation=40, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if legend:  # the labels given, not taken from the bars: matplotlib leaves out a label starting with "_"
        legend_beside(ax, handles, list(series), title="model")


def bar_figure(panels: list[tuple[str | None, list[str], dict[str, list[float | None]]]], *, title: str,
               xlabel: str, ylabel: str, legend_title: str = "model", reference: float | None = None):
    """A figure of grouped bars (:func:`grouped_bars`): a row of panels per ``(panel title,
    categories, series)``, the categories wrapped into more rows where they would be drawn wider
    than :data:`BARS_MAX_WIDTH` (15 corruptions of 8 models made a figure 11 times as wide as
    tall); one scale, one legend beside them (placed after the layout, so that long labels widen
    the canvas rather than squeeze the panels); a dashed line at ``reference``."""
    plt = pyplot()
    n = max(len(series) for _, _, series in panels)
    per_category = 0.25 + 0.22 * n  # inches
    most = max(1, int(BARS_MAX_WIDTH // per_category))
    rows = [(name, categories[start:start + most], {label: values[start:start + most]
                                                     for label, values in series.items()})
            for name, categories, series in panels for start in range(0, len(categories), most)]
    widest = max(len(categories) for _, categories, _ in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(7.0, min(BARS_MAX_WIDTH, widest * per_category)),
                                                    3.6 * len(rows) + 0.9), squeeze=False, sharey=True)
    for ax, (name, categories, series) in zip(axes.flat, rows):
        grouped_bars(ax, categories, series, legend=False)
        ax.set_xlim(-0.5, widest - 0.5)  # rows of one width: a category's bars as wide in each
        if reference is not None:
            ax.axhline(reference, color="grey", linewidth=0.8, linestyle="--")
        if name:
            ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
    axes.flat[-1].set_xlabel(xlabel)
    title_and_layout(fig, title)
    legend_beside(fig, model_handles(n, marker=False), list(panels[0][2]), title=legend_title)
    return fig
