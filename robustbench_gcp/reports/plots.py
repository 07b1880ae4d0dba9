"""PNG figures of several reports: every figure each suite draws, one file per figure and suite.

The figures themselves belong to the suites (:meth:`~robustbench_gcp.suites.base.Suite.plots`);
their primitives are in :mod:`robustbench_gcp.reports.figures`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from robustbench_gcp.errors import FiguresNotWritten, OutputError, real_path
from robustbench_gcp.reports.figures import NotDrawn
from robustbench_gcp.reports.report_type import Report, experiments, partial_marked
from robustbench_gcp.suites import get_suite


def write_plots(reports: Sequence[Report], folder: str | Path,
                not_drawn: list[str] | None = None) -> list[Path]:
    """Every figure the reports allow, one PNG per figure and suite, into ``folder``; why a figure
    the reports have data for was not drawn is appended to ``not_drawn``.

    Raises:
        FiguresNotWritten: a figure cannot be written (its path is a folder, the disk is full):
            every other figure is written first, and the error holds their paths.
    """
    import matplotlib

    folder = Path(folder)
    written, failed = [], []
    with matplotlib.rc_context({"text.parse_math": False}):  # a model's "$" is text, not mathtext
        groups = experiments(reports)  # as the comparisons: one suite, one source, one image set
        for (heading, images), group in groups.items():
            suite = group[0].suite
            # named by the suite; by its source and images too where the reports have several
            several_sources = len({h for (h, _), g in groups.items() if g[0].suite == suite}) > 1
            # a file name of safe characters (a source may hold "/" or ":": "0.1/256 to 75/256")
            stem = re.sub(r"[^\w.-]+", "_", heading if several_sources else suite).strip("_")
            title = heading  # the figures' titles tell the image sets apart as their names do
            if sum(h == heading for h, _ in groups) > 1:
                stem += f"_{group[0].n_images}-images_{images[:8]}"
                subset = (group[0].partial or {}).get("image_range")
                stem += f"_images-{subset.replace(',', '_')}" if subset else ""
                count = f"{group[0].n_images} image{'s' if group[0].n_images != 1 else ''}"
                title += f", {count} {images[:8]}" + (f" (images {subset})" if subset else "")
            group = partial_marked(group)
            for name, draw in get_suite(group[0].kind).plots().items():
                try:
                    path = draw(group, folder / f"{stem}_{name}.png", heading=title)
                except OutputError as error:  # the next figures are still written
                    failed.append(str(error))
                    continue
                except NotDrawn as why:
                    if not_drawn is not None:
                        not_drawn.append(str(why))
                    continue
                if path is not None:
                    written.append(path)
    if failed:
        others = f"; the other {len(written)} written" if written else ""
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise FiguresNotWritten(f"{failed[0]}{more}: {len(failed)} of {len(failed) + len(written)} "
                                f"figures not written{others}", written)
    return written


def earlier_figures(folder: str | Path, written: Sequence[Path]) -> list[Path]:
    """The figures in ``folder`` that gcp-robust wrote before and this report did not rewrite (a
    reused ``--plot`` folder: they are not of these reports), by the PNG's ``Software`` entry."""
    from PIL import Image, UnidentifiedImageError

    fresh = {real_path(p) for p in written}
    earlier = []
    for path in sorted(Path(folder).glob("*.png")):
        if real_path(path) in fresh or not path.is_file():
            continue
        try:
            with Image.open(path) as image:
                ours = image.info.get("Software") == "gcp-robust"
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError):  # not a figure, or not
            # readable (a header of 30000 x 30000 px): not ours to name
            continue
        if ours:
            earlier.append(path)
    return earlier
