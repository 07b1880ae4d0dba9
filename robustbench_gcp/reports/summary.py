"""Multi-model views: one table per suite, a row per model, for terminals, CSV and papers.

Inputs are report objects (the ``eval`` JSON schema) and, optionally, the
comparison object of :mod:`robustbench_gcp.compare` for intervals and deltas.
"""

from __future__ import annotations

from collections.abc import Sequence

from robustbench_gcp.reports.evaluation import attack_label, format_epsilon, headline
from robustbench_gcp.reports.tables import Column, to_markdown

#: how each headline metric is shown: header, scale for display, format
DISPLAY = {
    "clean_top1_error": ("clean err %", 100.0, ".2f"),
    "clean_error": ("clean err %", 100.0, ".2f"),
    "clean_accuracy": ("clean acc %", 100.0, ".1f"),
    "mCE": ("mCE", 1.0, ".1f"),
    "relative_mCE": ("rel. mCE", 1.0, ".1f"),
    "mean_error": ("mean err %", 100.0, ".2f"),
    "mFR": ("mFR", 1.0, ".1f"),
    "mT5D": ("mT5D", 1.0, ".1f"),
    "mean_flip_probability": ("mean FP %", 100.0, ".2f"),
    "mean_top5_distance": ("mean T5D", 1.0, ".3f"),
}


def _display(metric: str) -> tuple[str, float, str]:
    if metric in DISPLAY:
        return DISPLAY[metric]
    if metric.startswith("robust "):
        return (metric + " %", 100.0, ".1f")
    return (metric, 1.0, ".4g")


def _fmt(value: float | None, scale: float, fmt: str) -> str:
    return "-" if value is None else format(value * scale, fmt)


def _interval(iv: dict, scale: float, fmt: str, sep: str = " ") -> str:
    low, high = _fmt(iv["low"], scale, fmt), _fmt(iv["high"], scale, fmt)
    return f"{_fmt(iv['estimate'], scale, fmt)}{sep}[{low}, {high}]"


def comparison_rows(comparison: dict, *, compact: bool = False) -> tuple[list[dict], list[Column]]:
    """Terminal / Markdown rows: value [interval] per metric, then delta vs the reference and p.

    ``compact`` puts each interval on a second line (for terminals).
    """
    sep = "\n" if compact else " "
    metrics: list[str] = []
    for model in comparison["models"]:
        for m in model["metrics"]:
            if m not in metrics:
                metrics.append(m)
    rows = []
    for model in comparison["models"]:
        row = {"model": model["model"] + (" (ref)" if model["model"] == comparison["reference"] else "")}
        for m in metrics:
            header, scale, fmt = _display(m)
            iv = model["metrics"].get(m)
            row[m] = "-" if iv is None else _interval(iv, scale, fmt, sep)
            delta = (model.get("delta") or {}).get(m)
            if delta is not None:
                row[f"d {m}"] = ("+" if delta["estimate"] >= 0 else "") + _interval(delta, scale, fmt, sep)
            elif model["model"] != comparison["reference"] and not model.get("paired", True):
                row[f"d {m}"] = "unpaired"
        tests = model.get("tests") or {}
        if tests:
            significant = [label for label, t in tests.items() if t["p_value"] < 0.05]
            row["tests"] = f"{len(significant)}/{len(tests)}{sep}p<0.05"
        rows.append(row)
    columns = [Column("model", justify="left")]
    for m in metrics:
        header = _display(m)[0]
        columns.append(Column(m, header))
        if any(f"d {m}" in r for r in rows):
            columns.append(Column(f"d {m}", f"Δ {header}"))
    if any("tests" in r for r in rows):
        columns.append(Column("tests", "McNemar"))
    return rows, columns


def comparison_long_rows(comparison: dict) -> tuple[list[dict], list[Column]]:
    """A row per (model, metric), for comparisons with many metrics (attacks x epsilons):
    value [interval], paired difference [interval], and the McNemar p-value of that outcome."""
    rows = []
    for model in comparison["models"]:
        name = model["model"] + (" (ref)" if model["model"] == comparison["reference"] else "")
        tests = model.get("tests") or {}
        for metric, iv in model["metrics"].items():
            header, scale, fmt = _display(metric)
            delta = (model.get("delta") or {}).get(metric)
            test = tests.get(metric.removeprefix("robust "))
            rows.append({
                "model": name, "metric": header, "value": _interval(iv, scale, fmt),
                "delta": None if delta is None else ("+" if delta["estimate"] >= 0 else "")
                + _interval(delta, scale, fmt),
                "p": None if test is None else test["p_value"],
            })
            name = ""
    columns = [Column("model", justify="left"), Column("metric", justify="left"),
               Column("value", "value [95 % interval]"), Column("delta", "Δ vs ref [95 % interval]"),
               Column("p", "McNemar p", ".3g")]
    return rows, columns


def test_rows(comparison: dict) -> list[dict]:
    """Long rows of every paired test: model, outcome compared, discordant counts, p-value."""
    rows = []
    for model in comparison["models"]:
        for label, t in (model.get("tests") or {}).items():
            rows.append({"suite": comparison["suite"], "reference": comparison["reference"],
                         "model": model["model"], "outcome": label, "only_reference": t["only_a"],
                         "only_model": t["only_b"], "p_value": t["p_value"], "method": t["method"]})
    return rows


def comparison_csv_rows(comparison: dict) -> list[dict]:
    """Wide numeric rows: per model, each metric with its interval and paired delta."""
    rows = []
    for model in comparison["models"]:
        row = {"suite": comparison["suite"], "n_images": comparison.get("n_images"), "model": model["model"],
               "reference": comparison["reference"]}
        for m, iv in model["metrics"].items():
            row.update({m: iv["estimate"], f"{m}_low": iv["low"], f"{m}_high": iv["high"]})
            delta = (model.get("delta") or {}).get(m)
            if delta is not None:
                row.update({f"delta_{m}": delta["estimate"], f"delta_{m}_low": delta["low"],
                            f"delta_{m}_high": delta["high"]})
        rows.append(row)
    return rows


def detail_markdown(reports: Sequence[dict]) -> str:
    """Paper-style tables across models: CE per corruption, FR per perturbation, robust accuracy."""
    parts = []
    c_reports = [r for r in reports if r["per_corruption"]]
    if c_reports:
        corruptions = [e["corruption"] for e in c_reports[0]["per_corruption"]]
        rows = []
        for r in c_reports:
            ce = {e["corruption"]: e["CE"] for e in r["per_corruption"]}
            rows.append({"model": r["model"], "mCE": r["metrics"].get("mCE"),
                         **{c: ce.get(c) for c in corruptions}})
        columns = [Column("model", justify="left"), Column("mCE", fmt=".1f")]
        columns += [Column(c, c.replace("_", " "), ".1f") for c in corruptions]
        parts.append(to_markdown(rows, columns, title=f"{c_reports[0]['suite']}: CE per corruption "
                                                      "(AlexNet = 100)"))
    p_reports = [r for r in reports if r.get("perturbations")]
    if p_reports:
        names = [e["perturbation"] for e in p_reports[0]["perturbations"]]
        normalized = all(e["FR"] is not None for r in p_reports for e in r["perturbations"])
        key, label = ("FR", "FR") if normalized else ("flip_probability", "flip probability")
        scale = 1.0 if normalized else 100.0
        rows = []
        for r in p_reports:
            values = {e["perturbation"]: e[key] for e in r["perturbations"]}
            rows.append({"model": r["model"], "mFR": r["metrics"].get("mFR"),
                         **{p: None if values.get(p) is None else values[p] * scale for p in names}})
        columns = [Column("model", justify="left"), Column("mFR", fmt=".1f")]
        columns += [Column(p, p.replace("_", " "), ".1f" if normalized else ".2f") for p in names]
        unit = "baseline = 100" if normalized else "%, unnormalized"
        parts.append(to_markdown(rows, columns, title=f"{p_reports[0]['suite']}: {label} per perturbation "
                                                      f"({unit})"))
    a_reports = [r for r in reports if r.get("attacks")]
    if a_reports:
        def key(a: dict) -> str:
            return f"{attack_label(a)} {format_epsilon(a['epsilon'], a['norm'])}"

        labels = list(dict.fromkeys(key(a) for r in a_reports for a in r["attacks"]))
        rows = []
        for r in a_reports:
            values = {key(a): a["robust_accuracy"] for a in r["attacks"]}
            clean = r["clean"]["top1_error"] if r.get("clean") else None
            rows.append({"model": r["model"], "clean": None if clean is None else 100 * (1 - clean),
                         **{lab: None if values.get(lab) is None else 100 * values[lab] for lab in labels}})
        columns = [Column("model", justify="left"), Column("clean", "clean acc %", ".1f")]
        columns += [Column(lab, lab, ".1f") for lab in labels]
        parts.append(to_markdown(rows, columns, title="Robust accuracy (%)"))
    return "\n".join(parts)


def headline_rows(reports: Sequence[dict]) -> list[dict]:
    return [headline(r) for r in reports]


def headline_columns(rows: Sequence[dict]) -> list:
    """Table columns for :func:`headline_rows`: names left-aligned, figures to 4 significant digits."""
    from robustbench_gcp.reports.tables import Column

    keys = list(dict.fromkeys(k for row in rows for k in row))
    return [Column(k, justify="left") if k in ("model", "suite") else
            Column(k) if k == "n_images" else Column(k, fmt=".4g") for k in keys]
