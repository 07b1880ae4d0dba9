"""Which stored cells the current code would make: the revision mark of changed computations.

When a release changes what a corruption, a perturbation or an attack makes (gcp-robust 0.7.1 made
brightness and saturate repeat scikit-image's float64 arithmetic, the reference backend run the
original ImageNet-C code, and C&W no longer take foolbox's placeholder of a failed image for an
adversarial), its revision goes up (:attr:`corruptions.Corruption.revision`,
:attr:`corruptions.Perturbation.revision`, :func:`corruptions.reference.reference_revision`,
:data:`ATTACK_REVISIONS`) and the cells it
makes carry ``"revision": n`` in their variant. A store's cells of an earlier revision are then
not this run's cells: ``eval`` computes the new ones beside them. Revision 1 carries no mark, so
the cells of everything unchanged stay found in older stores.

Reports group cells without the mark (:attr:`~robustbench_gcp.suites.base.LevelledSuite.unmarked`,
the attack budgets of ``suites.attacks.budget_of``), show the newest revision of each cell, and
say which shown cells are older than the code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from robustbench_gcp.store import CellKey, CellResult

#: the variant field of a cell made by a changed computation
REVISION = "revision"
#: attacks whose cells changed: cw-l2 2 (0.7.1): an image C&W found no adversarial for is no
#: longer foolbox's all-zero placeholder, taken for an adversarial at the size of the image;
#: 3 (0.7.30): every step is run (foolbox's early stop, on the batch's summed loss, made an
#: image's result depend on the images batched with it)
ATTACK_REVISIONS = {"cw-l2": 3}


def mark(revision: int) -> dict:
    """What a cell's variant adds for ``revision``: ``{"revision": n}`` past 1, else nothing."""
    return {REVISION: revision} if revision > 1 else {}


def corruption_revision(corruption: str, source: str | None) -> int:
    """The revision of cells of ``corruption`` made by ``source`` (``torch``, ``reference``; 1 for
    released files, or a name this version does not know)."""
    if source == "reference":
        from corruptions.reference import reference_revision

        return reference_revision(corruption)
    if source == "torch":
        from corruptions import get_corruption, list_corruptions

        if corruption in list_corruptions("all"):
            return get_corruption(corruption).revision
    return 1


def perturbation_revision(perturbation: str, source: str | None) -> int:
    """The revision of ImageNet-P cells of ``perturbation`` made by ``source`` (1 for released
    videos, or a name this version does not know)."""
    if source == "torch":
        from corruptions import get_perturbation, list_perturbations

        if perturbation in list_perturbations("all"):
            return get_perturbation(perturbation).revision
    return 1


def revision_mark(corruption: str, source: str) -> dict:
    """The mark of a cell of ``corruption`` made by ``source``."""
    return mark(corruption_revision(corruption, source))


def current_revision(key: CellKey) -> int:
    """The revision the current code gives the cell ``key``."""
    if key.kind == "adversarial":
        return ATTACK_REVISIONS.get(key.name, 1)
    if key.kind == "imagenet-p":
        return perturbation_revision(key.name, json.loads(key.variant).get("source"))
    return corruption_revision(key.name, json.loads(key.variant).get("source"))


def newest(results: Sequence[CellResult], model: str) -> tuple[list[CellResult], list[str]]:
    """Of cells that differ by their revision alone, one revision for every level of a corruption
    (perturbation, attack): the newest complete at all its levels, so that its CE never averages
    two revisions; where none is, each level's newest complete cell (the newest when none is
    complete). With notes on those left out and on the shown cells older than the current code
    (``eval`` again makes their new revision)."""
    groups: dict[tuple, list[CellResult]] = {}
    for r in results:
        kind, name, _, variant = unrevised(r.key)
        groups.setdefault((kind, name, variant), []).append(r)
    ids = set()
    for cells in groups.values():
        levels = {r.key.level for r in cells}
        complete: dict[int, set[str]] = {}  # revision -> the levels it has complete
        for r in cells:
            if r.complete:
                complete.setdefault(revision_of(r.key), set()).add(r.key.level)
        whole = max((revision for revision, done in complete.items() if done == levels), default=None)
        if whole is not None:
            ids |= {id(r) for r in cells if revision_of(r.key) == whole}
            continue
        chosen: dict[str, CellResult] = {}
        for r in cells:
            if r.key.level not in chosen or _rank(r) > _rank(chosen[r.key.level]):
                chosen[r.key.level] = r
        ids |= {id(r) for r in chosen.values()}
    kept = [r for r in results if id(r) in ids]
    shown = {(r.key.kind, r.key.name, r.key.level): revision_of(r.key) for r in kept}
    left = [r for r in results if id(r) not in ids]
    older = [r for r in left if revision_of(r.key) < shown[(r.key.kind, r.key.name, r.key.level)]]
    older_ids = {id(r) for r in older}
    unfinished = sorted({r.key.name for r in left if id(r) not in older_ids})
    notes = []
    if older:
        notes.append(f"{model}: {len(older)} cells computed by an earlier version of their corruption, "
                     "perturbation or attack are left out; the current version's are shown")
    if unfinished:
        notes.append(f"{model}: the current version of {', '.join(unfinished)} is not complete at every "
                     "level stored (a run stopped mid-way, or one of fewer levels): the earlier one, "
                     "complete at all of them, is shown")
    stale = sorted({r.key.name for r in kept if revision_of(r.key) < current_revision(r.key)})
    if stale:
        notes.append(f"{model}: {', '.join(stale)} were computed by an earlier version of gcp-robust, "
                     "whose output differs from the current one; `gcp-robust eval` again computes "
                     "them anew (the stored ones stay; a stored baseline: `gcp-robust baseline ... "
                     "--replace`)")
    return kept, notes


def _rank(result: CellResult) -> tuple[bool, int]:
    """Complete before unfinished, then the newer revision."""
    return bool(result.complete), revision_of(result.key)


def revision_of(key: CellKey) -> int:
    """The revision a stored cell was made by (1 without a mark)."""
    return json.loads(key.variant).get(REVISION, 1)


def unrevised(key: CellKey) -> tuple:
    """A cell's key less its revision mark: the same for every revision of one cell."""
    variant = json.loads(key.variant)
    variant.pop(REVISION, None)
    return key.kind, key.name, key.level, json.dumps(variant, sort_keys=True)
