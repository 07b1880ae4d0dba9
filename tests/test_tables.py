"""The renderers of rows (reports/tables.py) and of one report (reports/one_report.py), each view
checked for what it must keep: every column, a readable cell, a number as a number."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from fractions import Fraction
from pathlib import Path

import pytest

from robustbench_gcp.reports.tables import (
    Column,
    format_value,
    render_text,
    rich_table,
    to_csv,
    to_json,
    to_markdown,
)


def test_rows_without_columns_show_every_key_of_every_row():
    """Without columns, a key only a later row has (a metric one model lacks) is a column too."""
    rows = [{"model": "a", "mCE": 70.0}, {"model": "b", "mCE": 60.0, "relative_mCE": 90.0}]
    assert next(csv.reader(io.StringIO(to_csv(rows)))) == ["model", "mce", "relative_mce"]
    assert to_markdown(rows).splitlines()[0] == "| model | mCE | relative_mCE |"
    assert [str(c.header) for c in rich_table(rows).columns] == ["model", "mCE", "relative_mCE"]


def test_cells_show_a_dash_for_nothing_and_numbers_in_their_format():
    assert [format_value(v, ".2f") for v in (None, math.nan, 0.125, 3, "fog", True)] == [
        "-", "-", "0.12", "3.00", "fog", "True"]  # a flag is no number: "1.00" said nothing
    assert format_value(0.125) == "0.125"


def _half_even(exact: Fraction, places: int) -> str:
    """An exact fraction rounded to ``places`` decimals, a half to even, in integers alone."""
    scaled = exact * 10 ** places
    whole, rest = divmod(scaled.numerator, scaled.denominator)
    if 2 * rest > scaled.denominator or (2 * rest == scaled.denominator and whole % 2):
        whole += 1
    text = str(whole).rjust(places + 1, "0")
    return f"{text[:-places]}.{text[-places:]}"


def test_an_error_rate_of_counts_rounds_the_decimal_it_stands_for():
    """k of n images as a percentage, at one and two decimals: the exact decimal rounded half to even
    (49/80 = 61.25 % printed 61.3 while 5/80 = 6.25 % printed 6.2: the floats 61.250000000000014 and
    6.25), in tables, Markdown and a comparison's intervals alike."""
    from robustbench_gcp.reports.many_reports import _fmt

    cases = [(k, n) for n in range(8, 401) for k in range(n + 1)]
    for places in (1, 2):
        fmt = f".{places}f"
        shown = [format_value(k / n * 100, fmt) for k, n in cases]
        expected = [_half_even(Fraction(100 * k, n), places) for k, n in cases]
        wrong = [(k, n, got, want) for (k, n), got, want in zip(cases, shown, expected) if got != want]
        assert not wrong, wrong[:5]
    assert [_fmt(49 / 80, 100.0, ".1f"), _fmt(23 / 80, 100.0, ".1f"), _fmt(5 / 80, 100.0, ".1f")] == [
        "61.2", "28.8", "6.2"]
    assert to_markdown([{"err": 49 / 80 * 100}], [Column("err", "err", ".1f")]).splitlines()[-1] == "| 61.2 |"
    assert [format_value(v, "+.1f") for v in (-2.25, 2.25, -0.01)] == ["-2.2", "+2.2", "-0.0"]
    # where 12 significant digits do not reach past the digits shown: Python's (it cut digits off,
    # 1234567890123.4 as 1234567890120.0, and raised past 28 digits)
    for value, fmt in ((1234567890123.4, ".1f"), (123456789012.34, ".1f"), (0.123456789012345, ".15f"),
                       (1.5, ".30f"), (1e14, ".20f"), (1e300, ".1f"), (5, ".0f")):
        assert format_value(value, fmt) == format(value, fmt), (value, fmt)


def test_csv_headers_that_clash_after_snake_casing_are_refused():
    """"Δ mCE" and "delta mCE" are both delta_mce: one column silently took the other's name."""
    with pytest.raises(ValueError, match=r"clash after snake_casing: \['Δ mCE', 'delta mCE'\]"):
        to_csv([{"Δ mCE": 1.0, "delta mCE": 2.0}])


def test_csv_keeps_full_precision_and_leaves_nothing_empty_but_none():
    text = to_csv([{"a": 0.1234567890123, "b": None, "c": 0}], [Column("a", fmt=".2f"), "b", "c"])
    assert text.splitlines() == ["a,b,c", "0.1234567890123,,0"]


def test_markdown_aligns_numbers_right_and_names_left():
    text = to_markdown([{"model": "a", "mCE": 70.0}], [Column("model", justify="left"),
                                                      Column("mCE", fmt=".1f")], title="T")
    assert text.splitlines() == ["**T**", "", "| model | mCE |", "|---|---:|", "| a | 70.0 |"]


def test_markdown_cells_are_literal_text_on_one_line():
    """A line break ended the table's row; ``_`` at a word's edge started emphasis, ``<b`` a tag,
    ``$...$`` GitHub's maths (``p<0.05`` and ``resnet50_isqrt`` stay as they are)."""
    from robustbench_gcp.reports.tables import markdown_text

    assert markdown_text("two\nlines") == "two lines"
    shown = markdown_text("_best_ a|b <b> p<0.05 resnet50_isqrt $x$")
    assert shown == r"\_best\_ a\|b \<b> p<0.05 resnet50_isqrt \$x\$"


def test_json_refuses_nan_and_writes_paths_and_numpy_scalars():
    """NaN is not JSON (a reader of the file fails on it); a path and a NumPy number are written as
    text and a number."""
    import numpy as np

    assert json.loads(to_json({"path": Path("a/b.db"), "n": np.int64(3), "x": np.float32(0.5)})) == {
        "path": "a/b.db", "n": 3, "x": 0.5}
    with pytest.raises(ValueError):
        to_json({"x": math.nan})
    with pytest.raises(TypeError, match="cannot write object as JSON"):
        to_json({"x": object()})


def test_terminal_cells_titles_and_captions_are_text_not_markup():
    """rich reads "[epoch]" and "[bold]" as markup: a label or title from a file name lost them."""
    table = rich_table([{"model": "demo-isqrt[sqrt=eig]", "note": "[bold]x"}],
                       [Column("model", justify="left"), Column("note", justify="left")],
                       title="reference [bold]demo", caption="[red]caption")
    text = render_text(table)
    for shown in ("demo-isqrt[sqrt=eig]", "[bold]x", "reference [bold]demo", "[red]caption"):
        assert shown in text, text


def test_a_wrapping_column_gives_way_and_the_names_stay_whole():
    """A long list of names (a wrap column) wraps over lines in a narrow table; a name column is
    never cut."""
    from rich.console import Console

    names = ", ".join(f"corruption_{i}" for i in range(12))
    table = rich_table([{"suite": "imagenet-c", "corruptions": names}],
                       [Column("suite", justify="left"), Column("corruptions", justify="left", wrap=True)])
    console = Console(file=io.StringIO(), width=50, color_system=None)
    console.print(table)
    text = console.file.getvalue()
    assert "imagenet-c" in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 50
    assert all(f"corruption_{i}" in text for i in range(12))


@pytest.mark.parametrize("width", [40, 80])
def test_a_long_name_with_spaces_wraps_and_the_figures_stay(width):
    """A label with spaces wider than the terminal was cut, and the figures' column drawn at no width
    (rich shrinks the other columns around one that may not wrap)."""
    from rich.console import Console

    from robustbench_gcp.reports.tables import print_whole

    name = "a model label with spaces in it that is longer than the terminal is wide, by far"
    table = rich_table([{"model": name, "err": 31.25}, {"model": "short", "err": 7.5}],
                       [Column("model", justify="left"), Column("err", "err %", ".2f")])
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_whole(console, table)
    text = console.file.getvalue()
    assert "31.25" in text and "7.50" in text and "err %" in text, text
    column = [line.split("│")[1] for line in text.splitlines() if line.startswith("│")]
    assert name in " ".join(" ".join(column).split()), text  # whole, over lines


@pytest.mark.parametrize("width", [30, 100, 140])
def test_a_table_rich_lays_out_wider_than_its_console_is_printed_whole(width):
    """Beside a wrapping column rich drew the table wider than the console (it applies a column's
    least width again after shrinking the columns) and a console that crops lines lost the figures
    at the right; a path longer than 48 characters beside long text was folded mid-name."""
    from rich.console import Console

    from robustbench_gcp.reports.tables import print_whole

    path = "/a/long/path/without/any/spaces/to/a/checkpoint/file/resnet50-isqrt-finetuned.pth"
    label = "a model label with spaces in it that is longer than forty eight characters"
    free = "gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, motion_blur, zoom_blur"
    for rows, columns in (
        ([{"a": label, "f": free, "err": 31.25}, {"a": "x", "f": "z", "err": 7.5}],
         [Column("a", "model", justify="left"), Column("f", "corruptions", justify="left", wrap=True)]),
        ([{"a": path, "f": label, "err": 31.25}, {"a": "x", "f": "y", "err": 7.5}],
         [Column("a", "file", justify="left"), Column("f", "model", justify="left")]),
    ):
        console = Console(file=io.StringIO(), width=width, color_system=None)  # crops its lines
        print_whole(console, rich_table(rows, [*columns, Column("err", "err %", ".2f")]))
        text = console.file.getvalue()
        assert "31.25" in text and "7.50" in text, text
        assert all(line.rstrip()[-1] in "┓┃┩│┘" for line in text.splitlines()), text  # the right border
        if rows[0]["a"] == path:
            assert path in text, text


def test_text_views_and_piped_stdout_are_wide_enough_for_a_comparison(monkeypatch):
    """render_text (files) draws at 160 columns and a piped stdout at 200: at 80 a comparison's
    intervals wrapped over lines in a log."""
    from robustbench_gcp.reports.tables import stdout_console

    wide = {f"column {i}": "12.34 [10.00, 14.00]" for i in range(6)}
    text = render_text(rich_table([wide]))
    assert all(len(line) > 80 for line in text.splitlines() if line.strip())
    assert text.count("12.34 [10.00, 14.00]") == 6
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert stdout_console().width == 200


@pytest.fixture(scope="module")
def clean_report(demo_val):
    from robustbench_gcp import evaluate

    return evaluate("demo-gap", data=str(demo_val), class_order="sorted", suite="clean", limit=6, workers=0)


def test_one_report_says_its_weights_precision_source_and_partial_state(clean_report):
    """The header line of one report, and a partial run's marks in every view of it."""
    from robustbench_gcp.reports.one_report import (
        header_line,
        headline,
        long_rows,
        render_table,
        to_report_markdown,
    )

    line = header_line(clean_report)
    assert f"weights {clean_report.checkpoint}" in line and line.endswith(" | cpu float32"), line  # no source
    assert "PARTIAL" not in line and "(partial run)" not in to_report_markdown(clean_report)
    random = dataclasses.replace(clean_report, checkpoint=None, checkpoint_sha256=None)
    assert "weights random weights (no checkpoint)" in header_line(random)
    one = dataclasses.replace(clean_report, n_images=1)
    assert " | 6 images | " in line and " | 1 image | " in header_line(one)  # it said "1 images"
    assert not long_rows(clean_report)[0]["partial"] and not headline(clean_report)["partial"]

    partial = dataclasses.replace(clean_report, partial={"cells_complete": 1, "cells": 3},
                                  notes=["first note", "second note"])
    assert header_line(partial).endswith(" | PARTIAL RUN (1 of 3 cells)")
    markdown = to_report_markdown(partial)
    assert markdown.startswith("### demo-gap on clean (partial run)\n")
    assert "_Note: first note_" in markdown and "_Note: second note_" in markdown
    error = f"| clean top-1 error (%) | {100 * clean_report.sections['clean']['top1_error']:.2f} |"
    assert error in markdown  # the summary table
    assert all(row["partial"] for row in long_rows(partial)) and headline(partial)["partial"]
    text = render_text(render_table(partial))
    assert "note: first note" in text and "note: second note" in text and "PARTIAL RUN" in text
    assert "clean top-1 error (%)" in text


def test_the_header_line_of_a_model_you_brought_names_its_state_dict():
    """No checkpoint file: the weights are the module's own or torchvision's random ones, named by
    the first 12 hex digits of their state dict's SHA-256."""
    from types import SimpleNamespace

    from robustbench_gcp.models.external import STATE_DICT_SHA256, TORCHVISION
    from robustbench_gcp.reports.one_report import header_line

    def report(arch):
        return SimpleNamespace(model="mine", arch=arch, checkpoint=None, kind="clean", suite="clean",
                               checkpoint_sha256=STATE_DICT_SHA256 + "0123456789abcdef" * 4, n_images=4,
                               seed=0, device="cpu", precision="float32", memory_format="contiguous",
                               partial=None, source=None)

    assert "| weights the module's own (state dict sha256 0123456789ab) |" in header_line(report("mine.Net"))
    assert "| weights random weights (state dict sha256 0123456789ab) |" in header_line(
        report(TORCHVISION + "resnet18"))
