"""What ``eval`` says of a run before it computes, and its report keeps: a stored run of these
weights under another name, images read from another folder, results of a module you bring
reused, the store's other runs of the model that cannot be reused, how the labels were made
(:func:`~robustbench_gcp.pipeline.execution.run` gathers them)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from robustbench_gcp.data.folders import wnid_index
from robustbench_gcp.errors import counted, listed, real_path
from robustbench_gcp.pipeline.planning import Plan
from robustbench_gcp.reports.stored import random_weights_note, released_slot, without_implied
from robustbench_gcp.store import CellKey, RunInfo, Store
from robustbench_gcp.suites.base import variant_of


def absolute_path(source: str | None) -> str | None:
    """The images' folder or file (a checkpoint) as an absolute path without ``..``, as a new run
    records it: a report made in another working folder names it still."""
    return os.path.normpath(Path(source).expanduser().absolute()) if source else source


#: identity fields as messages name them (the others by their own names)
FIELD_NAMES = {"data": "images", "arch": "model", "sqrt": "--sqrt", "ns_iters": "--ns-iters",
                "shard_size": "shard size", "device_type": "device", "last_stride": "layer4 stride",
                "memory_format": "--channels-last", "structure": "the module's classes",
                # the marks of computations that changed: a run stored by an older version
                "arithmetic": "CUDA arithmetic (IEEE float32 since 0.7.1)",
                "draws": "CUDA random draws (in pieces of 16,384 values since 0.7.16)",
                "classifier": "the classifier's precision under --amp (float32 since 0.7.2)",
                "covariance": "the SVD-Pade covariance (DifferentiableSVD's since 0.7.2)"}



def differences(stored: dict, current: dict) -> str:
    """The identity fields of ``current`` whose values ``stored`` does not share, for messages
    ("data, seed"; the images are the identity's ``data``)."""
    keys = list(current)
    if "version" in current and "version" in stored:  # both whole: a field only the stored run has too
        keys += [k for k in stored if k not in current]
    elif "memory_format" in stored and "memory_format" not in current:  # planned: a contiguous run
        keys.append("memory_format")
    differ = without_implied([k for k in keys if stored.get(k) != current.get(k)])  # current: maybe planned
    if str(stored.get("arch", "")).startswith("module:") and current.get("arch") == "module":
        differ = [k for k in differ if k not in ("arch", "structure")]  # a module object's before 0.7.30
    return ", ".join(FIELD_NAMES.get(k, k) for k in differ)


def limit_notes(plan: Plan) -> list[str]:
    """The note on a ``--limit`` beyond the images there are (all of them are used), which eval
    says before it starts and its report keeps."""
    limit = plan.options.limit
    if limit is not None and limit > plan.available:
        return [f"--limit {limit} is more than the {plan.available} images: all of them were used"]
    return []


def released_size_notes(plan: Plan, info: RunInfo) -> list[str]:
    """The note on released ImageNet-C images or ImageNet-P frames (224 px) read for a model of
    another input size (a 299 or 384 px network, the 64 px demo models): they are given to it as
    they are, while its clean images take its own preprocessing. (CIFAR and Tiny-ImageNet refuse
    such a model before.)"""
    dataset = plan.dataset
    if getattr(plan.selection, "released", None) is None or dataset.image_size is not None:
        return []
    size, input_size = dataset.released_size, info.identity["preprocess"][1]
    if input_size == size:
        return []
    return [plan.suite.released_size_note(dataset, input_size, clean=plan.data is not None)]


def renamed_notes(before: str | None, info: RunInfo, kept_from: str | None = None) -> list[str]:
    """The note on a stored run of the same weights and settings under another name, which this
    one now labels: its results are reused, and reports show it under this name (it changed
    without a word, and ``report --models OLD`` then found nothing: helper-247). ``kept_from``:
    the name asked for, where a read-only store keeps the run's (helper-262: nothing was said)."""
    if kept_from is not None and before is not None and before != kept_from:
        return [f"the store holds a run of these weights and settings as {before}: its results are reused, "
                f"and reports show it as {before}, not {kept_from} (the store is read-only)"]
    if before is None or before == info.model:
        return []
    return [f"the store holds a run of these weights and settings as {before}: its results are reused, and "
            f"reports show it as {info.model} from now on (`report --models {info.model}`; a run takes the "
            "name it is evaluated under); to keep both names apart, give another --store"]


def taken_over_notes(label: str, taken: bool) -> list[str]:
    """The note on a module object's run stored before 0.7.30, found by its name then as now by its
    classes, which this run ``taken`` over: the classes it was computed with were not recorded
    (helper-295)."""
    if not taken:
        return []
    return [f"results stored for {label} before 0.7.30 (a module's run was found by its name and weights) "
            "are this module's now: the classes of the module they were computed with were not recorded; "
            "if it was another, give another --store"]


def moved_notes(plan: Plan, info: RunInfo) -> list[str]:
    """The note on a stored run first made from images in another folder: a run is found by its
    images' names and labels (a copy of the data elsewhere reuses it), not by their pixels."""
    # a folder recorded relative to another working directory (before 0.7.1) says nothing sure
    if plan.data is None or not info.data or not plan.images.source or not Path(info.data).is_absolute():
        return []
    if real_path(info.data) == real_path(absolute_path(plan.images.source)):
        return []
    return [f"results stored from the images in {info.data} are used for those in {plan.images.source}: "
            "the same file names and labels (a run is found by those, not by pixels); if the images "
            "differ, give another --store"]


def stored_shards(store: Store, run_id: int) -> int:
    """How many (cell, shard) units the run ``run_id`` holds."""
    return sum(len(store.done_shards(cell)) for cell, _ in store.cells(run_id))


def own_code_notes(plan: Plan, held: bool) -> list[str]:
    """The note on results stored for a module you bring (not torchvision's), when its run
    ``held`` some already: its run is found by its weights (and a module object's classes, a
    ``package.module:callable``'s name); code that changed since (a forward pass, a setting kept
    outside the state dict) cannot be seen, so reusing them is said."""
    from robustbench_gcp.models.external import TORCHVISION

    external = plan.model.external
    if not held or external is None or external.ref.startswith(TORCHVISION):
        return []
    found = "its weights and its classes" if external.module_object else f"{external.ref} and its weights"
    return [f"results stored for these weights are reused: a module you bring is found by {found}, not "
            "its code; if the code changed since, give another --store"]


def released_notes(plan: Plan, store: Store, info: RunInfo, keys: Sequence[CellKey]) -> list[str]:
    """Keep, per released cell of the plan (``keys``), the folder it is read from, and say where
    cells already stored were read from another one (before the run computes anything). A stored
    cell keeps the folder it was computed from; one with nothing stored takes this plan's. A run is
    found by the images' names and labels, not by the files' pixels, as for --data
    (:func:`moved_notes`); cells stored before 0.7.3 have no folder kept and are not said."""
    root = getattr(plan.selection, "released", None)
    if root is None:
        return []
    here = absolute_path(str(root))
    stored = store.notes(info.id)
    cells = {key: cell for cell, key in store.cells(info.id)}
    elsewhere: dict[str, list[str]] = {}
    for key in keys:
        if variant_of(key).get("source") != "released":
            continue
        slot = released_slot(key)
        done = key in cells and store.done_shards(cells[key])
        folder = (stored.get(slot) or [None])[0]
        if done and folder is not None and folder != here:
            elsewhere.setdefault(folder, []).append(f"{key.name}/{key.level}")
        elif not done and folder != here:
            store.set_notes(info.id, slot, [here])
    return [f"results stored from the released files in {folder} are used for those in {here} "
            f"({listed(names)}: the same file names and labels; a run is found by those, not by "
            "pixels); if the files differ, give another --store" for folder, names in elsewhere.items()]


def other_settings(store: Store, info: RunInfo, held: bool) -> list[str]:
    """For a run with nothing stored yet (not ``held``): the store's runs of the same model that hold
    shards but that it cannot reuse, one line per reason: on the same images, a setting that
    defines a run differs (shard size, seed, weights, precision ...); from the same folder, its
    images differ (another --limit, files added, removed or relabelled: a long run would otherwise
    restart unsaid)."""
    if held:
        return []
    said: dict[tuple, list[int]] = {}  # why a run is not reused -> the shards of each such run
    for other in store.runs():
        same_images = other.identity.get("data") == info.identity.get("data")
        same_folder = bool(other.data and info.data) and \
            real_path(other.data) == real_path(info.data)
        if other.id == info.id or other.model != info.model or not (same_images or same_folder):
            continue
        shards = stored_shards(store, other.id)
        if shards:
            why = ("settings", differences(other.identity, info.identity)) if same_images \
                else ("images", other.n_images)
            said.setdefault(why, []).append(shards)
    lines = []
    for why, shards in said.items():  # runs alike are one line (each said it again)
        one = len(shards) == 1
        stored, their = f"{counted(sum(shards), 'shard')} stored", "its" if one else "their"
        if why[0] == "settings":
            text = (f"{'other run' if one else f'{len(shards)} other runs'} of this model on these images "
                    f"({stored}) {'differs' if one else 'differ'} in: {why[1]} ({their} results stay there)")
        else:
            text = (f"{'run' if one else f'{len(shards)} runs'} of this model on {info.data} ({stored}) "
                    f"{'was' if one else 'were'} on other images of it ({why[1]} then, {info.n_images} now: "
                    f"another --limit, or files added, removed or relabelled; {their} results stay there)")
        lines.append(f"{info.model}: a new run, starting afresh; the store's {text}")
    return lines


def weights_notes(plan: Plan) -> list[str]:
    """The note that the weights are seeded random ones (``--random-weights``, or an architecture
    you brought without weights): every report of the run says so, whatever its label."""
    model = plan.model
    if model.checkpoint is None and (model.external is None or model.external.random_init):
        return [random_weights_note(model.seed)]
    return []


def preprocess_notes(plan: Plan) -> list[str]:
    """The note on a torchvision architecture preprocessed as ImageNet by default, whose published
    weights differ in their preprocessing (resnet50's V2 at 232 / 224)."""
    external = plan.model.external
    return [external.note] if external is not None and external.note else []


def _first_moved(classes: Sequence[str], place: dict[str, int]) -> str | None:
    """The first of the sorted ``classes`` whose label (its place among them) is not ``place[name]``."""
    return next((name for label, name in enumerate(classes) if place[name] != label), None)


def labels_notes(plan: Plan) -> list[str]:
    """The note on how the labels were made, where they come from sorted folder names (a fact of the
    run: its images' fingerprint holds the labels)."""
    if plan.data is None or plan.images.labelling != "folders":
        return []
    classes = list(plan.images.classes)
    note = f"labels: sorted folder order (--class-order sorted), {len(classes)} classes"
    if all(n.isascii() and n.isdigit() for n in classes):  # folders 0..99 as ImageFolder labels them
        numbered = {name: i for i, name in enumerate(sorted(classes, key=int))}
        if moved := _first_moved(classes, numbered):
            note += (f"; the folder names are numbers, sorted as text as torchvision's ImageFolder sorts "
                     f"them: {moved} is label {classes.index(moved)}, not {numbered[moved]}")
    index = wnid_index()
    wnids = plan.classes == len(index) and set(classes) <= index.keys()
    if wnids and (moved := _first_moved(classes, index)):
        # e.g. 10 wnid folders for an ImageNet-1k model: labels 0-9 are tench ... not those classes
        note += (f"; the folders are ImageNet-1k wnids and the model has {plan.classes} classes, but sorted "
                 f"they are not those wnids' indices: {moved} is label {classes.index(moved)}, not "
                 f"{index[moved]} (--class-order imagenet gives these)")
    return [note]
