"""Which stored cells the current code would make: the revision mark of generated corruptions.

When a release changes what a corruption makes (gcp-robust 0.7.1 made brightness and saturate
repeat scikit-image's float64 arithmetic, and the reference backend run the original ImageNet-C
code), the corruption's revision goes up (:attr:`corruptions.Corruption.revision`,
:data:`corruptions.reference.REFERENCE_REVISION`) and the cells it makes carry
``"revision": n`` in their variant. A store's cells of an earlier revision are then not this
run's cells: ``eval`` computes the new ones beside them. Revision 1 carries no mark, so the cells
of every unchanged corruption stay found in older stores.

Reports group cells without the mark (:attr:`~robustbench_gcp.suites.base.LevelledSuite.unmarked`),
show the newest revision of each cell, and say which shown cells are older than the code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from robustbench_gcp.store import CellResult

#: the variant field of a cell made by a changed corruption
REVISION = "revision"


def current_revision(corruption: str, source: str | None) -> int:
    """The revision the current code gives cells of ``corruption`` made by ``source`` (``torch``,
    ``reference``; 1 for released files, or a name this version does not know)."""
    if source == "reference":
        from corruptions.reference import REFERENCE_REVISION

        return REFERENCE_REVISION
    if source == "torch":
        from corruptions import get_corruption, list_corruptions

        if corruption in list_corruptions("all"):
            return get_corruption(corruption).revision
    return 1


def revision_mark(corruption: str, source: str) -> dict:
    """What the variant of a cell of ``corruption`` made by ``source`` adds: ``{"revision": n}``
    past revision 1, else nothing."""
    n = current_revision(corruption, source)
    return {REVISION: n} if n > 1 else {}


def newest(results: Sequence[CellResult], model: str) -> tuple[list[CellResult], list[str]]:
    """Of cells that differ by their revision alone, the newest; with notes on those left out and
    on the shown cells older than the current code (``eval`` again makes their new revision)."""
    chosen: dict[tuple, CellResult] = {}
    for r in results:
        variant = json.loads(r.key.variant)
        revision = variant.pop(REVISION, 1)
        where = (r.key.kind, r.key.name, r.key.level, json.dumps(variant, sort_keys=True))
        if where not in chosen or revision > json.loads(chosen[where].key.variant).get(REVISION, 1):
            chosen[where] = r
    ids = {id(r) for r in chosen.values()}
    kept = [r for r in results if id(r) in ids]
    notes = []
    if len(kept) < len(results):
        notes.append(f"{model}: {len(results) - len(kept)} cells computed by an earlier version of their "
                     "corruption are left out; the current version's are shown")
    stale = sorted({r.key.name for r in kept if _revision(r) < current_revision(r.key.name, _source(r))})
    if stale:
        notes.append(f"{model}: {', '.join(stale)} were computed by an earlier version of gcp-robust, "
                     "whose output differs slightly from the current one; `gcp-robust eval` again "
                     "computes them anew (the stored ones stay)")
    return kept, notes


def _revision(result: CellResult) -> int:
    return json.loads(result.key.variant).get(REVISION, 1)


def _source(result: CellResult) -> str | None:
    return json.loads(result.key.variant).get("source")
