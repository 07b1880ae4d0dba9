"""Rendering several reports and their comparisons, for ``compare``, ``report`` and ``demo``.

:func:`render_comparison` returns the text of a format (CSV, JSON, Markdown), or a rich
renderable for the terminal table; the commands print it.
"""

from __future__ import annotations

from collections.abc import Sequence

from robustbench_gcp.reports import summary, views
from robustbench_gcp.reports.report_type import Report
from robustbench_gcp.reports.tables import rich_table, to_csv, to_json, to_markdown

WIDE_CAPTION = ("value and [95 % bootstrap interval over images]; Δ: paired difference to the "
                "reference; McNemar p: exact test of the paired outcomes")
COMPACT_CAPTION = ("value and [95 % bootstrap interval over images]; Δ: paired difference to the "
                   "reference; McNemar: outcomes (clean, corruptions, attacks) where the model "
                   "differs from the reference at p < 0.05")


def render_comparison(reports: Sequence[Report], comparisons: Sequence[dict], *, fmt: str,
                      layout: str = "long", title: str = ""):
    """Reports and their comparisons in ``fmt`` (table, csv, json, markdown).

    Returns:
        The text for csv / json / markdown; a rich renderable for ``table``.
    """
    if fmt == "json":
        return to_json({"reports": [r.to_json() for r in reports], "comparisons": list(comparisons)})
    if fmt == "csv":
        if layout == "wide":
            rows = [row for c in comparisons for row in summary.comparison_csv_rows(c)] if comparisons \
                else summary.headline_rows(reports)
            return to_csv(rows)
        return views.to_long_csv(reports)
    if fmt == "markdown":
        parts = [f"## {title}\n"] if title else []
        for comparison in comparisons:
            rows, columns = summary.comparison_rows(comparison)
            heading = (f"{comparison['suite']}: {comparison.get('n_images')} images (reference "
                       f"{comparison['reference']}, 95 % intervals)")
            parts.append(to_markdown(rows, columns, title=heading))
            parts += [f"Note: {note}\n" for note in comparison.get("notes", [])]
        parts.append(summary.detail_markdown(reports))
        return "\n".join(parts)
    return comparison_table(reports, comparisons, title=title)


def comparison_table(reports: Sequence[Report], comparisons: Sequence[dict], *, title: str = ""):
    """The terminal view: a table per comparison (long layout when it has many metrics), or the
    headline numbers when there is no comparison, then every note once."""
    from rich.console import Group
    from rich.text import Text

    parts = []
    for comparison in comparisons:
        wide = len(comparison["models"][0]["metrics"]) > 4
        rows, columns = (summary.comparison_long_rows(comparison) if wide
                         else summary.comparison_rows(comparison, compact=True))
        heading = f"{comparison['suite']}: {comparison.get('n_images')} images, reference " \
                  f"{comparison['reference']}"
        caption = WIDE_CAPTION if wide else COMPACT_CAPTION
        parts.append(rich_table(rows, columns, title=heading, caption=caption))
    if not comparisons:
        rows = summary.headline_rows(reports)
        parts.append(rich_table(rows, summary.headline_columns(rows), title=title or None))
    notes = sorted({note for r in reports for note in r.notes}
                   | {note for c in comparisons for note in c.get("notes", [])})
    parts += [Text(f"note: {note}", style="yellow") for note in notes]
    return Group(*parts)
