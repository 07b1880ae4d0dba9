"""Report objects (the ``eval`` JSON schema) computed from stored cells.

``evaluate`` builds its report with :func:`sections`; ``report``, ``compare`` and
``demo`` rebuild the same objects from the store alone with :func:`collect`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from robustbench_gcp.config import Baseline
from robustbench_gcp.store import CellKey, CellResult, RunInfo, Store, canonical_json

KINDS = ("clean", "imagenet-c", "imagenet-p", "adversarial")
DEFAULT_BASELINE = "alexnet"


def sections(kind: str, results: Sequence[CellResult], baseline: Baseline | None,
             p_baseline: tuple[str, dict | None] | None = None) -> dict:
    """The report sections of a suite kind from its stored cells (clean cell included)."""
    from corruptions import list_corruptions
    from robustbench_gcp.suites import imagenet_c

    out = imagenet_c.summarize(results, benchmark=list_corruptions("benchmark"), baseline=baseline)
    if kind == "adversarial":
        from robustbench_gcp.suites import adversarial

        out["attacks"] = adversarial.summarize(results)
    if kind == "imagenet-p":
        from robustbench_gcp.suites import imagenet_p

        name, figures = p_baseline if p_baseline is not None else (None, None)
        p = imagenet_p.summarize(results, baseline=figures, baseline_name=name)
        out["perturbations"] = p["perturbations"]
        out["metrics"] = p["metrics"]
        out["notes"] += p["notes"]
    return out


def check_p_baseline(store_path: str | Path, name: str, also: Iterable[str] = ()) -> None:
    """A baseline asked for by name must exist: stored (ImageNet-P, in the store file) or in ``also``
    (the baselines of benchmarks.yaml). The default (``alexnet``) may be missing; reports then say
    that they are unnormalized. Never creates the store file.

    Raises:
        UnknownNameError: ``name`` is none of these (the closest name suggested).
    """
    from robustbench_gcp.errors import UnknownNameError

    also = set(also)
    if name == DEFAULT_BASELINE or name in also:
        return
    stored: set[str] = set()
    if Path(store_path).is_file():
        with Store(store_path) as store:
            if store.baseline(name) is not None:
                return
            stored = {n for n, _ in store.baselines()}
    raise UnknownNameError("baseline", name, stored | also | {DEFAULT_BASELINE})


def stored_p_baseline(store: Store, name: str, keys: Iterable[CellKey]) -> tuple[str, dict | None]:
    """(name, raw figures) of the stored baseline run ``name`` for the ImageNet-P cells ``keys``."""
    from robustbench_gcp.suites.imagenet_p import raw_figures

    run = store.baseline(name)
    if run is None:
        return name, None
    cells = {key: cid for cid, key in store.cells(run.id)}
    results = [store.cell_result(cells[key], key, run.n_shards)
               for key in keys if key.kind == "imagenet-p" and key in cells]
    return name, raw_figures([r for r in results if r.complete])


def source_label(kind: str, variant: str) -> str:
    """How the cells of a group were made, for people: "torch, JPEG round trip", "released" ..."""
    if kind not in ("imagenet-c", "imagenet-p"):
        return ""
    v = json.loads(variant)
    label = v.get("source", "")
    if v.get("roundtrip"):
        label += ", JPEG round trip"
    return label


@dataclass
class Evaluation:
    """The complete stored cells of one run for one suite kind (and source)."""

    run: RunInfo
    kind: str
    source: str
    results: list[CellResult]
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.run.model

    @property
    def suite(self) -> str:
        return f"{self.kind} ({self.source})" if self.source else self.kind

    def report(self, baseline: Baseline | None, p_baseline: tuple[str, dict | None] | None = None) -> dict:
        identity = self.run.identity
        weights = identity.get("weights", "")
        variant_sources = [json.loads(r.key.variant) for r in self.results if r.key.kind == self.kind]
        source = variant_sources[0].get("source") if variant_sources else None
        report_sections = sections(self.kind, self.results, baseline, p_baseline)
        report_sections["notes"] = report_sections.get("notes", []) + self.notes
        return {
            "model": self.run.model,
            "arch": self.run.arch,
            "checkpoint": self.run.checkpoint,
            "checkpoint_sha256": None if str(weights).startswith("random-init") else weights,
            "suite": self.suite,
            "kind": self.kind,
            "seed": identity.get("seed"),
            "n_images": self.run.n_images,
            "data": self.run.data,
            "corrupted_dir": None,
            "backend": source if source in ("torch", "reference") else None,
            "storage_roundtrip": variant_sources[0].get("roundtrip") if self.kind == "imagenet-c"
            and source != "released" and variant_sources else None,
            "device": identity.get("device_type"),
            "precision": identity.get("precision"),
            **report_sections,
            "run": self.run.key,
            "data_fingerprint": identity.get("data"),
        }


def collect(store: Store, *, models: Sequence[str] | None = None,
            kinds: Sequence[str] | None = None) -> list[Evaluation]:
    """Every evaluation the store can report: per run, per suite kind and per source.

    Only complete cells count. A run's clean cell joins each of its groups (and is
    an evaluation of its own when ``kinds`` asks for "clean" or the run has no
    other cells). For
    adversarial cells measured with several budgets, the latest one of each
    (attack, epsilon) is used.
    """
    wanted_kinds = set(kinds or KINDS)
    evaluations = []
    for run in store.runs():
        if models and run.model not in models:
            continue
        complete = [r for r in store.results(run) if r.complete]
        clean = [r for r in complete if r.key.kind == "clean"]
        groups: dict[tuple[str, str], list[CellResult]] = {}
        for result in complete:
            kind = result.key.kind
            if kind == "clean":
                continue
            variant = result.key.variant if kind in ("imagenet-c", "imagenet-p") else ""
            groups.setdefault((kind, variant), []).append(result)
        # a clean-only evaluation when asked for, or when the run has nothing else
        if clean and "clean" in wanted_kinds and (kinds is not None or not groups):
            evaluations.append(Evaluation(run, "clean", "", clean))
        for (kind, variant), results in groups.items():
            if kind not in wanted_kinds:
                continue
            notes = []
            if kind == "adversarial":
                results, notes = _latest_budgets(results, run.model)
            evaluations.append(Evaluation(run, kind, source_label(kind, variant), clean + results, notes))
    return evaluations


def _latest_budgets(results: Sequence[CellResult], model: str) -> tuple[list[CellResult], list[str]]:
    """Per attack, the cells of the budget measured last (never a mix of budgets), and notes
    naming the budgets left out."""
    from robustbench_gcp.suites.adversarial import budget_of, budget_tag

    budgets: dict[str, str] = {}
    for r in results:  # store order: the last budget of each attack wins
        budgets[r.key.name] = canonical_json(budget_of(r.key))
    latest: dict[tuple[str, str], CellResult] = {}
    left_out: dict[str, set[str]] = {}
    for r in results:
        budget = budget_of(r.key)
        if canonical_json(budget) == budgets[r.key.name]:
            latest[(r.key.name, r.key.level)] = r
        else:
            left_out.setdefault(r.key.name, set()).add(budget_tag(r.key.name, budget) or "defaults")
    notes = []
    for attack, tags in left_out.items():
        shown = budget_tag(attack, json.loads(budgets[attack])) or "defaults"
        notes.append(f"{model}, {attack}: only the budget measured last ({shown}) is shown; "
                     f"also stored: {'; '.join(sorted(tags))}")
    return sorted(latest.values(), key=lambda r: (r.key.name, float(r.key.level))), notes
