"""ImageNet-P's report sections from its stored cells: flip probability and top-5 distance per
(perturbation, difficulty), FR and T5D normalized by a stored baseline run (:class:`FlipBaseline`),
mFR and mT5D over the dataset's 10 test perturbations, and the notes that say what they cover.
:mod:`~robustbench_gcp.suites.imagenet_p` is the suite that uses them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corruptions import PERTURBATION_SUBSETS
from robustbench_gcp.data.datasets import IMAGENET_CLASSES, DatasetInfo, classes_mark, get_dataset
from robustbench_gcp.metrics import figures_of_counts, relative_rate
from robustbench_gcp.store import CellKey, CellResult, Store, canonical_json
from robustbench_gcp.suites.base import clean_entry, coverage_note, dataset_of, variant_of
from robustbench_gcp.suites.revisions import revision_of, unrevised
from robustbench_gcp.suites.sequence_tasks import pairs_of, per_video

#: (perturbation, difficulty) -> (flip probability, top-5 distance, videos) of a stored baseline
Figures = dict[tuple[str, int], tuple[float, float, int]]


def perturbed_name(dataset: DatasetInfo) -> str:
    """The -P benchmark of a dataset, for reports: ImageNet-P, CIFAR-10-P, CIFAR-100-P,
    Tiny-ImageNet-P."""
    if dataset.name == "imagenet":  # a model of its own classes on ImageNet's images: said, as ImageNet-C's
        return f"ImageNet-P ({dataset.classes} classes)" if dataset.classes is not None else "ImageNet-P"
    return f"{dataset.title}-P"


def dataset_subsets(dataset: DatasetInfo) -> Mapping[str, tuple[str, ...]]:
    """The named perturbation subsets on ``dataset``: ``test`` and ``validation`` are CIFAR-10-P's
    on CIFAR (cifar-p-eval.py averages spatter, not snow), ImageNet-P's elsewhere (Tiny-ImageNet-P
    has no evaluation script of its own)."""
    if dataset.preset != "cifar":
        return PERTURBATION_SUBSETS
    return {**PERTURBATION_SUBSETS, "test": PERTURBATION_SUBSETS["cifar-test"],
            "validation": PERTURBATION_SUBSETS["cifar-validation"]}


def averaged_perturbations(dataset: DatasetInfo) -> tuple[str, ...]:
    """The 10 perturbations mFR and mT5D average on ``dataset``."""
    return dataset_subsets(dataset)["test"]


@dataclass(frozen=True)
class FlipBaseline:
    """The normalizer of FR and T5D: a stored baseline run's raw figures (None: none stored
    under ``name``, the figures stay unnormalized), the run, and per cell (``fp rotate/1``,
    ``t5d rotate/1``) its per-video values, which comparisons resample with the videos of a run
    on the same images (None: the figures stay fixed)."""

    name: str
    figures: Figures | None
    run: Any = None
    samples: Mapping[str, np.ndarray] | None = None
    own: bool = False  # the run this normalizes is that baseline run itself: FR and T5D are 100
    #: (perturbation, difficulty) -> "older" / "newer": the baseline run holds that cell only as
    #: another revision of the perturbation than the one asked for (an earlier or a later version
    #: made it); "released" / "torch": only from the other source (released files, generated);
    #: "dataset NAME": only of another dataset's images
    revised: Mapping[tuple[str, int], str] = field(default_factory=dict)
    #: (perturbation, difficulty) -> the frame pairs each of its videos compares (``samples`` are
    #: per-video totals: :func:`per_video`)
    pairs: Mapping[tuple[str, int], int] = field(default_factory=dict)


def raw_figures(results: Sequence[CellResult]) -> Figures:
    """(perturbation, difficulty) -> (flip probability, top-5 distance, videos)."""
    figures = {}
    for r in results:
        if r.key.kind == "imagenet-p" and r.counts.get("videos"):
            figures[(r.key.name, int(r.key.level))] = (*figures_of_counts(r.counts), r.counts["videos"])
    return figures


def report_order(test: Sequence[str]) -> dict[str, int]:
    """Perturbations' places in reports: the averaged (``test``) ones first, then the others."""
    return {p: i for i, p in enumerate(dict.fromkeys((*test, *PERTURBATION_SUBSETS["all"])))}


def summarize(
    results: Sequence[CellResult],
    *,
    baseline: Figures | None,
    baseline_name: str | None,
    baseline_revised: Mapping[tuple[str, int], str] | None = None,
) -> tuple[dict, list[str]]:
    """The ``clean``, ``perturbations`` (in report order, then difficulty) and ``metrics``
    sections (FR, T5D, mFR, mT5D in percent), and notes (``baseline_revised``: the cells the
    baseline holds only as another revision or from the other source, :attr:`FlipBaseline.revised`)."""
    baseline_revised = baseline_revised or {}
    dataset = dataset_of(results, "imagenet-p")
    name = perturbed_name(dataset)
    entries = []
    for (perturbation, difficulty), (fp, t5d, videos) in raw_figures(results).items():
        base = (baseline or {}).get((perturbation, difficulty))
        entries.append({
            "perturbation": perturbation, "difficulty": difficulty, "n_videos": videos,
            "flip_probability": fp, "top5_distance": t5d,
            "FR": relative_rate(fp, base[0]) if base else None,
            "T5D": relative_rate(t5d, base[1]) if base else None,
        })
    test = averaged_perturbations(dataset)
    order = report_order(test)
    entries.sort(key=lambda e: (order[e["perturbation"]], e["difficulty"]))  # however they were stored
    by_difficulty = {}
    for difficulty in sorted({e["difficulty"] for e in entries}):
        chosen = [e for e in entries if e["difficulty"] == difficulty and e["perturbation"] in test]
        frs = [e["FR"] for e in chosen]
        t5ds = [e["T5D"] for e in chosen]
        by_difficulty[str(difficulty)] = {
            "mFR": sum(frs) / len(frs) if chosen and None not in frs else None,
            "mT5D": sum(t5ds) / len(t5ds) if chosen and None not in t5ds else None,
            "mean_flip_probability": sum(e["flip_probability"] for e in chosen) / len(chosen)
            if chosen else None,
            "mean_top5_distance": sum(e["top5_distance"] for e in chosen) / len(chosen) if chosen else None,
            "perturbations": [e["perturbation"] for e in chosen],
            "missing": [p for p in test if p not in {e["perturbation"] for e in chosen}],
        }
    # the headline: the smallest difficulty with a test perturbation (the comparisons' too)
    level = min([d for d, at in by_difficulty.items() if at["perturbations"]] or by_difficulty, key=int,
                default=None)
    first = by_difficulty[level] if level is not None else {}
    notes = []
    if entries and baseline is None:
        # AlexNet's flips are among ImageNet's 1000 classes: a model of other classes, one of its own
        if dataset.name == "imagenet" and dataset.classes is None:
            how = "`gcp-robust baseline --model alexnet --checkpoint PATH --suite imagenet-p`"
        else:
            classes = f" (a model of the same {dataset.classes} classes)" if dataset.classes else ""
            how = (f"`gcp-robust baseline --model MODEL --name NAME --suite SUITE`{classes} on the same "
                   "images, then --baseline NAME")
        notes.append(f"{name} figures are unnormalized: no stored baseline named '{baseline_name}' "
                     f"(compute one with {how})")
    elif entries:
        for column in ("FR", "T5D"):
            missing = [f"{e['perturbation']}/{e['difficulty']}" for e in entries if e[column] is None]
            if missing:
                # the mean needs every averaged perturbation's: without one, the mean is not given
                unmeant = f"; so there is no m{column}" if first.get("perturbations") and \
                    first.get(f"m{column}") is None else ""
                revised = {f"{p}/{d}": how for (p, d), how in baseline_revised.items()}
                older = [cell for cell in missing if revised.get(cell) == "older"]
                newer = [cell for cell in missing if revised.get(cell) == "newer"]
                released = [cell for cell in missing if revised.get(cell) == "released"]
                generated = [cell for cell in missing if revised.get(cell) == "torch"]
                of_other = [cell for cell in missing if revised.get(cell, "").startswith("dataset ")]
                of_classes = [cell for cell in missing if revised.get(cell, "").startswith("classes")]
                others = [cell for cell in missing if cell not in revised]
                why = [f"holds {', '.join(older)} as an earlier version of gcp-robust computed them "
                       "(store the baseline again: `gcp-robust baseline ... --replace`)"] if older else []
                why += [f"holds {', '.join(newer)} as a later version of gcp-robust computed them than "
                        "this run's (`gcp-robust eval` again computes the run's anew)"] if newer else []
                why += [f"holds {', '.join(released)} read from released files, this run's are generated "
                        "(store the baseline without --corrupted-dir)"] if released else []
                why += [f"holds {', '.join(generated)} generated, this run's are read from released files "
                        "(store the baseline with --corrupted-dir)"] if generated else []
                if of_other:
                    theirs = get_dataset(revised[of_other[0]].removeprefix("dataset ")).title
                    why.append(f"holds {', '.join(of_other)} of {theirs} images, this run's are of "
                               f"{dataset.title} (a baseline normalizes runs of its own dataset)")
                if of_classes:
                    why.append(_classes_words(of_classes, revised[of_classes[0]], dataset))
                never = "it never flips" if column == "FR" else "its top-5 never changes"
                why += [f"has no figures for {', '.join(others)}, or a zero normalizer there ({never})"] \
                    if others else []
                notes.append(f"{column} left empty for {', '.join(missing)}: baseline '{baseline_name}' "
                             f"{'; it '.join(why)}{unmeant}")
    if dataset.name == "tinyimagenet" and any(r.key.kind == "imagenet-p" and r.key.name == "motion_blur"
                                              and variant_of(r.key).get("source") == "torch"
                                              for r in results):
        notes.append("motion_blur generated on 64 px images is stronger than Tiny-ImageNet-P's, whose "
                     "blur (radius 14, sigma 3) was of the full-size ImageNet crop before its resize to "
                     "64 px (about 4x for a 256 px crop; corruptions/PERTURBATIONS.md): its figures, and "
                     "the means over it, are not the released videos'")
    if first.get("missing") and first.get("perturbations"):
        notes.append(coverage_note("mFR" if first.get("mFR") is not None else None,
                                   len(first["perturbations"]), "10 test perturbations", first["missing"]))
    return {
        "clean": clean_entry(results),
        "perturbations": entries,
        "metrics": {
            "mFR": first.get("mFR"),
            "mT5D": first.get("mT5D"),
            # the baseline's name where it normalized a figure (one of other classes normalizes none)
            "baseline": baseline_name if any(e["FR"] is not None or e["T5D"] is not None for e in entries)
            else None,
            "dataset": dataset.name,
            **classes_mark(dataset),
            "difficulty": int(level) if level is not None else None,
            "by_difficulty": by_difficulty,
        },
    }, notes


def baseline_figures(store: Store, name: str, keys: Iterable[CellKey]) -> FlipBaseline:
    """The raw figures of the baseline run stored as ``name``, for the ImageNet-P cells ``keys``."""
    run = store.baseline(name)
    if run is None:
        return FlipBaseline(name, None)
    cells: dict[CellKey, int] = {}  # less the centred-crop mark, the baseline's own (marked) first
    stored_cells = store.cells(run.id)
    # a baseline whose cells name its model's classes: those that name none are the same model's,
    # stored before 0.7.30 (they would normalize a model of ImageNet's 1000 classes, helper-243)
    named = any("classes" in variant_of(key) for _, key in stored_cells if key.kind == "imagenet-p")
    skipped = set()  # (name, level) of those: a run asking for them is told the baseline is older
    for cid, key in stored_cells:
        if named and key.kind == "imagenet-p" and "classes" not in variant_of(key):
            skipped.add((key.name, key.level))
            continue
        if (plain := _uncropped(key)) not in cells or plain != key:
            cells[plain] = cid
    wanted = {key: _uncropped(key) for key in keys if key.kind == "imagenet-p"}  # run's -> baseline's
    results = [store.cell_result(cells[plain], key, run.n_shards) for key, plain in wanted.items()
               if plain in cells]
    stored: dict[tuple, int] = {}  # the baseline's cells less their revision -> their newest revision
    for key in cells:
        stored[unrevised(key)] = max(stored.get(unrevised(key), 1), revision_of(key))
    revised = {(key.name, int(key.level)): "older" if stored[unrevised(key)] < revision_of(key)
               else "newer" for key in wanted.values() if key not in cells and unrevised(key) in stored}
    held = {(key.name, key.level): variant_of(key) for key in cells if key.kind == "imagenet-p"}
    for key in wanted.values():  # held only of another dataset's images, or from the other source
        theirs, cell = held.get((key.name, key.level)), (key.name, int(key.level))
        if key not in cells and cell not in revised and theirs is None and (key.name, key.level) in skipped:
            revised[cell] = "older"  # held from before 0.7.30 alone (it said "no figures ...")
        if key in cells or cell in revised or theirs is None:
            continue
        ours = variant_of(key)
        if theirs.get("dataset", "imagenet") != ours.get("dataset", "imagenet"):
            revised[cell] = f"dataset {theirs.get('dataset', 'imagenet')}"
        elif theirs.get("classes") != ours.get("classes"):  # another label space's flips
            revised[cell] = f"classes {theirs.get('classes') or ''}".rstrip()
        elif theirs.get("source") in ("released", "torch") and theirs.get("source") != ours.get("source"):
            revised[cell] = theirs["source"]
        elif geometry_rank(theirs) != geometry_rank(ours):  # zoom_blur's square before 0.7.30
            revised[cell] = "older" if geometry_rank(theirs) < geometry_rank(ours) else "newer"
    complete = [r for r in results if r.complete]
    samples, pairs = {}, {}
    for r in complete:
        if r.extra is not None:
            cell = f"{r.key.name}/{int(r.key.level)}"
            samples[f"fp {cell}"], samples[f"t5d {cell}"] = per_video(r)
            pairs[(r.key.name, int(r.key.level))] = pairs_of(r)
    return FlipBaseline(name, raw_figures(complete), run=run, samples=samples, revised=revised, pairs=pairs)


def _classes_words(cells: Sequence[str], how: str, dataset: DatasetInfo) -> str:
    """Why a baseline's figures of ``cells`` (``how``: ``classes K``, or ``classes`` for cells
    that name none) normalize none of this run's, whose model's classes ``dataset`` says."""
    theirs = how.removeprefix("classes").strip()
    ours = (f"a model of {dataset.classes} classes" if dataset.classes else
            f"a model of ImageNet's {IMAGENET_CLASSES} classes (they name none)")
    held = (f"of a model of {theirs} classes" if theirs else f"of a model of ImageNet's {IMAGENET_CLASSES} "
            "classes (or one stored before 0.7.30, whose cells did not name the model's classes)")
    return (f"holds {', '.join(cells)} {held}, this run's are of {ours}: flips among other classes are "
            "another task (store a baseline of a model of this one's classes, then --baseline NAME)")


def geometry_rank(variant: Mapping) -> int:
    """How late the geometry of a cell's frames is (its variant's ``geometry``): whole-image
    windows (the geometric perturbations since 0.4, zoom_blur since 0.7.30) 2, the centred crop
    (0.7.5) 1, the centre square 0."""
    return {"whole-image": 2, "centred-crop": 1}.get(variant.get("geometry"), 0)


def _uncropped(key: CellKey) -> CellKey:
    """``key`` less the mark of frames cut at a centre crop a pixel off earlier versions' (a model
    whose resize less crop is not a multiple of 4: Inception's 342 / 299): a baseline's flips
    are its own, at its own sizes, whatever the sizes of the model it normalizes (Inception's
    brightness found no AlexNet figures: no mFR). A baseline with the mark holds its marked
    cells first: its unmarked ones are of versions before the mark, a pixel off."""
    variant = variant_of(key)
    if variant.get("geometry") != "centred-crop":
        return key
    del variant["geometry"]
    return CellKey(key.kind, key.name, key.level, canonical_json(variant))
