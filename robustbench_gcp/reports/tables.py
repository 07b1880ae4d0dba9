"""Rendering rows of results: terminal table, CSV, JSON, Markdown.

Pure functions from rows (a list of dicts) to text, plus ``emit`` which the CLI
uses to print them. Columns are ``Column(key, header, fmt)``; ``fmt`` is a
format spec applied to numbers in the table and Markdown views (CSV and JSON
keep full precision). Tables and Markdown show the human headers (``Δ mCE``,
``clean err %``); CSV headers are snake_case names that spreadsheets and pandas take
as they are (:func:`csv_name`: ``mce``, ``delta_mce``, ``robust_fgsm_4_255``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from robustbench_gcp.errors import printable


@dataclass(frozen=True)
class Column:
    key: str
    header: str | None = None
    fmt: str = ""
    justify: str = "right"
    wrap: bool = False  # long free text (lists of names): wraps over lines instead of squeezing names

    @property
    def title(self) -> str:
        return self.header if self.header is not None else self.key


def _columns(rows: Sequence[dict], columns: Sequence[Column | str] | None) -> list[Column]:
    if columns is None:
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        columns = list(keys)
    return [c if isinstance(c, Column) else Column(c) for c in columns]


def format_value(value: Any, fmt: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if fmt and isinstance(value, (int, float)) and not isinstance(value, bool):
        return decimal_format(value, fmt)
    return str(value)


_FIXED = re.compile(r"([+ ]?)\.(\d+)f")


def decimal_format(value: float, fmt: str) -> str:
    """``format(value, fmt)``, where a fixed-point ``fmt`` (``.1f``, ``+.2f``) rounds the decimal
    the float stands for, an exact half to even: 49/80 = 61.25 % prints as 61.2, as 5/80 = 6.25 %
    prints as 6.2 (the float 49/80 * 100, 61.250000000000014, printed as 61.3, and 23/80 * 100,
    28.749999999999996, as 28.7). The decimal is the float's to 12 significant digits, far above
    the noise of a few operations on counts; where those would not reach a digit past the ones
    shown (1e11 at one decimal), and for other formats, Python's."""
    match = _FIXED.fullmatch(fmt)
    places = int(match[2]) if match else 0
    if match is None or not math.isfinite(value) or abs(value) >= 10.0 ** (11 - places):
        return format(value, fmt)
    exact = Decimal(format(value, ".12g")).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return format(exact, fmt)


def csv_name(key: str) -> str:
    """A column key as a CSV header: lower case, words joined by ``_``, nothing else.

    >>> [csv_name(k) for k in ("mCE", "relative_mCE", "Δ mCE", "clean err %", "robust fgsm 1/255")]
    ['mce', 'relative_mce', 'delta_mce', 'clean_err_pct', 'robust_fgsm_1_255']
    """
    text = key.replace("Δ", " delta ").replace("%", " pct ").lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def to_csv(rows: Sequence[dict], columns: Sequence[Column | str] | None = None) -> str:
    """CSV with snake_case headers (:func:`csv_name`) and full-precision numbers."""
    cols = _columns(rows, columns)
    names = [csv_name(c.key) for c in cols]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise ValueError(f"CSV columns {sorted(clashes)} clash after snake_casing: {[c.key for c in cols]}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if row.get(c.key) is None else csv_cell(row.get(c.key)) for c in cols])
    return buffer.getvalue()


def csv_cell(value: Any) -> Any:
    """A CSV cell: text that a spreadsheet would take as a formula (``=HYPERLINK(...)``, a label
    from a file name) starts with ``'``, and control characters are escaped; numbers and other
    text as they are."""
    if not isinstance(value, str):
        return value
    value = printable(value, newlines=True)  # a carriage return is escaped here already
    if value[:1] in ("=", "+", "-", "@", "\t"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def to_markdown(
    rows: Sequence[dict], columns: Sequence[Column | str] | None = None, title: str | None = None
) -> str:
    cols = _columns(rows, columns)
    lines = [f"**{markdown_text(title)}**", ""] if title else []
    lines.append("| " + " | ".join(markdown_text(c.title) for c in cols) + " |")
    lines.append("|" + "|".join("---:" if c.justify == "right" else "---" for c in cols) + "|")
    for row in rows:
        cells = [markdown_text(format_value(row.get(c.key), c.fmt)) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: what Markdown reads as markup in a table cell or title: a cell break, emphasis, code, a link, a
#: "<" that opens an HTML tag or comment (p<0.05 stays as it is), a "$" (GitHub's maths) and a "_" at
#: a word's edge (resnet50_isqrt stays as it is: CommonMark ignores "_" inside words)
_MARKUP = re.compile(r"[\\|*`\[\]$]|<(?=[A-Za-z/!?])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown (a checkpoint named ``isqrt_*v2*`` rendered v2 in italics; only
    ``|`` was escaped)."""
    text = printable(text.replace("\n", " "))  # a line break ends a table row; controls are escaped
    return _MARKUP.sub(lambda match: "\\" + match.group(0), text)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def rich_table(rows: Sequence[dict], columns: Sequence[Column | str] | None = None,
               title: str | None = None, caption: str | None = None):
    from rich.table import Table
    from rich.text import Text

    cols = _columns(rows, columns)
    # titles, captions and headers are text too: "reference demo-isqrt[sqrt=eig]" must stay whole
    table = Table(title=None if title is None else Text(printable(title, newlines=True)),
                  caption=None if caption is None else Text(printable(caption, newlines=True)),
                  header_style="bold")
    cells = [[printable(format_value(row.get(c.key), c.fmt), newlines=True) for c in cols] for row in rows]
    for i, c in enumerate(cols):
        if c.wrap:  # free text wraps at word boundaries
            table.add_column(Text(c.title), justify=c.justify, overflow="fold")
        elif c.justify == "left":  # names are never cut; free text gives way first
            widest = max([len(c.title), *(_width(line[i]) for line in cells)])
            # past 48 a value with spaces wraps at them (kept on one line, it took the room of the
            # number columns, which vanished); one without (a path) is kept whole at its width
            whole = widest <= 48 or not any(" " in line[i] for line in cells)
            table.add_column(Text(c.title), justify=c.justify, no_wrap=whole, overflow="fold",
                             min_width=widest if whole else 48)
        else:  # numbers are never cut either ("169…" was a wrong number): headers and intervals wrap
            widest = max((_width(word) for line in cells for word in line[i].split()), default=1)
            table.add_column(Text(c.title, overflow="fold"), justify=c.justify, overflow="fold",
                             min_width=widest)
    for line in cells:  # cell text is data, not rich markup ("[epoch]" must stay visible)
        table.add_row(*(Text(text) for text in line))
    return table


def _width(text: str) -> int:
    """The longest line of a cell (a value over its interval)."""
    return max(len(part) for part in text.split("\n"))


def stdout_console():
    """A console for results on stdout: the terminal's width, or 200 columns when piped."""
    import os
    import sys

    from rich.console import Console

    width = None
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        width = 200
    console = Console(soft_wrap=True, width=width, emoji=False)
    if console.is_dumb_terminal:  # rich takes 80 columns for TERM=dumb, whatever the terminal has
        import shutil

        set_width(console, width or shutil.get_terminal_size().columns)
    return console


def set_width(console, width: int) -> None:
    """``console.width = width``, which rich ignores for a dumb terminal (``TERM=dumb``: Emacs
    shells, some CI) unless the height is set with it."""
    console.size = (width, console.height)


def print_whole(console, renderable) -> None:
    """``console.print(renderable)`` at the console's width, or at the least width the renderable
    needs where that is more: rich fits a table too wide for its console by drawing columns at
    no width (a 40-column terminal lost a report's figures); wider, the terminal wraps the lines
    and every figure stays."""
    from rich.console import Group
    from rich.table import Table

    parts = renderable.renderables if isinstance(renderable, Group) else [renderable]
    wide = console.options.update(max_width=1 << 16)  # text (a note's long path) wraps: tables only
    need = max((console.measure(part, options=wide).minimum for part in parts if isinstance(part, Table)),
               default=0)
    if need > console.width:
        set_width(console, need)
    # rich may draw a table wider than that (it applies a column's min_width again after shrinking
    # the columns), and cropped the figures at the right: its lines are written whole
    console.print(renderable, crop=False)


def render_text(table) -> str:
    """Render a rich renderable to plain text (for files and pipes)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=160, color_system=None, soft_wrap=True, emoji=False)
    print_whole(console, table)
    return console.file.getvalue()
