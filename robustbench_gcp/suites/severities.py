"""Which severities ImageNet-C's CE and means cover, said alike by a report and a comparison.

A store may hold a model's corruptions at different severities (two runs into one store, a
partial run's complete cells): each corruption's CE and the means then cover the severities
every benchmark corruption has, and notes say so (:data:`~robustbench_gcp.suites.base.
COVERAGE_NOTES` notes: a comparison says them of the cells it compares).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corruptions import SEVERITIES


def shared_severities(cells: Sequence[tuple[str, int]], benchmark: Sequence[str]) -> tuple[set[int], str]:
    """The severities every benchmark corruption of ``cells`` (corruption, severity) has, and a note
    when they differ: the per-corruption CE and their mean then cover those severities only (empty
    note when they do not differ)."""
    have: dict[str, set[int]] = {}
    for corruption, severity in cells:
        if corruption in benchmark:
            have.setdefault(corruption, set()).add(severity)
    sets = {frozenset(v) for v in have.values()}
    if len(sets) < 2:
        return set().union(*sets), ""
    common = set.intersection(*map(set, sets))
    others = "; ".join(f"{c} {','.join(map(str, sorted(v)))}" for c, v in have.items() if v != common)
    shared = ",".join(map(str, sorted(common)))
    covered = (f"CE, mCE and the means cover the severities they all have, {shared}" if common
               else "they share none, so each corruption's CE and mean error cover its own")
    return common, f"the corruptions were stored at different severities ({others}): {covered}"


def covered_severities(have: Mapping[str, Sequence[int]], benchmark: Sequence[str],
                       normalized: bool) -> tuple[dict[str, list[int]], str, str]:
    """Per corruption of ``have`` (corruption -> its stored severities), the severities its CE and
    mean error cover (a benchmark corruption's: those every benchmark corruption has, if any; the
    others keep theirs), the note on uneven severities (:func:`shared_severities`) and the note on
    severities other than the benchmark's 1-5 ("" where there is nothing to say). ``normalized``:
    CE is normalized (the note speaks of CE sums, else of mean errors)."""
    common, uneven = shared_severities([(c, s) for c, levels in have.items() for s in levels], benchmark)
    kept = {c: [s for s in levels if c not in benchmark or s in common or not (common and uneven)]
            for c, levels in have.items()}
    # the benchmark corruptions' (the means'), else any corruption's
    levels_of = {s for c, levels in have.items() if c in benchmark for s in levels} \
        or {s for levels in have.values() for s in levels}
    severities = sorted(common if common and uneven else levels_of)
    only = ",".join(map(str, severities))
    # the corruptions outside the benchmark keep their own severities: said where they are others
    own = "; ".join(f"{c} {','.join(map(str, sorted(levels)))}" for c, levels in kept.items()
                    if c not in benchmark and sorted(levels) != severities)
    outside = f"the corruptions outside the benchmark keep their own: {own}"
    if own and uneven:
        uneven += f" ({outside})"
    if not have or severities == list(SEVERITIES):
        what = "CE sums over severities" if normalized else "the mean errors average severities"
        return kept, uneven, f"{what} of their own for the corruptions outside the benchmark: {own}" \
            if own and not uneven else ""
    if normalized:
        note = f"CE sums over severities {only} only, in both the model's errors and the baseline's"
    else:
        note = f"the mean errors average severities {only} only, not the benchmark's 1-5"
    return kept, uneven, note + (f" ({outside})" if own else "")
