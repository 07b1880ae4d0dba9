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
    from robustbench_gcp.errors import OutputError

    n_axes = sum(1 for ax in fig.axes if ax.get_visible())
    target = path.resolve()  # through a symbolic link, to its file
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp{target.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(staged, dpi=110, format=target.suffix.lstrip(".") or None,
                    metadata={"Axes": str(n_axes), "Software": "gcp-robust"})
        os.replace(staged, target)  # whole or not at all: an older figure stays on a full disk
    except OSError as error:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
        raise OutputError(f"cannot write the figure {path}: {error.strerror or error}") from None
    finally:
        pyplot().close(fig)
    return path


def grouped_bars(ax, categories: list[str], series: dict[str, list[float | None]]) -> None:
    """Bars per category, one bar per series (model), with a legend."""
    width = 0.8 / max(1, len(series))
    for i, (model, values) in enumerate(series.items()):
        xs = [k + (i - (len(series) - 1) / 2) * width for k in range(len(categories))]
        ax.bar(xs, [math.nan if v is None else v for v in values], width=width, label=model)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([c.replace("_", " ") for c in categories], rotation=40, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="model", fontsize=8)
