"""The evaluation loop: shards of images through the cells of a run into the store.

The work of a run is a list of *tasks* (made by its suite), one per cell or group of
cells. Each task says where its images come from (an :class:`ImageSource`: folder,
preprocessing) and how a batch of them becomes counts (``process``). The engine

1. asks the store which (cell, shard) units are finished and drops them;
2. walks the remaining shards in order; for each shard and image source it
   leases the pending units in the store (other processes on the same store
   skip them, see :mod:`robustbench_gcp.store.leases`) and decodes the images
   once on CPU loader workers (the next shard is leased and prefetched in a
   background thread while the current one computes);
3. for every pending cell of that shard, moves batches to the device, lets the
   task transform and classify them, and commits the shard's counts in one
   transaction (a crash loses at most the shard in flight);
4. waits for the units other processes still compute, so that the run is complete
   when it returns.

Nothing here prints: progress goes to a :class:`ProgressHook`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from robustbench_gcp.data.folders import IMG_EXTENSIONS, ImageList, check_released_files
from robustbench_gcp.data.loader import PROTOCOL_INTERPOLATION, Preprocess, iterate_batches
from robustbench_gcp.engine import stops
from robustbench_gcp.engine.classifier import Classifier
from robustbench_gcp.engine.device import (
    memory_message,
    out_of_memory,
)
from robustbench_gcp.engine.seeding import image_seeds
from robustbench_gcp.errors import DeviceMemoryError, ModelCodeError, NonFiniteError, counted, listed
from robustbench_gcp.store import CellKey, Claim, RunInfo, ShardResult, Store

WAIT_SECONDS = 1.0  # how often a run whose last units other processes hold looks at the store again


def protocol_resize(crop: int) -> int:
    """The shorter side ImageNet-C / -P resize to before their ``crop`` px centre crop: the released
    datasets' 256 / 224 ratio (256 for 224, 73 for 64, 342 for 299)."""
    return round(crop * 256 / 224)


@dataclass(frozen=True)
class ImageSource:
    """Where the images of a cell live and how they are preprocessed.

    ``released=True`` marks released files (ImageNet-C / -P, Tiny-ImageNet-C / -P cell
    folders: files are looked up as ``<root>/<wnid>/<file name>`` whatever the layout of
    the clean data; CIFAR-10/100-C and CIFAR-10-P arrays), which are not resized.
    ``video_frames`` marks frame sequences: released ImageNet-P videos
    (``<root>/<wnid>/<stem>.mp4`` with that many frames of ``crop_size`` px) or CIFAR-10-P rows.
    ``interpolation`` is the resize filter (the model's; the protocol's, PIL bilinear, by
    default). ``reader`` says how images are stored: ``files`` (an image file per name),
    ``cifar-pickle`` (``root`` is a CIFAR python batch), ``npy`` (``root`` is a uint8 .npy
    array, a released CIFAR-10-C file: image i is row ``row_offset + i``) or ``npy-sequences``
    (a released CIFAR-10-P file); array images are used at their size. Every field is part of
    the source's identity: the engine decodes a shard once per distinct source, so two sources
    that differ in interpolation are decoded apart.
    """

    root: Path
    resize_size: int | None = 256
    crop_size: int = 224
    released: bool = False
    video_frames: int | None = None
    interpolation: str = PROTOCOL_INTERPOLATION
    reader: str = "files"
    row_offset: int = 0
    #: ``crop_size`` is a window that may extend beyond the resized image (ImageNet-P's
    #: geometric base images): zero outside it, its size recorded (see ``Preprocess``)
    window: bool = False
    #: the crop placed so that its centre crop of this side is the image's (``Preprocess``)
    centred_on: int | None = None
    #: every image is ``crop_size`` square (a dataset of one size): another size is an error
    exact: bool = False

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(self.resize_size, self.crop_size, self.interpolation, self.window, self.centred_on,
                          self.exact)

    def as_protocol(self) -> ImageSource:
        """These images as ImageNet-C / -P make their base images: resized with the protocol's
        PIL bilinear (:data:`~robustbench_gcp.data.loader.PROTOCOL_INTERPOLATION`) whatever the
        model's interpolation, at the released datasets' 256 / 224 ratio to the model's crop
        (:func:`protocol_resize`) whatever the model's resize; the same object when that is
        already the case (every CNN of the registry)."""
        # before 0.7.13 the model's own resize (232 for torchvision's V2 weights): its cells differed
        # from the released files' (identity.run_identity marks the runs that had that base)
        size = None if self.resize_size is None else protocol_resize(self.crop_size)
        if self.interpolation == PROTOCOL_INTERPOLATION and size == self.resize_size:
            return self
        return dataclasses.replace(self, interpolation=PROTOCOL_INTERPOLATION, resize_size=size)

    def paths(self, images: ImageList, positions: Sequence[int]) -> list[Path]:
        if not self.released:
            return [self.root / images.names[p] for p in positions]
        paths = []
        for p in positions:
            name = images.names[p]
            if "/" not in name:  # flat val folder: released files sit in wnid folders
                name = f"{images.classes[images.labels[p]]}/{name}"
            if self.video_frames is not None and not name.lower().endswith(".mp4"):  # --data's image
                name = str(Path(name).with_suffix(".mp4"))
            paths.append(self.root / name)
        return paths

    def open(self, images: ImageList, positions: Sequence[int], *, batch_size: int,
             workers: int) -> Iterator[torch.Tensor]:
        """The images at ``positions`` of ``images`` in batches (uint8 (B, 3, H, W) or videos),
        their loader's workers started now, in the calling thread
        (:func:`~robustbench_gcp.data.loader.started`); decoded as they are iterated."""
        if self.reader != "files":
            from robustbench_gcp.data.array_files import load_array_rows

            rows = [self.row_offset + int(images.names[p]) for p in positions]
            return (load_array_rows(self.root, rows, reader=self.reader) for _ in (0,))  # read when asked
        return self.open_paths(self.paths(images, positions), batch_size=batch_size, workers=workers)

    def load(self, paths: Sequence[Path], *, batch_size: int, workers: int) -> torch.Tensor:
        """Decode ``paths``: uint8 (N, 3, H, W) images or (N, T, 3, H, W) videos."""
        return joined(self.open_paths(paths, batch_size=batch_size, workers=workers))

    def open_paths(self, paths: Sequence[Path], *, batch_size: int, workers: int) -> Iterator[torch.Tensor]:
        if self.video_frames is not None:
            from robustbench_gcp.data.video import iterate_video_batches

            batches = iterate_video_batches(paths, frames=self.video_frames, size=self.crop_size,
                                            batch_size=max(1, batch_size // 8), workers=workers)
        else:
            batches = iterate_batches(paths, self.preprocess, batch_size=batch_size, workers=workers)
        return (batch for batch, _ in batches)


def joined(batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """The batches of :meth:`ImageSource.open` (or ``open_paths``) as one tensor."""
    return torch.cat(list(batches))


def check_released_sources(sources: Sequence[ImageSource], images: ImageList, *, data: bool,
                           whole: bool) -> None:
    """Every released folder of a run holds the files of its ``images``, before any compute:
    ``--data``'s (``data``), else the first folder's, and then, when the run takes all of them
    (``whole``: no ``--limit``), no more (a first folder left partial would shrink every cell).

    Raises:
        DataError: the first folder that lacks files, or holds more, naming them.
    """
    first = None if data else sources[0].root
    extensions = (".mp4",) if sources and sources[0].video_frames is not None else IMG_EXTENSIONS
    sources = list({source.root: source for source in sources}.values())  # a folder listed once
    for source in sources[0 if data else 1:]:
        check_released_files(source.root, source.paths(images, range(len(images))), first=first,
                             whole=whole and not data, extensions=extensions)


class Task(Protocol):
    """The work of one or more cells that are computed together on the same images.

    ``keys`` names the cells (one for a classification cell; several when one
    pass yields several cells, e.g. an attack at all its epsilons). ``process``
    returns one :class:`ShardResult` per key, in order. The cells of a task are
    committed together, shard by shard. A task may also have a ``progress_label``
    attribute, its name in progress bars (see :func:`task_label`).
    """

    keys: tuple[CellKey, ...]
    source: ImageSource

    def process(
        self, images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], ctx: Context
    ) -> Sequence[ShardResult]:
        """Counts for a batch: ``images`` uint8 (B, 3, H, W) and ``labels`` (B,) on the device."""
        ...


def task_label(task: Task) -> str:
    """The task's name in progress bars and errors: its ``progress_label`` when it has one (a
    name for people, e.g. an attack's epsilons as 1/255 where its cell keys hold the exact
    floats), else its first cell's label and how many cells come with it."""
    own = getattr(task, "progress_label", None)
    if own:
        return own
    first = task.keys[0].label
    return first if len(task.keys) == 1 else f"{first} (+{len(task.keys) - 1})"


class ProgressHook:
    """Receives progress events from the engine; the default does nothing. Subclass it and
    override the methods you need (``run(plan, progress=MyHook())``)."""

    def plan(self, total_images: int, units: int, finished_units: int) -> None:
        """Once, before any compute: ``total_images`` still to compute (0 where everything is
        stored), of ``units`` units of work (a cell's shard), ``finished_units`` of them stored."""

    def cell_start(self, label: str, shard: int, n_shards: int, n_images: int) -> None:
        """A unit begins: shard ``shard`` (0-based) of ``n_shards`` of the cell ``label``
        (``fog/3``), ``n_images`` images."""

    def advance(self, n_images: int) -> None:
        """``n_images`` more images computed by this process."""

    def advance_total(self, n_images: int) -> None:
        """Images computed elsewhere (another process on the store): the overall count only."""

    def advance_ranks(self, n_images: int) -> None:
        """Images this torchrun job's other ranks computed: the overall count only (by default as
        :meth:`advance_total`)."""
        self.advance_total(n_images)

    def cell_done(self, label: str) -> None:
        """The unit of the cell ``label`` begun last is stored."""

    def say(self, text: str) -> None:
        """A line for the person watching (a run that starts afresh beside another ...)."""


#: what the engine calls on a progress hook (:class:`ProgressHook`), with how many arguments
#: (``advance_total``, for other torchrun ranks' images, is optional)
HOOK_METHODS = {"plan": 3, "cell_start": 4, "advance": 1, "cell_done": 1, "say": 1}


def check_progress(progress: Any) -> None:
    """Raise a TypeError unless ``progress`` is None or a progress hook (a method missing failed
    after the run was made, or in a rank's round), an instance (the class of the README's snippet
    failed in the engine's ``plan()`` call, "missing 1 required positional argument": helper-266)."""
    if progress is None:
        return
    if isinstance(progress, type) and not all(  # (a class of static methods serves)
            isinstance(inspect.getattr_static(progress, name, None), (staticmethod, classmethod))
            for name in HOOK_METHODS):
        raise TypeError(f"`progress` should be a ProgressHook instance: give {progress.__name__}(), not the "
                        "class")
    missing = [name for name in HOOK_METHODS if not callable(getattr(progress, name, None))]
    if missing:
        methods = "method" if len(missing) == 1 else "methods"
        raise TypeError(f"`progress` should be a ProgressHook (or None): {progress!r} has no "
                        f"{listed(missing)} {methods}. Subclass robustbench_gcp.ProgressHook (whose "
                        "methods do nothing) and override those you need")
    optional = {name: 1 for name in ("advance_total", "advance_ranks")
                if callable(getattr(progress, name, None))}
    for name, count in {**HOOK_METHODS, **optional}.items():  # (other arguments failed mid-run)
        try:
            signature = inspect.signature(getattr(progress, name))
        except (TypeError, ValueError):  # a builtin without one: it will say
            continue
        try:
            signature.bind(*[None] * count)
        except TypeError:
            wanted = ", ".join(inspect.signature(getattr(ProgressHook(), name)).parameters)
            given = ", ".join(signature.parameters)
            raise TypeError(f"`progress`: its {name}({given}) cannot take the engine's {count} "
                            f"argument{'s' if count > 1 else ''}: {name}({wanted})") from None


def advance_total(progress: ProgressHook, n_images: int, *, ranks: bool = False) -> None:
    """``progress.advance_total(n_images)`` (``advance_ranks`` for the images of this job's other
    ranks, ``advance_total`` where it has no such method) where the hook has it: a hook need not
    subclass :class:`ProgressHook`, and these methods are optional in one (:data:`HOOK_METHODS`)."""
    method = (getattr(progress, "advance_ranks", None) if ranks else None) or \
        getattr(progress, "advance_total", None)
    if method is not None:
        method(n_images)


@dataclass
class Context:
    """What tasks need besides their batch."""

    classifier: Classifier
    seed: int = 0
    batch_size: int = 32  # images per forward pass (tasks that expand images into frames chunk by it)
    cache: dict = field(default_factory=dict)  # per-run objects tasks build once (foolbox model)

    @property
    def device(self) -> torch.device:
        return self.classifier.device

    def seeds(self, token: str, indices: Sequence[int]) -> list[int]:
        return image_seeds(self.seed, token, indices)


def classification_counts(logits: torch.Tensor, labels: torch.Tensor) -> ShardResult:
    """Top-1 / top-5 errors and per-image top-1 correctness of a batch.

    The counts and the correctness stay on the device (0-dim and bool tensors): nothing waits
    for the device per batch; the engine's accumulator brings a shard's totals to the host
    once (:meth:`_Accumulator.result`).

    Ties are ranked by class index, as everywhere in the tool (``argmax``, the flip rates of
    :func:`robustbench_gcp.metrics.flip_totals`): the top-1 class is the first maximal class, and a
    NaN logit ranks above every number, as in ``argmax`` and ``sort``. (``topk`` orders ties as
    its kernel does: a model of constant logits got 100% top-1 error and 0% top-5.)
    """
    classes = logits.shape[1]
    k = min(5, classes)
    label = labels[:, None]
    outside = (labels < 0) | (labels >= classes)  # no output of the model's: wrong (as topk had it)
    own = logits.gather(1, label.clamp(0, classes - 1))  # each image's logit of its label
    nan, own_nan = torch.isnan(logits), torch.isnan(own)
    before = torch.arange(classes, device=logits.device) < label
    rank = (((logits > own) | (nan & ~own_nan)).sum(1)  # above it; then tied with it and before it
            + (((logits == own) | (nan & own_nan)) & before).sum(1))
    rank = rank.masked_fill(outside, classes)
    correct1 = rank == 0
    correct5 = rank < k
    return ShardResult(
        n=int(labels.numel()),
        counts={"top1_errors": (~correct1).sum(), "top5_errors": (~correct5).sum()},
        correct=correct1,
    )


@dataclass
class _Accumulator:
    """A cell's shard, summed batch by batch: counts, correctness and per-image values may be
    device tensors (added on the device); :meth:`result` brings them to the host once."""

    n: int = 0
    counts: dict[str, float | torch.Tensor] = field(default_factory=dict)
    correct: list[np.ndarray | torch.Tensor] = field(default_factory=list)
    extra: list[np.ndarray | torch.Tensor] = field(default_factory=list)

    def add(self, part: ShardResult) -> None:
        self.n += part.n
        for name, value in part.counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        if part.correct is not None:
            self.correct.append(part.correct)
        if part.extra is not None:
            extra = part.extra
            self.extra.append(extra.float() if isinstance(extra, torch.Tensor)
                              else np.asarray(extra, dtype=np.float32))

    def result(self) -> ShardResult:
        counts = {name: value.item() if isinstance(value, torch.Tensor) else value
                  for name, value in self.counts.items()}
        correct = _on_host(self.correct).astype(bool) if self.correct else None
        extra = _on_host(self.extra) if self.extra else None
        return ShardResult(n=self.n, counts=counts, correct=correct, extra=extra)


def _on_host(parts: list) -> np.ndarray:
    """Batch parts (device tensors or arrays) joined on the host: device tensors are joined where
    they are and copied once."""
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(parts).cpu().numpy()
    return np.concatenate([p.cpu().numpy() if isinstance(p, torch.Tensor) else p for p in parts])


@dataclass(frozen=True)
class EngineOptions:
    batch_size: int = 32
    workers: int = 0
    shard_size: int = 500


@dataclass
class ExecutionStats:
    """Counts of a run's (cell, shard) units: a task of several cells (an attack's epsilons,
    ImageNet-P's difficulties) counts each, as reports of the store count a partial run's shards."""

    units_total: int = 0
    units_skipped: int = 0
    units_computed: int = 0
    images_computed: int = 0
    seconds: float = 0.0


def shard_ranges(n_images: int, shard_size: int) -> list[range]:
    return [range(start, min(start + shard_size, n_images)) for start in range(0, n_images, shard_size)]


@dataclass(frozen=True)
class Load:
    """One shard of one image source, and the tasks (by index) that still need it."""

    shard: int
    source: int
    tasks: tuple[int, ...]


@dataclass
class Workload:
    """The unfinished work of a run: loads in shard order, and counts for progress."""

    loads: list[Load]
    sources: list[ImageSource]
    total_images: int
    units_total: int
    units_skipped: int  # the units of the (task, shard) pairs the store has finished
    units_stored: int  # every unit the store has: of a task's other cells too, computed again with them


def cell_ids_of(tasks: Sequence[Task], store: Store, run: RunInfo) -> dict[CellKey, int]:
    ids = {key: store.cell_id(run.id, key) for task in tasks for key in task.keys}
    if len(ids) != sum(len(task.keys) for task in tasks):
        raise ValueError("two tasks of a run name the same cell")
    return ids


def task_sources(tasks: Sequence[Task]) -> list[ImageSource]:
    """The image sources of ``tasks`` in their first task's order: a :class:`Load` names its
    source by its index here (so every torchrun rank must make the same list)."""
    return list(dict.fromkeys(task.source for task in tasks))


def commit_unit(store: Store, cell_ids: dict[CellKey, int], task: Task, shard: int,
                results: Sequence[ShardResult], seconds: float, stats: ExecutionStats) -> None:
    """Store a computed (task, shard) unit and count it in ``stats``: its cells another process
    stored first (the first write wins) as reused, the others as computed."""
    new = store.commit_shards([cell_ids[key] for key in task.keys], shard, results, seconds)
    stats.units_computed += new
    stats.units_skipped += len(task.keys) - new
    stats.images_computed += results[0].n


def make_workload(tasks: Sequence[Task], store: Store, run: RunInfo,
                  cell_ids: dict[CellKey, int]) -> Workload:
    """Drop the (task, shard) units the store has finished; group the rest by shard and source
    (the counts are of (cell, shard) units, as :class:`ExecutionStats`'s)."""
    shards = shard_ranges(run.n_images, run.shard_size)
    sources = task_sources(tasks)
    pending: dict[int, list[int]] = {}
    skipped = stored = 0
    for index, task in enumerate(tasks):
        each = [store.done_shards(cell_ids[key]) & set(range(len(shards))) for key in task.keys]
        done = set.intersection(*each)
        stored += sum(map(len, each))
        for shard in range(len(shards)):
            if shard in done:
                skipped += len(task.keys)
            else:
                pending.setdefault(shard, []).append(index)
    loads = []
    for shard in sorted(pending):
        for source_index, source in enumerate(sources):
            chosen = tuple(i for i in pending[shard] if tasks[i].source == source)
            if chosen:
                loads.append(Load(shard, source_index, chosen))
    total = sum(len(shards[load.shard]) * len(load.tasks) for load in loads)
    units = sum(len(task.keys) for task in tasks) * len(shards)
    return Workload(loads, sources, total, units, skipped, stored)


NOTHING_STORED = "nothing was stored for this shard"


def compute(
    loads: Sequence[Load],
    tasks: Sequence[Task],
    sources: Sequence[ImageSource],
    images: ImageList,
    shard_size: int,
    ctx: Context,
    options: EngineOptions,
    progress: ProgressHook,
    claim: Callable[[Load], Load | None] | None = None,
) -> Iterator[tuple[Load, int, list[ShardResult], float]]:
    """Compute ``loads`` in order; yield (load, task index, one result per cell key, seconds) per task.

    Each load's images are decoded once (on CPU loader workers) for all its tasks; the next
    load is decoded in a background thread meanwhile (its loader's workers started in the calling
    thread). ``claim``, if given, is asked for each load just before it is decoded and returns the
    part of it to compute here (None: nothing); it runs in the calling thread.
    """
    shards = shard_ranges(len(images), shard_size)
    labels_all = torch.tensor(images.labels, dtype=torch.long)
    pin = ctx.device.type == "cuda"

    def start(item: Load) -> _Prefetch:
        """The shard's loader started here, in the main thread (its workers forked from another
        thread may deadlock: :func:`~robustbench_gcp.data.loader.started`), read in a thread."""
        source = sources[item.source]
        batches = source.open(images, shards[item.shard], batch_size=max(options.batch_size, 16),
                              workers=options.workers)
        return _Prefetch(functools.partial(decode, pinned=pin and source.video_frames is None), batches)

    def decode(batches: Iterator[torch.Tensor], pinned: bool) -> torch.Tensor:
        loaded = joined(batches)
        if not pinned:
            return loaded
        with torch.cuda.device(ctx.device):  # this thread's current GPU is the rank's, not GPU 0
            return loaded.pin_memory()

    claimed = iter(loads) if claim is None else (got for got in map(claim, loads) if got is not None)
    item = next(claimed, None)
    if item is None:
        return
    pending = start(item)
    try:
        while item is not None:
            shard_images = pending.result()
            following = next(claimed, None)
            pending = start(following) if following is not None else None
            positions = shards[item.shard]
            shard_labels = labels_all[positions.start:positions.stop]
            shard_indices = images.indices[positions.start:positions.stop]
            for task_index in item.tasks:
                task = tasks[task_index]
                t0 = time.perf_counter()
                label = task_label(task)
                where = f"{label}, shard {item.shard + 1} of {len(shards)}"
                progress.cell_start(label, item.shard, len(shards), len(positions))
                accs = [_Accumulator() for _ in task.keys]
                try:
                    for batch, labels, indices in _batches(
                        shard_images, shard_labels, shard_indices, options.batch_size, ctx
                    ):
                        stops.raise_pending()  # a Ctrl-C or SIGTERM whose exception Python dropped
                        parts = task.process(batch, labels, indices, ctx)
                        for acc, part in zip(accs, parts, strict=True):
                            acc.add(part)
                        progress.advance(len(indices))
                    ctx.classifier.check_finite()
                except (NonFiniteError, ModelCodeError) as error:
                    raise type(error)(f"{where}: {error}; {NOTHING_STORED}") from error.__cause__
                except DeviceMemoryError as error:  # a task that said it itself (the attacks)
                    raise DeviceMemoryError(f"{where}: {error}; {NOTHING_STORED}") from None
                except RuntimeError as error:  # torch.OutOfMemoryError is one
                    if not out_of_memory(error):
                        raise
                    message = memory_message("the cell", options.batch_size, ctx.device, error)
                    raise DeviceMemoryError(f"{where}: {message}; {NOTHING_STORED}") from None
                progress.cell_done(label)
                yield item, task_index, [acc.result() for acc in accs], time.perf_counter() - t0
            item = following
    finally:  # stopped early (an error, the consumer closed): let the decode under way end first
        if pending is not None:
            pending.wait()


class _Prefetch:
    """``fn(arg)`` run in a background thread of its own; ``result()`` waits for it and returns
    it or raises what it raised.

    A plain thread, not a ``concurrent.futures`` executor: a DataLoader worker forked from an
    executor's thread inherited the executor's exit hook, which joins that thread, the worker's
    own, so every worker ended with exit code 1 ("DataLoader worker exited unexpectedly" where
    torch's SIGCHLD handler was installed). Workers are no longer forked here at all (the loader
    is started before, in the main thread), but ``fn`` may start processes of its own.
    """

    def __init__(self, fn: Callable[[Any], torch.Tensor], arg: Any) -> None:
        self._value: torch.Tensor | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, arg), name="gcp-robust-loader",
                                        daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[Any], torch.Tensor], arg: Any) -> None:
        try:
            self._value = fn(arg)
        except BaseException as error:  # handed to the thread that asks for the result
            self._error = error

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> torch.Tensor:
        self.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        value, self._value = self._value, None
        return value


def execute(
    tasks: Sequence[Task],
    images: ImageList,
    store: Store,
    run: RunInfo,
    ctx: Context,
    options: EngineOptions,
    progress: ProgressHook | None = None,
) -> ExecutionStats:
    """Compute every unfinished (cell, shard) of ``tasks`` and commit it to ``store``.

    Every (task, shard) is committed as soon as it is computed: a killed process
    loses at most the shard in flight. Processes sharing ``store`` share the work:
    each leases a unit before computing it and skips units leased by others; when
    only those are left, it waits until they are stored (or takes them over once
    their leases expire), so that the run is complete when this returns. Units
    stored by others count as reused in the statistics.

    Raises:
        StoreError: the store is read-only and units are missing, or it is full.
    """
    progress = progress or ProgressHook()
    if store.read_only:
        check_all_stored(tasks, store, run)
    cell_ids = cell_ids_of(tasks, store, run)
    work = make_workload(tasks, store, run, cell_ids)
    stats = ExecutionStats(units_total=work.units_total, units_skipped=work.units_skipped)
    progress.plan(work.total_images, work.units_total, work.units_stored)
    started = time.perf_counter()
    shards = shard_ranges(run.n_images, run.shard_size)
    loads = work.loads
    said = False
    while loads:
        leasing = Leasing(store, tasks, cell_ids, shards, stats, progress)
        for item, task_index, results, seconds in compute(loads, tasks, work.sources, images, run.shard_size,
                                                          ctx, options, progress, claim=leasing):
            commit_unit(store, cell_ids, tasks[task_index], item.shard, results, seconds, stats)
        loads = leasing.busy
        if loads and not said:  # other processes compute these: look again in a moment
            said = True
            progress.say(waiting_words(loads, tasks, store))
        if loads:
            time.sleep(WAIT_SECONDS)
    store.checkpoint()
    stats.seconds = time.perf_counter() - started
    return stats


def check_all_stored(tasks: Sequence[Task], store: Store, run: RunInfo) -> None:
    """A read-only store serves a run only when it holds every unit.

    Raises:
        StoreError: ``store X is read-only (why): N shards still to compute; ...``.
    """
    missing = 0
    for task in tasks:
        done = store.shards_of_all([store.find_cell(run.id, key) for key in task.keys])
        missing += (run.n_shards - len(done & set(range(run.n_shards)))) * len(task.keys)  # (cell, shard)
    if missing:
        raise store.read_only_error(f"{counted(missing, 'shard')} still to compute")


def waiting_words(loads: Sequence[Load], tasks: Sequence[Task], store: Store) -> str:
    """What a run says when only ``loads`` are left and other processes hold them."""
    units = sum(len(tasks[i].keys) for load in loads for i in load.tasks)  # a task may hold several cells
    return (f"waiting for {units} (cell, shard) units that other processes hold; a stopped process's are "
            f"taken over at once on this machine, within {store.lease_seconds:.0f} s from another")


@dataclass
class Leasing:
    """The ``claim`` of :func:`execute` (and rank 0's in a torchrun job): leases a load's units in
    the store, one load at a time.

    Units stored meanwhile by another process count as reused (and advance the overall
    progress); units another live process holds are kept in ``busy`` for the next pass.
    """

    store: Store
    tasks: Sequence[Task]
    cell_ids: dict[CellKey, int]
    shards: list[range]
    stats: ExecutionStats
    progress: ProgressHook
    busy: list[Load] = field(default_factory=list)

    def __call__(self, load: Load) -> Load | None:
        groups = [[self.cell_ids[key] for key in self.tasks[i].keys] for i in load.tasks]
        claims = self.store.claim(load.shard, groups)
        for group in (group for group, got in zip(groups, claims, strict=True) if got is Claim.DONE):
            self.stats.units_skipped += len(group)
            advance_total(self.progress, len(self.shards[load.shard]))
        busy = tuple(i for i, got in zip(load.tasks, claims, strict=True) if got is Claim.BUSY)
        if busy:
            self.busy.append(Load(load.shard, load.source, busy))
        mine = tuple(i for i, got in zip(load.tasks, claims, strict=True) if got is Claim.MINE)
        return Load(load.shard, load.source, mine) if mine else None


def _batches(
    images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], batch_size: int, ctx: Context
) -> Iterator[tuple[torch.Tensor, torch.Tensor, Sequence[int]]]:
    non_blocking = ctx.device.type == "cuda"
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        yield (
            images[start:stop].to(ctx.device, non_blocking=non_blocking),
            labels[start:stop].to(ctx.device, non_blocking=non_blocking),
            indices[start:stop],
        )
