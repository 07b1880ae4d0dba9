"""Views of one report: terminal table, long CSV rows, Markdown, headline numbers
(several reports side by side: :mod:`robustbench_gcp.reports.many_reports`).

Each suite gives its tables and rows (:class:`~robustbench_gcp.suites.base.Suite`); this
module frames them. Errors are fractions in the report and in CSV / JSON; the terminal
and Markdown views show percentages and say so in their headers.
"""

from __future__ import annotations

from collections.abc import Sequence

from robustbench_gcp.errors import counted, printable
from robustbench_gcp.reports.report_type import Report
from robustbench_gcp.reports.tables import Column, markdown_text, rich_table, to_csv, to_markdown
from robustbench_gcp.suites import get_suite, long_columns

SUMMARY_COLUMNS = [Column("metric", justify="left"), Column("value", fmt=".2f")]


def header_line(report: Report) -> str:
    """One line: model, weights, suite, images, seed, device and how the cells were made."""
    from robustbench_gcp.models.external import STATE_DICT_SHA256, TORCHVISION

    weights = report.checkpoint or "random weights (no checkpoint)"
    sha256 = report.checkpoint_sha256 or ""
    if not report.checkpoint and sha256.startswith(STATE_DICT_SHA256):  # a model you brought, as built
        whose = "random weights" if report.arch.startswith(TORCHVISION) else "the module's own"
        weights = f"{whose} (state dict sha256 {sha256.removeprefix(STATE_DICT_SHA256)[:12]})"
    suite = get_suite(report.kind)
    source = suite.source_description(report)
    parts = [
        f"model {report.model} ({report.arch})",
        f"weights {weights}",
        f"suite {report.suite}",
        counted(report.n_images, "image"),
        f"seed {report.seed}",
        f"{report.device} {report.precision}" + " channels-last" * (report.memory_format == "channels_last"),
    ]
    if source:
        parts.append(f"{suite.source_word} {source}")
    if report.partial:
        parts.append(f"PARTIAL RUN ({report.partial['cells_complete']} of "
                     f"{report.partial['cells']} cells)")
    return " | ".join(parts)


def render_table(report: Report):
    """A rich renderable (``rich.print(render_table(report))``), as ``eval`` prints it: header, the
    suite's tables, summary, notes."""
    from rich.console import Group
    from rich.text import Text

    suite = get_suite(report.kind)
    parts = [Text(printable(header_line(report)), style="dim")]
    parts += [rich_table(t.rows, t.columns, title=t.title) for t in suite.tables(report)]
    parts.append(rich_table(suite.summary_rows(report), SUMMARY_COLUMNS))
    parts += [Text(f"note: {printable(note)}", style="yellow") for note in report.notes]
    return Group(*parts)


def to_report_markdown(report: Report) -> str:
    """What ``eval --format markdown`` writes: a heading, the suite's tables, summary, notes."""
    suite = get_suite(report.kind)
    partial = " (partial run)" if report.partial else ""
    heading = markdown_text(f"{report.model} on {report.heading}")
    text = [f"### {heading}{partial}", "", markdown_text(header_line(report)), ""]
    text += [to_markdown(t.rows, t.columns, title=t.title) for t in suite.tables(report)]
    text.append(to_markdown(suite.summary_rows(report), SUMMARY_COLUMNS))
    text += [f"_Note: {markdown_text(note)}_\n" for note in report.notes]
    return "\n".join(text)


BASE_COLUMNS = ["model", "checkpoint_sha256", "suite", "kind", "source", "seed", "precision", "memory_format",
                "device", "n_images", "data", "data_fingerprint", "partial", "item", "level"]


def long_rows(report: Report) -> list[dict]:
    """Long rows, one per measured thing, all with the same columns (:func:`long_csv_columns`).

    ``item`` is "clean", a corruption, a perturbation or an attack; ``level`` its severity,
    difficulty or epsilon ("all" for a corruption's mean over severities, where CE and
    relative CE are given; the mean over the benchmark corruptions is the item
    "mean (benchmark)"). ``partial`` is true on every row of a partial run's report.
    """
    base = {"model": report.model, "checkpoint_sha256": report.checkpoint_sha256,
            "suite": report.suite, "kind": report.kind, "source": report.source, "seed": report.seed,
            "precision": report.precision, "memory_format": report.memory_format, "device": report.device,
            "n_images": report.n_images,
            "data": report.data, "data_fingerprint": report.data_fingerprint,
            "partial": report.partial is not None}
    columns = long_csv_columns()
    return [{column: {**base, **row}.get(column) for column in columns}
            for row in get_suite(report.kind).long_rows(report)]


def long_csv_columns() -> list[str]:
    return [*BASE_COLUMNS, *long_columns()]


def to_long_csv(reports: Report | Sequence[Report]) -> str:
    """Long CSV of one report or several, as ``eval --format csv`` writes it (a row per cell and
    metric)."""
    reports = [reports] if isinstance(reports, Report) else reports
    return to_csv([row for report in reports for row in long_rows(report)], long_csv_columns())


def headline(report: Report, figures: dict | None = None) -> dict:
    """The headline numbers of a report, flat (fractions as fractions, CE-type as percent):
    ``figures``, or its suite's :meth:`~robustbench_gcp.suites.base.Suite.headline`."""
    return {"model": report.model, "suite": report.suite, "source": report.source,
            "n_images": report.n_images, "partial": report.partial is not None,
            **(get_suite(report.kind).headline(report) if figures is None else figures)}
