"""Printing results: the one place where rows and texts reach stdout or a file.

The library renders (``robustbench_gcp.reports``); commands print through here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from robustbench_gcp.errors import absent, foreign_link, link_loop, printable, real_path
from robustbench_gcp.reports.tables import (
    Column,
    print_whole,
    render_text,
    rich_table,
    stdout_console,
    to_csv,
    to_json,
    to_markdown,
)


def emit(
    rows: Sequence[dict],
    columns: Sequence[Column | str] | None = None,
    *,
    fmt: str = "table",
    title: str | None = None,
    caption: str | None = None,
    json_obj: Any = None,
    output: str | None = None,
) -> None:
    """Print rows to stdout (or ``output``) in ``fmt``.

    ``json_obj`` replaces the rows in the JSON view when the JSON document has
    more structure than the table.
    """

    if fmt == "json":
        text = to_json(rows if json_obj is None else json_obj)
    elif fmt == "csv":
        text = to_csv(rows, columns)
    elif fmt == "markdown":
        text = to_markdown(rows, columns, title)
    elif fmt == "table":
        table = rich_table(rows, columns, title, caption)
        if output is None:
            _to_stdout(lambda: print_whole(stdout_console(), table))
            return
        text = render_text(table)
    else:
        raise ValueError(f"`fmt` should be table, csv, json or markdown. Got {fmt!r}")
    write_output(text, output)


def write_output(text: str, output: str | None) -> None:
    """``text`` to stdout, or to the file ``output`` (saying so on stderr)."""
    if output is None:  # (click.echo rewraps an ASCII stdout as UTF-8: "Δ" came out raw under LC_ALL=C)
        _say_lost_characters(text, 1)
        _to_stdout(lambda: sys.stdout.write(text))
        return
    if text and not text.endswith("\n"):
        text += "\n"
    from robustbench_gcp.cli.options import STANDARD_STREAMS, database_target

    stream = STANDARD_STREAMS.get(os.path.normpath(output))
    if stream is not None:  # this process's own stream, wherever it points (a pipe, `>> file`)
        _say_lost_characters(text, stream)
        _to_stdout(lambda: (sys.stderr if stream == 2 else sys.stdout).write(text), stream)
        return
    problem = database_target(output)  # checked again: `-o` may name the store this run created
    if problem:
        raise click.ClickException(f"{problem}; the results are stored, so the same command with "
                                   "another -o computes nothing again")
    path = Path(output)
    if link_loop(path):  # the file would replace the link (the command line's -o refused it already)
        raise click.ClickException(f"{output} {absent(path)}: not written")
    if foreign_link(path):
        raise click.ClickException(f"{output} is another user's symbolic link in a shared folder: not "
                                   "written through (the kernel would not follow it either); choose "
                                   "another -o")
    try:  # a symbolic link to a file (or to none yet): that file; to a pipe or device (/dev/fd/3): into it
        _write_whole(real_path(path) if path.is_file() or not path.exists() else path, text)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror or error}") from None
    click.echo(f"wrote {output}", err=True)


def _say_lost_characters(text: str, stream: int) -> None:
    """A note on stderr naming the characters of ``text`` that the stream's encoding cannot write
    (an ASCII or Latin-1 stdout): they are written otherwise (a stand-in, ``?`` or an escape), and a
    CSV of a model named "modèle" said "mod?le" without a word (JSON escapes them itself)."""
    target = (_RESULTS_STDOUT[-1] if _RESULTS_STDOUT else sys.stdout) if stream == 1 else sys.stderr
    encoding = getattr(target, "encoding", None)
    if not encoding:
        return
    try:
        text.encode(encoding)
        return
    except UnicodeEncodeError:
        pass
    except LookupError:  # an encoding Python does not know: nothing to say
        return
    lost = []
    for char in dict.fromkeys(text):
        try:
            char.encode(encoding)
        except UnicodeEncodeError:
            lost.append(f"U+{ord(char):04X}")
    shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    where = "standard output" if stream == 1 else "standard error"
    with contextlib.suppress(OSError, ValueError):  # an unwritable stderr loses the note, not the output
        click.echo(f"note: the encoding of {where} ({encoding}) cannot write {shown} of the output: written "
                   "otherwise (a stand-in, '?' or an escape); -o FILE writes UTF-8 (or set "
                   "PYTHONIOENCODING=utf-8)", err=True)


def _write_whole(target: Path, text: str) -> None:
    """Write ``text`` to ``target``. A regular file is replaced only once the new text is whole (a
    full disk keeps the old one), keeping its permissions; where no file can be made beside it (or
    for a pipe, a device), it is written in place."""
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if target.exists() and not target.is_file():
        staged = None
    try:
        if staged is not None:
            staged.touch(exist_ok=False)
    except OSError:
        staged = None
    if staged is None:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    try:
        with open(staged, "w", encoding="utf-8") as handle:
            handle.write(text)
        if target.exists():
            shutil.copymode(target, staged)
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)


def print_renderable(renderable, output: str | None) -> None:
    """A rich renderable to the terminal, or as plain text to ``output``."""
    if output is None:
        _to_stdout(lambda: print_whole(stdout_console(), renderable))
        return
    write_output(render_text(renderable), output)


#: the process's stdout while a computing command points ``sys.stdout`` at stderr (innermost last)
_RESULTS_STDOUT: list = []


@contextlib.contextmanager
def prints_to_stderr():
    """While a command computes, ``print`` writes to stderr; the results still go to stdout.

    A user's model module prints on import, in its builder or in its forward ("mynets
    imported"). That text came before a ``--format json`` report on stdout, and the report did
    not parse. (Text that C code writes to file descriptor 1 itself is not redirected.)
    """
    real = sys.stdout
    if real is None or real is sys.stderr:  # stdout closed (>&-), or already stderr
        yield
        return
    _RESULTS_STDOUT.append(real)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _RESULTS_STDOUT.pop()


def computes(command: Callable) -> Callable:
    """A command's callback run under :func:`prints_to_stderr` (its --help is printed before)."""
    import functools

    @functools.wraps(command)
    def run(*args, **kwargs):
        with prints_to_stderr():
            return command(*args, **kwargs)

    return run


def _to_stdout(write: Callable[[], None], stream: int = 1) -> None:
    """Run ``write`` and flush stdout; a stdout that cannot take the text (``> /dev/full``, a
    full disk) is a one-line error. A closed pipe (``| head``) propagates, and click ends
    quietly as before. Either way stdout is pointed at /dev/null, so that the flush at exit
    does not fail a second time. Under :func:`prints_to_stderr` this is the process's stdout."""
    ctx = click.get_current_context(silent=True)
    has_output = ctx is not None and any(p.name == "output" for p in ctx.command.params)
    hint = "; write to a file with -o/--output instead" if has_output and stream == 1 else ""
    where = "standard output" if stream == 1 else "standard error"  # -o /dev/stderr
    if sys.stdout is None and stream == 1:  # started with it closed (>&-)
        raise click.ClickException(f"cannot write to {where}: it is closed{hint}")
    results = contextlib.redirect_stdout(_RESULTS_STDOUT[-1]) if _RESULTS_STDOUT else contextlib.nullcontext()
    with results:
        try:
            write()
            sys.stdout.flush()
        except BrokenPipeError:
            _discard_stdout()
            raise
        except OSError as error:
            _discard_stdout()
            raise click.ClickException(f"cannot write to {where}: {error.strerror or error}{hint}") from None


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture stdout)
        pass


def print_report(report, fmt: str, output: str | None) -> None:
    """One report in ``fmt`` (table, json, csv, markdown) to stdout or ``output``."""
    from robustbench_gcp.reports import one_report

    if fmt == "table":
        print_renderable(one_report.render_table(report), output)
        return
    if fmt == "json":
        text = to_json(report.to_json())
    elif fmt == "csv":
        text = one_report.to_long_csv(report)
    else:
        text = one_report.to_report_markdown(report)
    write_output(text, output)
    if fmt == "csv":
        _notes_to_stderr(report.notes)


def _notes_to_stderr(notes) -> None:
    """A CSV table has no room for the notes the other formats carry (why a cell is empty, what
    a mean averages): they go to standard error, one line each, as the terminal table prints them."""
    for note in notes:
        click.echo(f"note: {printable(note)}", err=True)


def print_comparison(reports, comparisons, *, fmt: str, output: str | None, layout: str = "long",
                     plot_dir: str | None = None, title: str = "") -> None:
    """Reports and their comparisons in ``fmt`` to stdout or ``output``; plots into ``plot_dir``."""
    from robustbench_gcp.reports.many_reports import render_comparison

    rendered = render_comparison(reports, comparisons, fmt=fmt, layout=layout, title=title)
    if isinstance(rendered, str):
        write_output(rendered, output)
    else:
        print_renderable(rendered, output)
    if fmt == "csv":
        from robustbench_gcp.reports.many_reports import all_notes

        # the long table holds each report's own figures, the wide one the comparisons'
        _notes_to_stderr(all_notes(reports, comparisons if layout == "wide" else []))
    if plot_dir:
        from robustbench_gcp.errors import FiguresNotWritten
        from robustbench_gcp.reports.plots import earlier_figures, write_plots

        not_drawn: list[str] = []
        failure = None
        try:
            written = write_plots(reports, plot_dir, not_drawn)
        except FiguresNotWritten as error:  # the figures that were written are named, then the error
            written, failure = error.written, error
        for path in written:
            click.echo(f"wrote {path}", err=True)
        for why in not_drawn:
            click.echo(f"--plot: {printable(why)}", err=True)
        if failure is not None:
            raise failure
        earlier = earlier_figures(plot_dir, written)
        if earlier:  # a reused folder: say which of its figures are not of these reports
            names = ", ".join(p.name for p in earlier[:5]) + (", ..." if len(earlier) > 5 else "")
            click.echo(f"--plot: {len(earlier)} figure{'s' * (len(earlier) > 1)} in {plot_dir} "
                       f"{'are' if len(earlier) > 1 else 'is'} from an earlier report, not of these "
                       f"(left as {'they were' if len(earlier) > 1 else 'it was'}): {names}", err=True)
        if not written and not not_drawn:  # the clean suite has none: said, rather than nothing written
            from robustbench_gcp.suites import all_suites

            kinds = ", ".join(dict.fromkeys(r.kind for r in reports)) or "no reports"
            drawn = ", ".join(s.kind for s in all_suites() if s.plots())
            click.echo(f"--plot: no figures for these reports ({kinds}); the {drawn} suites have "
                       "figures", err=True)
