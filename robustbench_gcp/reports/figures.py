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


def model_color(i: int, n: int):
    """The colour of the ``i``-th of ``n`` models, the same in every panel and figure of a report:
    matplotlib's 10 default colours, 20 for up to 20 models, a spectrum beyond (colours repeated
    after 10 made two models' lines alike)."""
    if n <= 10:
        return f"C{i}"
    import matplotlib

    if n <= 20:
        return matplotlib.colormaps["tab20"](i)
    return matplotlib.colormaps["turbo"](i / (n - 1))


def legend_beside(target, *args, **kwargs):
    """A legend (of an axes or a figure) to the right of the panels, where it covers no data."""
    anchor = (1.01, 1.0) if hasattr(target, "bar") else (1.0, 0.5)
    loc = "upper left" if hasattr(target, "bar") else "center left"
    return target.legend(*args, loc=loc, bbox_to_anchor=anchor, borderaxespad=0, fontsize=8, **kwargs)


def grouped_bars(ax, categories: list[str], series: dict[str, list[float | None]]) -> None:
    """Bars per category, one bar per series (model), with a legend beside them; a value that is
    missing (None) is marked "n/a" where its bar would stand (a value of 0 has no bar either)."""
    width = 0.8 / max(1, len(series))
    handles = []
    for i, values in enumerate(series.values()):
        xs = [k + (i - (len(series) - 1) / 2) * width for k in range(len(categories))]
        color = model_color(i, len(series))
        handles.append(ax.bar(xs, [math.nan if v is None else v for v in values], width=width, color=color))
        for x, value in zip(xs, values):
            if value is None:
                ax.text(x, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color=color)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([c.replace("_", " ") for c in categories], rotation=40, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    # the labels given, not taken from the bars: matplotlib leaves out a label starting with "_"
    legend_beside(ax, handles, list(series), title="model")
