"""Rich progress bars on stderr, fed by the engine's progress events."""

from __future__ import annotations

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


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        if task.fields.get("batch"):
            return Text("")
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} img/s" if speed else "     - img/s", style="progress.data.speed")


def stderr_console() -> Console:
    return Console(stderr=True)


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
        # figures are never cut or wrapped; a long label gives way first (ends in "…")
        # the figures keep their width; a long label ends in "…"; below 100 columns the bar is
        # shorter and the elapsed time goes (the time remaining stays)
        wide = self.console.width >= 100
        room = self.console.width - (62 if wide else 48)
        self.progress = Progress(
            TextColumn("[bold]{task.description}",
                       table_column=Column(no_wrap=True, overflow="ellipsis", max_width=max(16, room))),
            BarColumn(bar_width=24 if wide else 10),
            MofNCompleteColumn(),
            _Rate(),
            *([TimeElapsedColumn()] if wide else []),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.started = False
        self.total_task = None
        self.cell_task = None
        self.batch_task = None

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
        return self.progress.add_task(escape(description), **fields)

    def _say(self, markup: str) -> None:
        """A dim line above the bars, one line however narrow the console (the terminal wraps)."""
        self.console.print(f"[dim]{markup}[/dim]", soft_wrap=True)

    def _hide(self, *tasks: TaskID | None) -> None:
        for task in tasks:
            if task is not None:
                self.progress.update(task, visible=False)

    def plan(self, total_images: int, units: int, finished_units: int) -> None:
        """Say what the store already holds for the evaluation in hand (named: compare and the
        demo plan one per model and suite), and show a bar over the images left, none if none."""
        what = escape(self.title)
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
            self.progress.reset(self.total_task, total=total_images, description=escape(self.title),
                                visible=True)

    def say(self, text: str) -> None:
        self._say(escape(text))

    def item(self, index: int, total: int, label: str) -> None:
        """Start evaluation ``index`` (0-based) of ``total`` in a batch."""
        description = f"[{index + 1}/{total}] {label}"
        if self.batch_task is None:
            self.batch_task = self._add_task(description, total=total, batch=True)
        else:
            self.progress.update(self.batch_task, description=escape(description), completed=index)
        self.title = label

    def item_done(self, index: int) -> None:
        if self.batch_task is not None:
            self.progress.update(self.batch_task, completed=index + 1)

    def cell_start(self, label: str, shard: int, n_shards: int, n_images: int) -> None:
        description = f"{label} [{shard + 1}/{n_shards}]" if n_shards > 1 else label
        if self.cell_task is None:
            self.cell_task = self._add_task(description, total=n_images)
        else:
            self.progress.reset(self.cell_task, total=n_images, description=escape(description),
                                visible=True)

    def advance(self, n_images: int) -> None:
        self.progress.advance(self.total_task, n_images)
        if self.cell_task is not None:
            self.progress.advance(self.cell_task, n_images)

    def advance_total(self, n_images: int) -> None:
        self.progress.advance(self.total_task, n_images)

    def cell_done(self, label: str) -> None:
        pass


class _Silent(ProgressHook):
    """The progress of torchrun ranks other than 0: nothing is shown."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def item(self, index: int, total: int, label: str) -> None: ...

    def item_done(self, index: int) -> None: ...


def progress_display(title: str) -> RichProgress | _Silent:
    """Bars on stderr, except on torchrun ranks other than 0."""
    from robustbench_gcp.engine.ranks import is_main_process

    return RichProgress(title=title) if is_main_process() else _Silent()
