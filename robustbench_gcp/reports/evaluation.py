"""Views of one evaluation report object: terminal tables, long CSV rows, Markdown.

Errors are fractions in the report object and in CSV / JSON; the terminal and
Markdown views show percentages and say so in their headers.
"""

from __future__ import annotations

from robustbench_gcp.reports.tables import Column, format_value, rich_table, to_csv, to_markdown


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def header_line(report: dict) -> str:
    weights = report["checkpoint"] or "random weights (no checkpoint)"
    source = report.get("corrupted_dir") and f"released files in {report['corrupted_dir']}"
    if not source and report.get("backend"):
        trip = ", uint8 + JPEG q85 round trip" if report.get("storage_roundtrip") else ""
        source = f"generated on the fly ({report['backend']} backend{trip})"
    parts = [
        f"model {report['model']} ({report['arch']})",
        f"weights {weights}",
        f"suite {report['suite']}",
        f"{report['n_images']} images",
        f"seed {report['seed']}",
        f"{report['device']} {report['precision']}",
    ]
    if source:
        parts.append(f"corruptions {source}")
    return " | ".join(parts)


def corruption_rows(report: dict) -> tuple[list[dict], list[Column]]:
    """One row per corruption: top-1 error (%) per severity, mean, CE, relative CE."""
    severities = sorted({c["severity"] for c in report["cells"]})
    by_cell = {(c["corruption"], c["severity"]): c for c in report["cells"]}
    rows = []
    for entry in report["per_corruption"]:
        row = {"corruption": entry["corruption"]}
        for s in severities:
            cell = by_cell.get((entry["corruption"], s))
            row[f"s{s}"] = _pct(cell["top1_error"]) if cell else None
        row["mean"] = _pct(entry["mean_error"])
        row["CE"] = entry["CE"]
        row["relative_CE"] = entry["relative_CE"]
        rows.append(row)
    columns = [Column("corruption", justify="left")]
    columns += [Column(f"s{s}", f"err s{s} %", ".1f") for s in severities]
    columns += [Column("mean", "mean err %", ".2f"), Column("CE", "CE", ".1f"),
                Column("relative_CE", "rel. CE", ".1f")]
    return rows, columns


def attack_label(entry: dict) -> str:
    """An attack's name with its non-default budget, as tables, CSV and plots show it:
    ``pgd-linf`` or ``pgd-linf (steps=2)`` (never one name for two budgets)."""
    tag = entry.get("budget_tag")
    return f"{entry['attack']} ({tag})" if tag else entry["attack"]


def format_epsilon(eps: float, norm: str) -> str:
    """Linf budgets as k/255 when they are, others as numbers."""
    if norm == "linf" and eps > 0 and abs(eps * 255 - round(eps * 255)) < 1e-6:
        return f"{round(eps * 255)}/255"
    return f"{eps:g}"


def attack_rows(report: dict) -> tuple[list[dict], list[Column]]:
    rows = [
        {"attack": attack_label(a),
         "norm": a["norm"].upper().replace("LINF", "Linf"),
         "epsilon": format_epsilon(a["epsilon"], a["norm"]), "n": a["n"],
         "clean": _pct(a["clean_accuracy"]), "robust": _pct(a["robust_accuracy"]),
         "success": _pct(a["success_rate"]), "median": a.get("median_perturbation")}
        for a in report.get("attacks", [])
    ]
    columns = [Column("attack", justify="left"), Column("norm"), Column("epsilon"), Column("n"),
               Column("clean", "clean acc %", ".1f"), Column("robust", "robust acc %", ".1f"),
               Column("success", "success rate %", ".1f"), Column("median", "median pert.", ".4g")]
    return rows, columns


def perturbation_rows(report: dict) -> tuple[list[dict], list[Column]]:
    rows = [
        {"perturbation": e["perturbation"], "difficulty": e["difficulty"], "videos": e["n_videos"],
         "fp": _pct(e["flip_probability"]), "t5d": e["top5_distance"], "FR": e["FR"], "T5D": e["T5D"]}
        for e in report.get("perturbations", [])
    ]
    columns = [Column("perturbation", justify="left"), Column("difficulty"), Column("videos"),
               Column("fp", "flip prob. %", ".2f"), Column("t5d", "top-5 dist.", ".3f"),
               Column("FR", "FR", ".1f"), Column("T5D", "T5D", ".1f")]
    return rows, columns


def summary_rows(report: dict) -> list[dict]:
    rows = []
    if report.get("clean"):
        rows.append({"metric": "clean top-1 error (%)", "value": _pct(report["clean"]["top1_error"])})
        rows.append({"metric": "clean top-5 error (%)", "value": _pct(report["clean"]["top5_error"])})
    metrics = report.get("metrics") or {}
    if report["cells"]:
        base = metrics.get("baseline") or "none"
        rows.append({"metric": f"mCE (%, {base} = 100)", "value": metrics.get("mCE")})
        rows.append({"metric": f"relative mCE (%, {base} = 100)", "value": metrics.get("relative_mCE")})
        rows.append({"metric": "mean corruption error, unnormalized (%)",
                     "value": _pct(metrics.get("mean_error"))})
    if report.get("perturbations"):
        base = metrics.get("baseline") or "unnormalized"
        d = metrics.get("difficulty")
        rows.append({"metric": f"mFR (%, {base} = 100, difficulty {d})", "value": metrics.get("mFR")})
        rows.append({"metric": f"mT5D (%, {base} = 100, difficulty {d})", "value": metrics.get("mT5D")})
    return rows


def render_table(report: dict):
    """A rich renderable: header, per-corruption table, summary, notes."""
    from rich.console import Group
    from rich.text import Text

    parts = [Text(header_line(report), style="dim")]
    if report["cells"]:
        rows, columns = corruption_rows(report)
        parts.append(rich_table(rows, columns, title="ImageNet-C: top-1 error by severity"))
    if report.get("perturbations"):
        rows, columns = perturbation_rows(report)
        parts.append(rich_table(rows, columns, title="ImageNet-P: flip probability and top-5 distance"))
    if report.get("attacks"):
        rows, columns = attack_rows(report)
        parts.append(rich_table(rows, columns, title="Adversarial: accuracy under attack"))
    parts.append(rich_table(summary_rows(report), [Column("metric", justify="left"),
                                                   Column("value", fmt=".2f")]))
    for note in report.get("notes", []):
        parts.append(Text(f"note: {note}", style="yellow"))
    return Group(*parts)


LONG_COLUMNS = [
    "model", "checkpoint_sha256", "suite", "kind", "seed", "item", "level", "n",
    "top1_error", "top5_error", "CE", "relative_CE",
    "flip_probability", "top5_distance", "FR", "T5D",
    "clean_accuracy", "robust_accuracy", "success_rate", "median_perturbation",
]


def long_rows(report: dict) -> list[dict]:
    """Long rows, one per measured thing, all with the columns of :data:`LONG_COLUMNS`.

    ``item`` is "clean", a corruption, a perturbation or an attack; ``level`` its
    severity, difficulty or epsilon ("all" for a corruption's mean over
    severities, where CE and relative CE are given; the mean over the benchmark
    corruptions is the item "mean (benchmark)").
    """
    base = {"model": report["model"], "checkpoint_sha256": report.get("checkpoint_sha256"),
            "suite": report["suite"], "kind": report.get("kind"), "seed": report["seed"]}
    rows = []
    if report.get("clean"):
        rows.append({**base, "item": "clean", "level": "", **report["clean"]})
    for cell in report["cells"]:
        rows.append({**base, "item": cell["corruption"], "level": cell["severity"], "n": cell["n"],
                     "top1_error": cell["top1_error"], "top5_error": cell["top5_error"]})
    for entry in report["per_corruption"]:
        rows.append({**base, "item": entry["corruption"], "level": "all", "top1_error": entry["mean_error"],
                     "CE": entry["CE"], "relative_CE": entry["relative_CE"]})
    metrics = report.get("metrics") or {}
    if report["cells"]:
        rows.append({**base, "item": "mean (benchmark)", "level": "all",
                     "top1_error": metrics.get("mean_error"),
                     "CE": metrics.get("mCE"), "relative_CE": metrics.get("relative_mCE")})
    for e in report.get("perturbations", []):
        rows.append({**base, "item": e["perturbation"], "level": e["difficulty"], "n": e["n_videos"],
                     "flip_probability": e["flip_probability"], "top5_distance": e["top5_distance"],
                     "FR": e["FR"], "T5D": e["T5D"]})
    if report.get("perturbations"):
        rows.append({**base, "item": "mean (test)", "level": metrics.get("difficulty"),
                     "FR": metrics.get("mFR"), "T5D": metrics.get("mT5D")})
    for a in report.get("attacks", []):
        rows.append({**base, "item": attack_label(a), "level": a["epsilon"], "n": a["n"],
                     "clean_accuracy": a["clean_accuracy"], "robust_accuracy": a["robust_accuracy"],
                     "success_rate": a["success_rate"], "median_perturbation": a.get("median_perturbation")})
    return [{column: row.get(column) for column in LONG_COLUMNS} for row in rows]


def to_long_csv(reports: dict | list[dict]) -> str:
    """Long CSV of one report or several."""
    reports = [reports] if isinstance(reports, dict) else reports
    return to_csv([row for report in reports for row in long_rows(report)], LONG_COLUMNS)


def headline(report: dict) -> dict:
    """The headline numbers of a report, flat (fractions as fractions, CE-type as percent)."""
    out = {"model": report["model"], "suite": report["suite"], "n_images": report["n_images"]}
    if report.get("clean"):
        out["clean_top1_error"] = report["clean"]["top1_error"]
    metrics = report.get("metrics") or {}
    if report["cells"]:
        out.update({k: metrics.get(k) for k in ("mCE", "relative_mCE", "mean_error")})
    if report.get("perturbations"):
        out.update({k: metrics.get(k) for k in ("mFR", "mT5D")})
        test = [e for e in report["perturbations"] if e["difficulty"] == metrics.get("difficulty")]
        if test:
            out["mean_flip_probability"] = sum(e["flip_probability"] for e in test) / len(test)
    for a in report.get("attacks", []):
        out[f"robust_{attack_label(a)}@{format_epsilon(a['epsilon'], a['norm'])}"] = a["robust_accuracy"]
    return out


def to_wide_csv(reports: list[dict]) -> str:
    """One row per (model, suite) with the headline numbers."""
    rows = [headline(r) for r in reports]
    return to_csv(rows)


def to_report_markdown(report: dict) -> str:
    text = [f"### {report['model']} on {report['suite']}", "", header_line(report), ""]
    if report["cells"]:
        rows, columns = corruption_rows(report)
        text.append(to_markdown(rows, columns))
    if report.get("perturbations"):
        rows, columns = perturbation_rows(report)
        text.append(to_markdown(rows, columns))
    if report.get("attacks"):
        rows, columns = attack_rows(report)
        text.append(to_markdown(rows, columns))
    text.append(to_markdown(summary_rows(report), [Column("metric", justify="left"),
                                                   Column("value", fmt=".2f")]))
    for note in report.get("notes", []):
        text.append(f"_Note: {note}_\n")
    return "\n".join(text)


__all__ = ["render_table", "to_long_csv", "to_wide_csv", "to_report_markdown", "long_rows", "headline",
           "format_value"]
