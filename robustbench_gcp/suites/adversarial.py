"""The adversarial suite: robust accuracy under foolbox attacks, per (attack, epsilon).

The attacks themselves (foolbox models, seeded random starts, projection, counting) are in
:mod:`robustbench_gcp.suites.attacks`; this module is the suite: its configuration, its
overrides, its report, comparison, rows and plots.

Counting (per image, per epsilon): ``clean_errors``, ``successes`` (correct images the
attack flips) and ``robust`` (correct and not flipped). Robust accuracy = robust / n;
success rate = successes / (n - clean_errors).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robustbench_gcp.errors import ConfigError
from robustbench_gcp.metrics import rate
from robustbench_gcp.reports.tables import Column, to_markdown
from robustbench_gcp.stats import Design
from robustbench_gcp.store import CellKey, CellResult, canonical_json
from robustbench_gcp.suites.attacks import (
    ATTACK_KEYS,
    ATTACKS,
    MINIMIZATION,
    AttackSpec,
    AttackTask,
    attack_suggestion,
    budget_of,
    budget_tag,
    check_epsilons,
    epsilon_value,
    format_epsilon,
    parse_epsilon,
    select_attacks,
)
from robustbench_gcp.suites.base import (
    CLEAN,
    Flag,
    Selection,
    Suite,
    SuiteSpec,
    Table,
    TaskInputs,
    exact_root_note,
    pct,
)
from robustbench_gcp.suites.flag_values import name_items
from robustbench_gcp.suites.kinds import register_suite
from robustbench_gcp.suites.revisions import newest
from robustbench_gcp.suites.tasks import ClassifyTask

if TYPE_CHECKING:
    from robustbench_gcp.reports.report_type import Report
    from robustbench_gcp.yaml_checks import Checker


@dataclass(frozen=True)
class AdversarialSpec(SuiteSpec):
    attacks: tuple[AttackSpec, ...] = ()


@dataclass(frozen=True)
class AdversarialSelection(Selection):
    attacks: tuple[AttackSpec, ...] = ()


def attack_label(entry: Mapping) -> str:
    """An attack's name with its non-default budget, as tables, CSV and plots show it:
    ``pgd-linf`` or ``pgd-linf (steps=2)`` (never one name for two budgets)."""
    tag = entry.get("budget_tag")
    return f"{entry['attack']} ({tag})" if tag else entry["attack"]


def budget_label(entry: Mapping) -> str:
    """An (attack, epsilon) of the ``attacks`` section as comparisons, headline tables and
    Markdown name it: ``pgd-linf 2/255``, ``pgd-linf 2/255 (steps=3)`` (the wide CSV's column
    ``robust_pgd_linf_2_255_steps_3`` with or without ``--no-intervals``)."""
    tag = entry.get("budget_tag")
    text = f"{entry['attack']} {format_epsilon(entry['epsilon'], entry['norm'])}"
    return f"{text} ({tag})" if tag else text


def summarize(results: Sequence[CellResult]) -> list[dict]:
    """The ``attacks`` section: one entry per (attack, epsilon), by attack name and epsilon, as
    ``report`` orders them (eval's were in the order of ``--attacks``, its report's not)."""
    entries = []
    attacked = [r for r in results if r.key.kind == "adversarial"]
    for result in sorted(attacked, key=lambda r: (r.key.name, float(r.key.level))):
        counts, n = result.counts, result.n
        correct = n - counts.get("clean_errors", 0)
        budget = budget_of(result.key)
        entry = {
            "attack": result.key.name,
            "norm": ATTACKS[result.key.name],
            "epsilon": float(result.key.level),
            "budget": budget,
            "budget_tag": budget_tag(result.key.name, budget),
            # the list it was measured with: an image broken at a smaller epsilon of it counts as
            # broken at this one (two entries of one attack and epsilon can differ by it)
            "epsilons": _measured(result.key)["epsilons"],
            "n": n,
            "clean_accuracy": rate(correct, n),
            "robust_accuracy": rate(counts.get("robust", 0), n),
            "success_rate": rate(counts.get("successes", 0), correct),
        }
        if result.key.name in MINIMIZATION and result.extra is not None:
            # sizes of the images that were correct to begin with (0 marks the others)
            sizes = result.extra[result.extra > 0]
            median = float(np.median(sizes)) if sizes.size else math.nan
            entry["median_perturbation"] = median if math.isfinite(median) else None
        entries.append(entry)
    return entries


def _measured(key: CellKey) -> dict:
    """What an attack cell was measured with: its budget and epsilon list (an image broken at a
    smaller epsilon of the list counts as broken at the larger ones)."""
    return {**budget_of(key), "epsilons": json.loads(key.variant or "{}").get("epsilons")}


def _budgets(results: Sequence[CellResult]) -> dict[str, dict[str, bool]]:
    """Per attack, its budgets (:func:`_measured`, as canonical JSON) in the order of their cells
    stored last, each with whether all its cells are complete."""
    stored: dict[str, dict[str, bool]] = {}
    for r in results:
        budget = canonical_json(_measured(r.key))
        done = stored.setdefault(r.key.name, {}).pop(budget, True)  # re-inserted: order of last cell
        stored[r.key.name][budget] = done and r.complete
    return stored


def _budget_text(attack: str, measured: dict) -> str:
    """A :func:`_measured` in words: ``steps=2, epsilons 1/255, 4/255`` (``defaults, ...``)."""
    budget = dict(measured)
    words = ", ".join(format_epsilon(e, ATTACKS[attack]) for e in budget.pop("epsilons", None) or [])
    return ", ".join(filter(None, [budget_tag(attack, budget) or "defaults",
                                   f"epsilons {words}" if words else ""]))


def _median_text(entry: dict) -> str | float | None:
    """A minimization attack's median perturbation on its epsilons' scale: ``1.37/255`` for Linf."""
    median = entry.get("median_perturbation")
    if median is None or entry["norm"] != "linf":
        return median
    return f"{median * 255:.3g}/255"


#: below it an L2 budget is the size of a Linf one (16/255 = 0.063): most likely meant as one
LINF_SIZED_L2 = 0.1


def _linf_sized(spec: AttackSpec) -> str | None:
    """A note on an L2 attack's epsilons of a Linf budget's size (4/255 as an L2 norm barely moves
    an image), or None."""
    small = [e for e in spec.epsilons if 0 < e < LINF_SIZED_L2]
    if ATTACKS[spec.attack] != "l2" or not small:
        return None
    linf = spec.attack.replace("l2", "linf") if spec.attack != "cw-l2" else "pgd-linf"
    return (f"{spec.attack}: epsilon {', '.join(format_epsilon(e, 'l2') for e in small)} is an L2 norm of "
            "the whole perturbation, the size of a Linf budget (L2 budgets are usually 0.25 to 3 on "
            f"ImageNet, 0.5 on CIFAR-10); for a Linf budget use {linf}")


def _epsilon(check: Checker, value: Any, where: str) -> float:
    """An epsilon of benchmarks.yaml: a number, or text as ``--epsilons`` takes it (``8/255``)."""
    if not isinstance(value, str):
        return check.number(value, where, 0.0)
    try:
        return epsilon_value(value)
    except ValueError as error:
        check.fail(where, str(error))


def _attack(check: Checker, where: str, value: Any) -> AttackSpec:
    value = check.mapping(value, where)
    attack = check.string(value.get("attack"), f"{where}.attack")
    if attack not in ATTACKS:
        check.fail(f"{where}.attack", f"unknown attack '{attack}'.{attack_suggestion(attack)}")
    check.mapping(value, where, {"attack", *ATTACK_KEYS[attack]})
    epsilons = tuple(_epsilon(check, e, f"{where}.epsilons[{i}]")
                     for i, e in enumerate(check.sequence(value.get("epsilons"), f"{where}.epsilons")))
    if not epsilons:
        check.fail(f"{where}.epsilons", "expected at least one epsilon")
    params: dict[str, Any] = {}
    for key in ATTACK_KEYS[attack]:
        if key == "epsilons" or key not in value:
            continue
        if key in ("steps", "binary_search_steps", "candidates"):  # DeepFool compares >= 2 classes
            params[key] = check.integer(value[key], f"{where}.{key}", 2 if key == "candidates" else 1)
        elif key == "random_start":
            params[key] = check.boolean(value[key], f"{where}.{key}")
        else:
            params[key] = check.number(value[key], f"{where}.{key}", 0.0)
            if params[key] == 0 and key in ("rel_stepsize", "stepsize", "initial_const"):
                check.fail(f"{where}.{key}", "should be > 0 (at 0 the attack never moves), got 0")
    if attack == "fgsm" and params.get("random_start") is False:
        del params["random_start"]  # FGSM's default, which --attacks fgsm leaves out: the same cells
    spec = AttackSpec(attack, epsilons, params)
    try:  # a budget on the wrong scale names the file and key here, not at eval
        check_epsilons(attack, spec.epsilons)
    except ConfigError as error:
        check.fail(f"{where}.epsilons", str(error))
    return spec


def _settings(params: Mapping[str, Any]) -> str:
    """An attack's settings as its config keys: ``steps=10, rel_stepsize=0.25, random_start=true``
    (those not given are foolbox's defaults)."""
    return ", ".join(f"{key}={str(value).lower() if isinstance(value, bool) else f'{value:g}'}"
                     for key, value in params.items())


@register_suite
class AdversarialSuite(Suite):
    """Robust accuracy against foolbox attacks at each epsilon."""

    kind = "adversarial"
    gradients = True
    summary = "foolbox attacks: robust accuracy at each epsilon"
    tests_text = "McNemar's test on the clean images and on each attack and epsilon"
    long_columns = ("clean_accuracy", "robust_accuracy", "success_rate", "median_perturbation", "epsilons")
    metric_display = {**Suite.metric_display, "clean_accuracy": ("clean acc %", 100.0, ".1f")}
    flags = (
        Flag("attacks", "Attacks to run (fgsm, pgd-linf, pgd-l2, deepfool-linf, deepfool-l2, cw-l2). "
             "Default: the adversarial suite's.", metavar="A,B", kind="list"),
        Flag("epsilons", "Budgets on the [0, 1] pixel scale, e.g. 1/255,2/255 (Linf) or 0.25,0.5 (L2). "
             "Default: each attack's in the suite (`gcp-robust suites` lists them).", metavar="E1,E2",
             kind="list"),
        Flag("steps", "Iterations of iterative attacks. Default: each attack's in the suite.", kind="int"),
    )

    # -- configuration
    def config_keys(self) -> set[str]:
        return {"kind", "attacks"}

    def parse(self, check: Checker, name: str, value: Mapping, where: str) -> AdversarialSpec:
        attacks = tuple(
            _attack(check, f"{where}.attacks[{i}]", item)
            for i, item in enumerate(check.sequence(value.get("attacks", []), f"{where}.attacks"))
        )
        if not attacks:
            check.fail(f"{where}.attacks", "expected at least one attack")
        for i, spec in enumerate(attacks):
            if spec.attack in (a.attack for a in attacks[:i]):
                check.fail(f"{where}.attacks[{i}]", f"attack '{spec.attack}' is given twice: one entry per "
                           "attack, with all its epsilons in one list")
        return AdversarialSpec(name, self.kind, attacks=attacks)

    def describe(self, spec: AdversarialSpec) -> tuple[str, str]:
        contents = ", ".join(a.attack + (f" ({_settings(a.params)})" if a.params else "")
                             for a in spec.attacks)
        levels = "; ".join(f"{a.attack} eps " + ",".join(format_epsilon(e, a.norm) for e in a.epsilons)
                           for a in spec.attacks)
        return contents, levels

    def spec_json(self, spec: AdversarialSpec) -> dict:
        return {"attacks": [{"attack": a.attack, "norm": a.norm, "epsilons": list(a.epsilons), **a.params}
                            for a in spec.attacks]}

    # -- plan
    def corrupts(self, selection: Selection) -> bool:
        return False

    def select(self, spec: AdversarialSpec, flags: Mapping[str, Any]) -> AdversarialSelection:
        names = flags.get("attacks")
        names = name_items(names, "--attacks", "attack") if names is not None else None
        epsilons = flags.get("epsilons")
        if isinstance(epsilons, str):
            epsilons = [parse_epsilon(e.strip()) for e in epsilons.split(",") if e.strip()]
        elif epsilons is not None:  # the library's: numbers or text, or one of them
            given = epsilons if isinstance(epsilons, Iterable) else [epsilons]
            epsilons = [parse_epsilon(str(e)) for e in given]
        if epsilons is not None and not epsilons:
            raise ConfigError("`--epsilons` should name at least one epsilon (e.g. 1/255,4/255)")
        if names is not None:  # each attack once, in the order given
            names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
            if not names:
                raise ConfigError("`--attacks` should name at least one attack")
        attacks = select_attacks(spec.attacks, names or None, epsilons, flags.get("steps"))
        return AdversarialSelection(spec, attacks=attacks)

    def notes(self, selection: AdversarialSelection, model: Any) -> list[str]:
        return [*exact_root_note(model, "so gradient attacks through it can be unstable and weaker "
                                        "than through Newton-Schulz"),
                *filter(None, map(_linf_sized, selection.attacks))]

    # -- run
    def tasks(self, selection: AdversarialSelection, inputs: TaskInputs) -> list:
        return [ClassifyTask(CLEAN, inputs.clean),
                *(AttackTask(spec, inputs.clean, inputs.num_classes) for spec in selection.attacks)]

    # -- reports
    def agreed(self, runs: Sequence[list[CellResult]]) -> dict[str, str]:
        """Per attack that several runs measured, the budget stored last (by the first of them, in
        ``--models`` order, else the store's) of those every one of them has complete, if any: a
        model measured again at other epsilons is compared with the others at the budget all have
        (helper-260: the newer list left the attack out of every comparison)."""
        stored = [_budgets(newest(cells, "")[0]) for cells in runs]
        out = {}
        for attack in dict.fromkeys(a for budgets in stored for a in budgets):
            having = [budgets[attack] for budgets in stored if attack in budgets]
            common = set.intersection(*({b for b, done in budgets.items() if done} for budgets in having))
            if len(having) > 1 and common:
                out[attack] = next(b for b in reversed(having[0]) if b in common)
        return out

    def latest(self, results: list[CellResult], model: str,
               agreed: dict[str, str] | None = None) -> tuple[list[CellResult], list[str]]:
        """Per attack, the cells of the budget stored last whose cells are complete (the last one
        where none is: a run stopped mid-way does not hide a finished budget), or the one
        :meth:`agreed` chose for the runs on these images, with its epsilon list (never a mix: an
        image broken at a smaller epsilon of the list counts as broken at the larger ones, so cells
        of two lists are not one curve), of the newest revision of the attack, and notes naming the
        budgets left out."""
        results, notes = newest(results, model)
        stored = _budgets(results)
        budgets, which = {}, {}
        for attack, complete in stored.items():
            last = list(complete)[-1]
            own = next((b for b in reversed(complete) if complete[b]), last)
            budgets[attack] = (agreed or {}).get(attack, own)
            which[attack] = ("the budget stored last" if budgets[attack] == last else
                             "the last complete budget" if budgets[attack] == own else
                             "the latest budget every run on these images has complete")
            if budgets[attack] != last and not complete[last]:
                notes.append(f"{model}, {attack}: the budget stored last "
                             f"({_budget_text(attack, json.loads(last))}) is not finished (a run stopped "
                             "mid-way)")
        latest: dict[tuple[str, str], CellResult] = {}
        left_out: dict[str, set[str]] = {}
        for r in results:
            budget = _measured(r.key)
            if canonical_json(budget) == budgets[r.key.name]:
                latest[(r.key.name, r.key.level)] = r
            else:
                left_out.setdefault(r.key.name, set()).add(_budget_text(r.key.name, budget))
        for attack, tags in left_out.items():
            shown = _budget_text(attack, json.loads(budgets[attack]))
            notes.append(f"{model}, {attack}: only {which[attack]} ({shown}) is shown; also stored: "
                         f"{'; '.join(sorted(tags))}")
        return sorted(latest.values(), key=lambda r: (r.key.name, float(r.key.level))), notes

    def sections(self, results: Sequence[CellResult], normalizer: Any) -> tuple[dict, list[str]]:
        sections, notes = super().sections(results, normalizer)
        attacks = summarize(results)
        # an empty median: none needed (no image classified right) or none found for half of them
        unbroken = sorted({a["attack"] + (f" ({a['budget_tag']})" if a["budget_tag"] else "")
                           for a in attacks if a["attack"] in MINIMIZATION
                           and a.get("median_perturbation") is None and a["clean_accuracy"]})
        if unbroken:
            notes.append(f"median perturbation left empty for {', '.join(unbroken)}: the attack found no "
                         "adversarial for half or more of the images classified right")
        return {**sections, "attacks": attacks}, notes

    # -- comparisons
    def aligned_cells(self, results: Sequence[CellResult]) -> set[tuple[str, ...]]:
        """Attack cells pair by attack and epsilon, and only when measured alike: the same budget
        and epsilon list (those measured otherwise are left out, with a note)."""
        return {self.alignment(r.key) for r in results if self.owns(r.key)}

    def alignment(self, key: CellKey) -> tuple[str, ...]:
        return key.name, key.level, canonical_json(_measured(key))

    def alignment_text(self, alignment: tuple[str, ...]) -> str:
        name, level, measured = alignment
        return (f"{name} {format_epsilon(float(level), ATTACKS[name])} "
                f"({_budget_text(name, json.loads(measured))})")

    def design(self, results: Sequence[CellResult], normalizer: Any) -> Design:
        rows, values, tests, metrics = [], [], {}, {}
        for r in results:
            if r.key == CLEAN:
                rows.append("clean")
                values.append(r.correct.astype(np.float64))
                metrics["clean_accuracy"] = lambda m: m["clean"]
                tests["clean"] = r.correct  # McNemar on the clean images, as the other suites
            elif self.owns(r.key):
                # a non-default budget is part of the label: other budgets are other metrics (no delta)
                tag = budget_tag(r.key.name, budget_of(r.key))
                label = f"{r.key.name} {format_epsilon(float(r.key.level), ATTACKS[r.key.name])}"
                label += f" ({tag})" if tag else ""
                rows.append(label)
                values.append(r.correct.astype(np.float64))
                metrics[f"robust {label}"] = lambda m, label=label: m[label]
                tests[label] = r.correct
        proportions = {m: "clean" if m == "clean_accuracy" else m.removeprefix("robust ") for m in metrics}
        return Design.of(rows, values, metrics, tests, proportions=proportions)

    # -- views
    def display(self, metric: str) -> tuple[str, float, str] | None:
        # robust accuracy at one (attack, epsilon): the comparisons' metric ("robust fgsm 1/255")
        # or the headline's key ("robust_fgsm@1/255")
        if metric.startswith(("robust ", "robust_")):
            return ("robust " + metric.removeprefix("robust ").removeprefix("robust_") + " %", 100.0, ".1f")
        return super().display(metric)

    def tables(self, report: Report) -> list[Table]:
        entries = report.sections.get("attacks")
        if not entries:
            return []
        rows = [
            {"attack": attack_label(a),
             "norm": a["norm"].upper().replace("LINF", "Linf"),
             "epsilon": format_epsilon(a["epsilon"], a["norm"]), "n": a["n"],
             "clean": pct(a["clean_accuracy"]), "robust": pct(a["robust_accuracy"]),
             "success": pct(a["success_rate"]), "median": _median_text(a)}
            for a in entries
        ]
        columns = [Column("attack", justify="left"), Column("norm"), Column("epsilon"), Column("n"),
                   Column("clean", "clean acc %", ".1f"), Column("robust", "robust acc %", ".1f"),
                   Column("success", "success rate %", ".1f"), Column("median", "median pert.", ".4g")]
        return [Table("Adversarial: accuracy under attack", rows, columns)]

    def long_rows(self, report: Report) -> list[dict]:
        rows = super().long_rows(report)
        attacks = report.sections.get("attacks") or []
        # the list each epsilon was measured with (an image broken at a smaller epsilon of it counts
        # as broken at the larger ones: rows of two lists are not one curve), space-separated
        lists = _epsilon_lists(attacks)
        for a in attacks:
            rows.append({"item": attack_label(a), "level": a["epsilon"], "n": a["n"],
                         "clean_accuracy": a["clean_accuracy"], "robust_accuracy": a["robust_accuracy"],
                         "success_rate": a["success_rate"],
                         "median_perturbation": a.get("median_perturbation"),
                         "epsilons": " ".join(map(repr, lists[budget_label(a)]))})
        return rows

    def headline(self, report: Report) -> dict:
        """Clean and robust accuracy, named as the comparisons name them."""
        return self.headlines([report])[0]

    def headlines(self, reports: Sequence[Report]) -> list[dict]:
        """:meth:`headline` of each report, an (attack, epsilon) measured with other epsilon lists
        across them named with its list (one column held both: ``--no-intervals``, the wide CSV)."""
        label = _list_labels(reports)
        out = []
        for report in reports:
            clean = report.sections.get("clean")
            row = {"clean_accuracy": 1 - clean["top1_error"]} if clean else {}
            for a in report.sections.get("attacks") or []:
                row[f"robust {label(report, a)}"] = a["robust_accuracy"]
            out.append(row)
        return out

    def detail_markdown(self, reports: Sequence[Report]) -> str | None:
        """Robust accuracy (%) at every (attack, epsilon) across models."""
        reports = [r for r in reports if r.sections.get("attacks")]
        if not reports:
            return None
        label = _list_labels(reports)
        labels = list(dict.fromkeys(label(r, a) for r in reports for a in r.sections["attacks"]))
        rows = []
        for r in reports:
            values = {label(r, a): a["robust_accuracy"] for a in r.sections["attacks"]}
            clean = r.sections["clean"]["top1_error"] if r.sections.get("clean") else None
            rows.append({"model": r.model, "clean": None if clean is None else 100 * (1 - clean),
                         **{lab: None if values.get(lab) is None else 100 * values[lab] for lab in labels}})
        columns = [Column("model", justify="left"), Column("clean", "clean acc %", ".1f")]
        columns += [Column(lab, lab, ".1f") for lab in labels]
        return to_markdown(rows, columns, title="Robust accuracy (%)")

    def plots(self):
        return {"robust_accuracy": robust_accuracy}


def _list_labels(reports: Sequence[Report]) -> Callable[[Report, Mapping], str]:
    """The name of a report's (attack, epsilon) among ``reports``: :func:`budget_label`, with the
    epsilon list where the reports measured it with other lists (an image broken at a smaller
    epsilon of a list counts as broken at the larger ones: such figures are not one column's, as
    the comparisons leave them unpaired)."""
    lists = {id(r): _epsilon_lists(r.sections.get("attacks") or []) for r in reports}
    differ = {lab for of in lists.values() for lab in of
              if len({o[lab] for o in lists.values() if lab in o}) > 1}

    def label(report: Report, entry: Mapping) -> str:
        plain = budget_label(entry)
        if plain not in differ:
            return plain
        words = ", ".join(format_epsilon(e, entry["norm"]) for e in lists[id(report)][plain])
        text = f"{entry['attack']} {format_epsilon(entry['epsilon'], entry['norm'])}"
        return f"{text} ({entry['budget_tag'] + '; ' if entry['budget_tag'] else ''}epsilons {words})"

    return label


def _epsilon_lists(entries: Sequence[Mapping]) -> dict[str, tuple[float, ...]]:
    """The epsilons each (attack, epsilon) of a report's ``attacks`` section was measured with, by
    :func:`budget_label`: the list its cell records (a run stopped mid-list shows fewer epsilons
    than it was measured with), else, for a cell stored before cells recorded it, the epsilons
    the report shows of that attack and budget."""
    runs: dict[tuple, list[float]] = {}
    for entry in entries:
        runs.setdefault((entry["attack"], entry["budget_tag"]), []).append(entry["epsilon"])
    return {budget_label(e): tuple(sorted(e.get("epsilons") or runs[e["attack"], e["budget_tag"]]))
            for e in entries}


def robust_accuracy(reports: Sequence[Report], path: Path, heading: str | None = None) -> Path | None:
    """One panel per attack: robust accuracy (%) against epsilon, a line per model, each model's
    points a little apart along epsilon and with a marker of its own (lines that coincide hid all
    but the last model drawn)."""
    from robustbench_gcp.reports import figures

    reports = [r for r in reports if r.sections.get("attacks")]
    if not reports:
        return None
    attacks = list(dict.fromkeys(attack_label(a) for r in reports for a in r.sections["attacks"]))
    # one accuracy scale for every attack (panels of 85-100 beside 95-100 looked alike); rows of 4
    # (7 attacks in one row made a figure 26 inches wide)
    fig, axes, cols = figures.panel_grid(len(attacks), cols=4, width=3.6, height=2.6, margin=0.6)
    lowest = 100.0
    for ax, attack in zip(axes, attacks):
        norm = "linf"
        curves = []
        for i, r in enumerate(reports):  # a model keeps its colour in every panel
            points = sorted((a["epsilon"], a["robust_accuracy"], a["norm"]) for a in r.sections["attacks"]
                            if attack_label(a) == attack)
            if not points:
                continue
            norm = points[0][2]
            clean = 1 - r.sections["clean"]["top1_error"] if r.sections.get("clean") else None
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            if clean is not None and xs[0] > 0:
                xs, ys = [0.0, *xs], [clean, *ys]
            curves.append((i, xs, ys))
            lowest = min(lowest, *(100 * y for y in ys))
        scale = 255 if norm == "linf" else 1
        width = max((x for _, xs, _ in curves for x in xs), default=0.0) * scale
        for i, xs, ys in curves:
            # neighbours a marker apart at least (about 2 % of a panel's epsilons)
            shift = figures.spread(i, len(reports), 0.15 * width, least=0.02 * width)
            ax.plot([x * scale + shift for x in xs], [100 * y for y in ys], marker=figures.model_marker(i),
                    markersize=3, color=figures.model_color(i, len(reports)))
        ax.set_title(attack, fontsize=10)
        ax.set_xlabel("epsilon (x 1/255)" if norm == "linf" else "epsilon (L2, [0, 1] pixels)")
        ax.grid(alpha=0.3)
    # once, after every panel: set in the loop, the shared scale froze at the first panel's range
    # (PGD's lower points, drawn in a later panel, fell below it); 10 points at least (where every
    # point was 100 %, the axis ran from 99.975 to 100.5, ticks above 100 and the lines on its edge)
    axes[0].set_ylim(max(-0.5, min(90.0, lowest - 0.05 * (100.5 - lowest))), 100.5)
    figures.panel_labels(axes, cols, None, "robust accuracy (%)")  # x: each panel's norm, set above
    figures.title_and_layout(fig, f"{heading or reports[0].heading}: robust accuracy against the attack "
                                  "budget")
    figures.legend_beside(fig, figures.model_handles(len(reports)), [r.model for r in reports], title="model")
    return figures.save(fig, path)
