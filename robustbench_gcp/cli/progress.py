"""Rich progress bars on stderr, fed by the engine's progress events."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
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
    batch and re-titles the image bar for each evaluation.
    """

    def __init__(self, console: Console | None = None, title: str = "evaluating"):
        self.console = console or stderr_console()
        self.title = title
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.total_task = None
        self.cell_task = None
        self.batch_task = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def plan(self, total_images: int, units: int, finished_units: int) -> None:
        if finished_units:
            self.console.print(
                f"[dim]{finished_units} of {units} (cell, shard) units already in the store; "
                f"{units - finished_units} to compute[/dim]"
            )
        if self.total_task is None:
            self.total_task = self.progress.add_task(self.title, total=total_images)
        else:
            self.progress.reset(self.total_task, total=total_images, description=self.title)

    def item(self, index: int, total: int, label: str) -> None:
        """Start evaluation ``index`` (0-based) of ``total`` in a batch."""
        description = f"[{index + 1}/{total}] {label}"
        if self.batch_task is None:
            self.batch_task = self.progress.add_task(description, total=total, batch=True)
        else:
            self.progress.update(self.batch_task, description=description, completed=index)
        self.title = label

    def item_done(self, index: int) -> None:
        if self.batch_task is not None:
            self.progress.update(self.batch_task, completed=index + 1)

    def cell_start(self, label: str, shard: int, n_shards: int, n_images: int) -> None:
        description = f"{label} [{shard + 1}/{n_shards}]" if n_shards > 1 else label
        if self.cell_task is None:
            self.cell_task = self.progress.add_task(description, total=n_images)
        else:
            self.progress.reset(self.cell_task, total=n_images, description=description)

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
    from robustbench_gcp.engine.distributed import is_main_process

    return RichProgress(title=title) if is_main_process() else _Silent()
