"""Rich progress bars on stderr, fed by the engine's progress events."""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from robustbench_gcp.engine.runner import ProgressHook
from robustbench_gcp.errors import printable


class _Rate(ProgressColumn):
    """Images per second: ``812.3 img/s``, or ``812.3/s`` where the line is short."""

    compact = False

    def render(self, task) -> Text:
        if task.fields.get("batch"):
            return Text("")
        speed = task.finished_speed or task.speed
        unit = "/s" if self.compact else " img/s"
        return Text(f"{speed:6.1f}{unit}" if speed else f"     -{unit}", style="progress.data.speed")


class _Label(ProgressColumn):
    """A bar's label, cut in the middle to ``width`` characters where longer ("demo-isq…eig]
    clean"): its end (a variant, a severity, the shard) says most."""

    def __init__(self, width: int, ellipsis: str = "…"):
        super().__init__(table_column=Column(no_wrap=True))
        self.width, self.ellipsis = width, ellipsis

    def render(self, task) -> Text:
        return Text(middle_cut(printable(task.description), self.width, self.ellipsis), style="bold")


def middle_cut(text: str, width: int, ellipsis: str = "…") -> str:
    """``text`` in at most ``width`` characters: its start and its end around ``ellipsis`` ("..." where
    the console cannot write "…")."""
    if len(text) <= width:
        return text
    head = max(0, (width - len(ellipsis)) // 3)
    return text[:head] + ellipsis + text[len(text) - max(0, width - len(ellipsis) - head):]


#: widths of the figures: the rate ("123456.7 img/s", compact "123456.7/s"), a time ("10:00:00");
#: the least label
RATE_WIDTH, COMPACT_RATE_WIDTH, TIME_WIDTH, LEAST_LABEL = 14, 10, 8, 6


def stderr_console() -> Console:
    return Console(stderr=True, emoji=False)  # a label's ':lock:' is no emoji (helper-236)


#: seconds between two progress lines where stderr is a file (:class:`LineProgress`, :func:`item_bar`)
LINE_INTERVAL = 30.0


@contextlib.contextmanager
def item_bar(total: int, what: str, interval: float = LINE_INTERVAL) -> Iterator[Callable[[str], None]]:
    """A transient bar on stderr over ``total`` items done one after another (the bench commands'
    corruptions, severities, sequences); yields a callback taking the label of the item started
    next. The display starts with the first item, so that a command that fails before it leaves
    no blank line above its error. Where stderr is a file or a dumb terminal (rich would draw
    nothing until the end, and leave a blank line), a plain line names the item started, the first
    and then at most one every ``interval`` seconds."""
    console = stderr_console()
    if not console.is_interactive:
        last = None

        def say(label: str) -> None:
            nonlocal last, done
            now = time.monotonic()
            if last is None or now - last >= interval:
                last = now
                console.print(escape(f"{what}: {label} ({done + 1}/{total})"), soft_wrap=True,
                              highlight=False)
            done += 1

        done = 0
        yield say
        return
    # the label as it is: no markup, no :emoji: codes (helper-238)
    bar = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                   console=console, transient=True)
    task = bar.add_task(what, total=total)
    started = False

    def advance(label: str) -> None:
        nonlocal started
        if started:
            bar.advance(task)
        else:
            bar.start()
            started = True
        bar.update(task, description=f"{what}: {label}")

    try:
        yield advance
    finally:
        if started:
            bar.stop()


class RichProgress(ProgressHook):
    """An overall bar (images, images/s, ETA) and a bar for the cell in flight.

    For a batch of evaluations (compare, demo), :meth:`item` adds a bar over the
    batch and re-titles the image bar for each evaluation. The display starts with
    its first bar, so that a command that fails before any work (or finds all of it
    stored) leaves no empty bar or blank line on stderr.
    """

    def __init__(self, console: Console | None = None, title: str = "evaluating"):
        self.console = console or stderr_console()
        self.title = title
        # the figures keep their width, whatever the totals; the label gives way first (cut in the
        # middle), then the bar; below 100 columns the bar is shorter and the elapsed time goes
        self.wide = self.console.width >= 100
        self.bar = BarColumn(bar_width=24 if self.wide else 10)
        self.label, self.rate = _Label(16, "..." if self.console.options.ascii_only else "…"), _Rate()
        self.progress = Progress(
            self.label,
            self.bar,
            MofNCompleteColumn(),
            self.rate,
            *([TimeElapsedColumn()] if self.wide else []),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._fit()
        self.started = False
        self.total_task = None
        self.cell_task = None
        self.batch_task = None

    def _fit(self) -> None:
        """Give the label what the figures leave of the line, for the largest total shown; where
        that is too little, a shorter bar, then a shorter rate ("/s")."""
        counts = max((2 * len(str(int(task.total))) + 1 for task in self.progress.tasks if task.total),
                     default=9)  # "done/total"
        gaps = len(self.progress.columns) - 1
        bar = 24 if self.wide else 10
        for rate in (RATE_WIDTH, COMPACT_RATE_WIDTH):
            figures = counts + rate + TIME_WIDTH * (2 if self.wide else 1) + gaps
            room = self.console.width - figures - bar
            if room < LEAST_LABEL:
                bar = max(3, bar - (LEAST_LABEL - room))
                room = self.console.width - figures - bar
            if room >= LEAST_LABEL:
                break
        self.rate.compact = rate == COMPACT_RATE_WIDTH
        self.bar.bar_width = bar
        self.label.width = max(LEAST_LABEL, room)

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.progress.stop()

    def _add_task(self, description: str, **fields) -> TaskID:
        """A new bar; the first one starts the live display."""
        if not self.started:
            self.progress.start()
            self.started = True
        return self.progress.add_task(description, **fields)

    def _say(self, markup: str) -> None:
        """A dim line above the bars, one line however narrow the console (the terminal wraps); names
        from folders and stores with their control characters escaped."""
        self.console.print(f"[dim]{printable(markup)}[/dim]", soft_wrap=True)

    def _hide(self, *tasks: TaskID | None) -> None:
        for task in tasks:
            if task is not None:
                self.progress.update(task, visible=False)

    def plan(self, total_images: int, units: int, finished_units: int) -> None:
        """Say what the store already holds for the evaluation in hand (named: compare and the
        demo plan one per model and suite), and show a bar over the images left, none if none."""
        what = escape(self.title)  # markup, for _say
        if total_images == 0:  # everything reused: a line, not an empty 0/0 bar
            self._hide(self.total_task, self.cell_task)
            if units:
                self._say(f"{what}: reused from the store, nothing to compute")
            return
        if finished_units:
            self._say(f"{what}: {finished_units} of {units} (cell, shard) units already in the store; "
                      f"{units - finished_units} to compute")
        if self.total_task is None:
            self.total_task = self._add_task(self.title, total=total_images)
        else:
            self.progress.reset(self.total_task, total=total_images, description=self.title, visible=True)
        self._fit()

    def say(self, text: str) -> None:
        self._say(escape(text))

    def item(self, index: int, total: int, label: str) -> None:
        """Start evaluation ``index`` (0-based) of ``total`` in a batch."""
        description = f"[{index + 1}/{total}] {label}"
        if self.batch_task is None:
            self.batch_task = self._add_task(description, total=total, batch=True)
        else:
            self.progress.update(self.batch_task, description=description, completed=index)
        self._fit()
        self.title = label

    def item_done(self, index: int) -> None:
        if self.batch_task is not None:
            self.progress.update(self.batch_task, completed=index + 1)

    def cell_start(self, label: str, shard: int, n_shards: int, n_images: int) -> None:
        description = f"{label} [{shard + 1}/{n_shards}]" if n_shards > 1 else label
        if self.cell_task is None:
            self.cell_task = self._add_task(description, total=n_images)
        else:
            self.progress.reset(self.cell_task, total=n_images, description=description, visible=True)
        self._fit()

    def advance(self, n_images: int) -> None:
        self.progress.advance(self.total_task, n_images)
        if self.cell_task is not None:
            self.progress.advance(self.cell_task, n_images)

    def advance_total(self, n_images: int) -> None:
        self.progress.advance(self.total_task, n_images)

    def cell_done(self, label: str) -> None:
        pass


class LineProgress(RichProgress):
    """Progress as plain lines, for a stderr that is a file or a dumb terminal (nohup, SLURM, CI
    logs), where rich draws its bars once, at the end: the overall count, rate and time left
    every ``interval`` seconds, each evaluation of a batch as it starts, and the count at the end.
    """

    def __init__(self, console: Console | None = None, title: str = "evaluating",
                 interval: float = LINE_INTERVAL):
        super().__init__(console, title)
        self.interval = interval
        self.last = time.monotonic()
        self.cell = ""
        self.planned: str | None = None  # the title of the evaluation in hand, once planned
        self.elsewhere = 0  # of its images, those another process stored meanwhile
        self.by_ranks = 0  # and those this torchrun job's other ranks computed
        # a batch can take minutes (C&W, DeepFool, a landscape cell): a thread says the count while
        # none ends, so that a log never falls silent for longer than the interval
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.beat: threading.Thread | None = None

    def _add_task(self, description: str, **fields) -> TaskID:
        self.started = False  # no live display: nothing to stop
        return self.progress.add_task(description, **fields)

    def plan(self, total_images: int, units: int, finished_units: int) -> None:
        self._finish()
        super().plan(total_images, units, finished_units)
        # nothing to compute: no last line (the overall bar still holds the evaluation before)
        self.planned, self.cell, self.last = self.title if total_images else None, "", time.monotonic()
        self.elsewhere = self.by_ranks = 0
        if total_images and self.beat is None and self.interval > 0:
            self.beat = threading.Thread(target=self._beat, name="gcp-robust progress", daemon=True)
            self.beat.start()

    def _beat(self) -> None:
        while not self.stop.wait(max(0.1, self.interval - (time.monotonic() - self.last))):
            if self.planned is not None:
                self._line()

    def item(self, index: int, total: int, label: str) -> None:
        self._finish()  # the evaluation before, in a batch
        super().item(index, total, label)
        self._say(escape(f"[{index + 1}/{total}] {label}"))

    def _finish(self, stopped: bool = False) -> None:
        """The last line of the evaluation in hand, once, if it computed anything."""
        if self.planned is not None and self.total_task is not None:
            if self.progress.tasks[self.total_task].completed:
                self._line(last=True, stopped=stopped)
        self.planned = None

    def cell_start(self, label: str, shard: int, n_shards: int, n_images: int) -> None:
        super().cell_start(label, shard, n_shards, n_images)
        self.cell = f"{label} [{shard + 1}/{n_shards}]" if n_shards > 1 else label

    def advance(self, n_images: int) -> None:
        super().advance(n_images)
        self._line()

    def advance_total(self, n_images: int) -> None:
        super().advance_total(n_images)
        self.elsewhere += n_images
        self._line()

    def advance_ranks(self, n_images: int) -> None:
        super().advance_total(n_images)
        self.by_ranks += n_images
        self._line()

    def _line(self, *, last: bool = False, stopped: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if self.total_task is None or (not last and now - self.last < self.interval):
                return
            self.last = now
            task = self.progress.tasks[self.total_task]
            total, done = int(task.total or 0), int(task.completed)
            line = f"{self.planned or self.title}: {done:,}/{total:,} images"
            elapsed = task.finished_time or task.elapsed or 0.0
            if last:
                line += f" in {elapsed:.{0 if elapsed >= 10 else 1}f} s"
                # "660/660 images in 2.7 s" where this process computed 55 of them: the job's other ranks
                # (torchrun) apart from other processes (helper-262: ranks were "other processes")
                shares = [(n, who) for n, who in ((self.by_ranks, "the job's other ranks"),
                                                  (self.elsewhere, "other processes")) if n]
                if shares:
                    line += " (" + ", ".join(f"{n:,}{'' if i else ' of them'} by {who}"
                                             for i, (n, who) in enumerate(shares)) + ")"
                line += ", then stopped" if stopped else ""
            else:
                # rich's rate covers its last 30 s, empty where no batch ended in them: the mean since
                # the start stands in
                speed = task.speed or (done / elapsed if done and elapsed else None)
                line += f", {speed:.1f} img/s" if speed else ""
                if speed and total > done:
                    line += f", about {datetime.timedelta(seconds=round((total - done) / speed))} left"
                if not done:
                    line += f", {datetime.timedelta(seconds=round(elapsed))} so far"
                line += f" (now {self.cell})" if self.cell else ""
            self._say(escape(line))

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.beat is not None:
            self.beat.join()
        self._finish(stopped=exc[0] is not None)


class _Silent(ProgressHook):
    """The progress of torchrun ranks other than 0: nothing is shown."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def item(self, index: int, total: int, label: str) -> None: ...

    def item_done(self, index: int) -> None: ...


def progress_display(title: str) -> RichProgress | _Silent:
    """Bars on stderr (lines where it is not a terminal, or a dumb one), except on torchrun
    ranks other than 0."""
    from robustbench_gcp.engine.ranks import is_main_process

    if not is_main_process():
        return _Silent()
    console = stderr_console()
    return RichProgress(console, title) if console.is_interactive else LineProgress(console, title)
