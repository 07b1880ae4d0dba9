"""Views of several reports: one table per suite, a row per model, for terminals, CSV and papers.

Inputs are reports and, optionally, the comparison objects of
:mod:`robustbench_gcp.reports.comparison` for intervals and deltas. :func:`render_comparison`
is the whole output of ``compare``, ``report`` and ``demo`` in one format (one report's views
are in :mod:`robustbench_gcp.reports.one_report`).
"""

from __future__ import annotations

from collections.abc import Sequence

from robustbench_gcp.errors import counted, printable
from robustbench_gcp.reports.comparison import comparison_heading, comparison_images, one_run_notes
from robustbench_gcp.reports.one_report import headline, to_long_csv
from robustbench_gcp.reports.report_type import Report, experiments, partial_marked
from robustbench_gcp.reports.tables import (
    Column,
    decimal_format,
    markdown_text,
    rich_table,
    to_csv,
    to_json,
    to_markdown,
)
from robustbench_gcp.suites import all_suites, get_suite
from robustbench_gcp.suites.base import COVERAGE_NOTES


def _display(metric: str) -> tuple[str, float, str]:
    """(header, scale, format) of a headline metric, as its suite shows it."""
    for suite in all_suites():
        shown = suite.display(metric)
        if shown is not None:
            return shown
    return (metric, 1.0, ".4g")


def _fmt(value: float | None, scale: float, fmt: str) -> str:
    return "-" if value is None else decimal_format(value * scale, fmt)


def _interval(iv: dict, scale: float, fmt: str, sep: str = " ") -> str:
    low, high = _fmt(iv["low"], scale, fmt), _fmt(iv["high"], scale, fmt)
    return f"{_fmt(iv['estimate'], scale, fmt)}{sep}[{low}, {high}]"


def _signed_interval(iv: dict, scale: float, fmt: str, sep: str = " ") -> str:
    """:func:`_interval` of a difference, with its sign (``+1.20 [0.40, 2.00]``)."""
    positive = iv["estimate"] is not None and iv["estimate"] >= 0
    return ("+" if positive else "") + _interval(iv, scale, fmt, sep)


def _model_label(model: dict, comparison: dict) -> str:
    """``name``, with `` (ref)`` for the reference of several models and `` (partial)`` for a
    partial run."""
    ref = model["model"] == comparison["reference"] and len(comparison["models"]) > 1
    return model["model"] + (" (ref)" if ref else "") + (" (partial)" if model.get("partial") else "")


def _unpaired(model: dict, comparison: dict) -> bool:
    """A model compared with the reference on images of another shape: no paired difference."""
    return model["model"] != comparison["reference"] and not model.get("paired", True)


def _reference_text(comparison: dict) -> str:
    """``reference NAME`` for a comparison of several models; nothing for one model alone."""
    return f"reference {comparison['reference']}" if len(comparison["models"]) > 1 else ""


def comparison_rows(comparison: dict, *, compact: bool = False) -> tuple[list[dict], list[Column]]:
    """Terminal / Markdown rows: value [interval] per metric, then delta vs the reference and p.

    ``compact`` puts each interval on a second line (for terminals).
    """
    sep = "\n" if compact else " "
    metrics: list[str] = []
    for model in comparison["models"]:
        for m in model["metrics"]:
            if m not in metrics:
                metrics.append(m)
    rows = []
    for model in comparison["models"]:
        row = {"model": _model_label(model, comparison)}
        for m in metrics:
            header, scale, fmt = _display(m)
            iv = model["metrics"].get(m)
            row[m] = "-" if iv is None else _interval(iv, scale, fmt, sep)
            delta = (model.get("delta") or {}).get(m)
            if delta is not None:
                row[f"d {m}"] = _signed_interval(delta, scale, fmt, sep)
            elif _unpaired(model, comparison):
                row[f"d {m}"] = "unpaired"
        tests = model.get("tests") or {}
        if tests:
            # Holm-adjusted over the model's outcomes (older JSON without it: the raw p-value)
            significant = [label for label, t in tests.items() if t.get("p_holm", t["p_value"]) < 0.05]
            row["tests"] = f"{len(significant)} of {len(tests)}{sep}differ"
        rows.append(row)
    columns = [Column("model", justify="left")]
    for m in metrics:
        header = _display(m)[0]
        columns.append(Column(m, header))
        if any(f"d {m}" in r for r in rows):
            columns.append(Column(f"d {m}", f"Δ {header}"))
    if any("tests" in r for r in rows):
        columns.append(Column("tests", TESTS_HEADER))
    return rows, columns


def comparison_long_rows(comparison: dict) -> tuple[list[dict], list[Column]]:
    """A row per (model, metric), for comparisons with many metrics (attacks x epsilons):
    value [interval], paired difference [interval], and the p-value of its paired test."""
    rows = []
    for model in comparison["models"]:
        name = _model_label(model, comparison)
        tests = model.get("tests") or {}
        for metric, iv in model["metrics"].items():
            header, scale, fmt = _display(metric)
            delta = (model.get("delta") or {}).get(metric)
            # an outcome's test: "robust fgsm 1/255" is tested as "fgsm 1/255", the clean error or
            # accuracy as "clean"
            test = tests.get("clean" if metric in ("clean_error", "clean_accuracy")
                             else metric.removeprefix("robust "))
            if _unpaired(model, comparison):
                shown = "unpaired"  # as the compact rows say it
            else:
                shown = None if delta is None else _signed_interval(delta, scale, fmt)
            rows.append({
                "model": name, "metric": header, "value": _interval(iv, scale, fmt), "delta": shown,
                "p": None if test is None else test["p_value"],
                "p_holm": None if test is None else test.get("p_holm"),
            })
            name = ""
    columns = [Column("model", justify="left"), Column("metric", justify="left"),
               Column("value", "value [95 % interval]"), Column("delta", "Δ vs ref [95 % interval]"),
               Column("p", "paired p", ".3g"), Column("p_holm", "Holm p", ".3g")]
    if all(row["p"] is None for row in rows):  # no paired test: one model, or models on other images
        columns = columns[:-2]
    if all(row["delta"] is None for row in rows):  # no difference: one model alone
        columns = [c for c in columns if c.key != "delta"]
    return rows, columns


def comparison_csv_rows(comparison: dict) -> list[dict]:
    """Wide numeric rows: per model, each metric with its interval and paired delta, and each
    paired test's p-value and Holm-adjusted p-value (``p_<test>``, ``p_holm_<test>``)."""
    rows = []
    for model in comparison["models"]:
        row = {"suite": comparison["suite"], "source": comparison.get("source"),
               "n_images": comparison.get("n_images"), "data": comparison.get("data"),
               "data_fingerprint": comparison.get("data_fingerprint"), "model": model["model"],
               "reference": comparison["reference"], "partial": bool(model.get("partial")),
               "cells_left_out": model.get("cells_left_out", 0), "precision": model.get("precision"),
               "memory_format": model.get("memory_format"), "device": model.get("device")}
        for m, iv in model["metrics"].items():
            row.update({m: iv["estimate"], f"{m}_low": iv["low"], f"{m}_high": iv["high"]})
            delta = (model.get("delta") or {}).get(m)
            if delta is not None:
                row.update({f"delta_{m}": delta["estimate"], f"delta_{m}_low": delta["low"],
                            f"delta_{m}_high": delta["high"]})
        for label, test in (model.get("tests") or {}).items():  # the paired tests against the reference
            row.update({f"p_{label}": test["p_value"], f"p_holm_{label}": test.get("p_holm")})
        rows.append(row)
    return rows


#: the wide CSV's first columns, whatever its rows
WIDE_BASE = ("suite", "source", "n_images", "data", "data_fingerprint", "model", "precision", "memory_format",
             "device", "reference", "partial", "cells_left_out")


def wide_csv_columns(rows: Sequence[dict]) -> list[str]:
    """The wide CSV's columns in one order whichever model comes first (the reference's row has
    no deltas, and put them after every metric when it led): :data:`WIDE_BASE`, then per metric,
    in first-seen order, the metric, its bounds, and its delta with bounds; then the tests'
    p-values."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    metrics = [k for k in keys if k not in WIDE_BASE and not k.startswith(("delta_", "p_"))
               and not (k.endswith(("_low", "_high")) and k.rsplit("_", 1)[0] in keys)]
    columns = [k for k in WIDE_BASE if k in keys]
    for m in metrics:
        columns += [k for k in (m, f"{m}_low", f"{m}_high", f"delta_{m}", f"delta_{m}_low",
                                f"delta_{m}_high") if k in keys]
    return columns + [k for k in keys if k not in columns]  # nothing is dropped


def detail_markdown(reports: Sequence[Report]) -> str:
    """Paper-style tables across models: each suite's (CE per corruption, FR per perturbation,
    robust accuracy ...)."""
    parts = []
    for suite in all_suites():
        groups = experiments([r for r in reports if r.kind == suite.kind])  # as comparisons
        alike = [(group[0].heading, group[0].n_images) for group in groups.values()]
        for group in groups.values():
            table = suite.detail_markdown(partial_marked(group))
            if table and len(groups) > 1:  # which experiment each of the suite's tables is
                first = group[0]
                which = f"{first.heading}, {counted(first.n_images, 'image')}"
                if alike.count((first.heading, first.n_images)) > 1:  # and of which images
                    which += f" of {first.data or 'the released files'}"
                table = f"_{markdown_text(which)}:_\n\n{table}"
            if table:
                parts.append(table)
    return "\n".join(parts)


def headline_rows(reports: Sequence[Report]) -> list[dict]:
    """Each report's headline numbers, named as the table of its experiment names its columns (its
    suite's :meth:`~robustbench_gcp.suites.base.Suite.headlines` over the reports of that
    experiment, as the tables and comparisons group them: a run on other images never renames
    another's columns)."""
    figures: dict[int, dict] = {}
    for group in experiments(reports).values():
        figures.update(zip(map(id, group), get_suite(group[0].kind).headlines(group)))
    return [headline(report, figures[id(report)]) for report in reports]


def headline_table(reports: Sequence[Report]) -> tuple[list[dict], list]:
    """The headline numbers of reports of one suite, one row per report, with the headers and
    scales of its comparison tables (errors in percent)."""
    suite = get_suite(reports[0].kind)
    raw = headline_rows(reports)
    keys = [k for k in dict.fromkeys(k for row in raw for k in row)  # columns with a value
            if k not in ("model", "suite", "source", "n_images", "partial")
            and any(row.get(k) is not None for row in raw)]
    shown = {k: suite.display(k) or (k.replace("_", " "), 1.0, ".4g") for k in keys}
    rows = []
    for row in raw:
        out = {"model": row["model"] + (" (partial)" if row["partial"] else ""), "n_images": row["n_images"]}
        for k in keys:
            value = row.get(k)
            out[k] = value * shown[k][1] if isinstance(value, (int, float)) else value
        rows.append(out)
    columns = [Column("model", justify="left"), Column("n_images", "images")]
    columns += [Column(k, label, fmt) for k, (label, _, fmt) in shown.items()]
    return rows, columns


VALUES = ("value and [95 % interval over images] (bootstrap; Wilson for a proportion; each at 95 %, "
          "not adjusted for their number)")
DELTAS = "Δ: paired difference to the reference"
TESTS_HEADER = "tests p<0.05 (Holm)"


def tests_note(comparison: dict) -> str:
    """The meaning of the compact table's tests column: which tests, how counted."""
    return (f"tests p<0.05 (Holm): how many of the model's paired tests ({comparison['tests_text']}) find a "
            "difference from the reference at p < 0.05, Holm-adjusted over them; so a Δ interval may "
            "exclude 0 where no test differs (near the edge an interval and an exact test, which is "
            "conservative, can disagree even before Holm)")


def _caption(comparison: dict, columns: Sequence[Column]) -> str:
    """What the table's columns mean: its intervals, and the differences and tests it has."""
    keys = {c.key for c in columns}
    parts = [VALUES]
    if "delta" in keys or any(key.startswith("d ") for key in keys):
        parts.append(DELTAS)
    if "p" in keys:
        parts.append(f"paired p: {comparison['tests_text']}; Holm p: adjusted over the model's tests")
    if "tests" in keys:
        parts.append(tests_note(comparison))
    return "; ".join(parts)


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
            if not comparisons:  # --no-intervals: each report's own figures, none left out
                rows = [{"reference": None, "cells_left_out": 0, "data": report.data,
                         "data_fingerprint": report.data_fingerprint, "precision": report.precision,
                         "memory_format": report.memory_format, "device": report.device, **row}
                        for report, row in zip(reports, headline_rows(reports))]
                return to_csv(rows, wide_csv_columns(rows))
            rows = [row for c in comparisons for row in comparison_csv_rows(c)]
            return to_csv(rows, wide_csv_columns(rows))
        return to_long_csv(reports)
    if fmt == "markdown":
        parts = [f"## {markdown_text(title)}\n"] if title else []
        for comparison in comparisons:
            rows, columns = comparison_rows(comparison)
            heading = (f"{comparison_heading(comparison)}: {comparison_images(comparison, comparisons)} "
                       f"({', '.join(filter(None, [_reference_text(comparison), '95 % intervals']))})")
            parts.append(to_markdown(rows, columns, title=heading))
            if any(c.key == "tests" for c in columns):  # the header's meaning, as the terminal's caption
                parts.append(f"Note: {markdown_text(tests_note(comparison))}\n")
            parts += [f"Note: {markdown_text(note)}\n" for note in comparison.get("notes", [])]
        if not comparisons:  # --no-intervals: the headline tables the terminal shows
            parts += [to_markdown(rows, columns, title=name)  # under the title's heading
                      for name, (rows, columns) in experiment_tables(reports).items()]
        parts.append(detail_markdown(reports))
        told = {_note_of_comparison(note, c, comparisons) for c in comparisons for note in c.get("notes", [])}
        parts += [f"Note: {markdown_text(note)}\n"
                  for note in all_notes(reports, comparisons, own_figures=True) if note not in told]
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
        rows, columns = (comparison_long_rows(comparison) if wide
                         else comparison_rows(comparison, compact=True))
        heading = ", ".join(filter(None, [f"{comparison_heading(comparison)}: "
                                          f"{comparison_images(comparison, comparisons)}",
                                          _reference_text(comparison)]))
        parts.append(rich_table(rows, columns, title=heading, caption=_caption(comparison, columns)))
    if not comparisons:
        parts += [rich_table(rows, columns, title=name)
                  for name, (rows, columns) in experiment_tables(reports, title).items()]
    parts += [Text(f"note: {printable(note)}", style="yellow") for note in all_notes(reports, comparisons)]
    return Group(*parts)


def experiment_tables(reports: Sequence[Report], title: str = "") -> dict[str, tuple[list[dict], list]]:
    """One headline table per experiment (suite, source, images), as comparisons have: title ->
    (rows, columns); the view without comparisons (``--no-intervals``)."""
    groups = experiments(reports)
    tables = {}
    for (heading, _), group in groups.items():
        name = heading
        if sum(key[0] == heading for key in groups) > 1:  # the same suite on other image sets
            name += f": {counted(group[0].n_images, 'image')} of {group[0].data or 'the released files'}"
        tables[f"{title}: {name}" if title else name] = headline_table(group)
    return tables


def _table_of(report: Report, headings: Sequence[str]) -> str:
    """Which table a report is in, for a note: its heading, with its images where several tables
    share that heading (as :func:`experiment_tables` titles them), and a partial run's range."""
    if headings.count(report.heading) == 1:
        return report.heading
    subset = (report.partial or {}).get("image_range")
    images = f", images {subset}" if subset else ""
    data = report.data or "the released files"
    return f"{report.heading}, {counted(report.n_images, 'image')} of {data}{images}"


def _note_of_comparison(note: str, comparison: dict, comparisons: Sequence[dict]) -> str:
    """A comparison's note on what its means average, prefixed with the table it is of
    (``imagenet-c (...), 20 images: the means average 1 of ...``) where another comparison shown
    says otherwise."""
    if not note.startswith(COVERAGE_NOTES) or all(note in c.get("notes", []) for c in comparisons):
        return note
    return f"{comparison_heading(comparison)}, {comparison_images(comparison, comparisons)}: {note}"


def all_notes(reports: Sequence[Report], comparisons: Sequence[dict], *,
              own_figures: bool = False) -> list[str]:
    """Every note of the reports and comparisons once, sorted; a report's note that not every
    report has names its model (``demo-isqrt: mCE averages 1 of the 15 ...``), so that a table of
    several models says whose it is, unless it already does so (``demo-isqrt: ...``, ``partial run
    of demo-isqrt: ...``); and where the model has reports of the suite in other tables (another
    source or image set) that lack the note, which table: ``resnet18-gap (imagenet-c
    (released)): ...``. A compared report's note on what its means average is left to its
    comparison, whose figures average the cells every compared model has (:data:`COVERAGE_NOTES`),
    unless the output shows the report's own figures too (``own_figures``: Markdown's per-model
    tables)."""
    notes = {_note_of_comparison(note, c, comparisons) for c in comparisons for note in c.get("notes", [])}
    if not comparisons:  # --no-intervals: what a comparison would say of labels of one run
        notes.update(note for group in experiments(reports).values()
                     for note in one_run_notes(group, compared=False))
    # what a compared model's means average is the comparison's to say: of the cells every model has
    compared = {(m["model"], c["suite"], c.get("source"), c.get("n_images"), c.get("data_fingerprint"))
                for c in comparisons for m in c["models"]}
    headings = [heading for heading, _ in experiments(reports)]
    everyone = {report.model for report in reports}
    for report in reports:
        # the model's other reports of this suite (another source or image set: another table)
        siblings = [r for r in reports if r.model == report.model and r.kind == report.kind
                    and r.experiment != report.experiment]
        in_comparison = bool(compared) and (report.model, report.suite, report.source, report.n_images,
                                            report.data_fingerprint) in compared
        for note in report.notes:
            if in_comparison and not own_figures and note.startswith(COVERAGE_NOTES):
                continue
            who = report.model
            if any(note not in r.notes for r in siblings):  # say which of its tables the note is of
                who = f"{report.model} ({_table_of(report, headings)})"
            # every report of the suites that have it has it: one note (an adversarial report beside
            # them lacks ImageNet-C's notes), unless a model shown has no report of those suites
            # (it would read as that model's too: "weights: seeded random" of another); else each
            # says whose it is
            kinds = {other.kind for other in reports if note in other.notes}
            of_kinds = [other for other in reports if other.kind in kinds]
            shared = (all(note in other.notes for other in of_kinds)
                      and {other.model for other in of_kinds} == everyone)
            if note.startswith((f"{report.model}: ", f"{report.model}, ")):  # named already
                notes.add(who + note[len(report.model):])
            elif f" of {report.model}: " in note:  # "partial run of demo-gap: ..."
                notes.add(note.replace(f" of {report.model}: ", f" of {who}: ", 1))
            elif shared:
                notes.add(note)
            else:
                notes.add(f"{who}: {note}")
    return sorted(notes)
