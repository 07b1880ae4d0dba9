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


def format_epsilon(eps: float, norm: str) -> str:
    """Linf budgets as k/255 when they are, others as numbers."""
    if norm == "linf" and eps > 0 and abs(eps * 255 - round(eps * 255)) < 1e-6:
        return f"{round(eps * 255)}/255"
    return f"{eps:g}"


def attack_rows(report: dict) -> tuple[list[dict], list[Column]]:
    rows = [
        {"attack": a["attack"], "norm": a["norm"].upper().replace("LINF", "Linf"),
         "epsilon": format_epsilon(a["epsilon"], a["norm"]), "n": a["n"],
         "clean": _pct(a["clean_accuracy"]), "robust": _pct(a["robust_accuracy"]),
         "success": _pct(a["success_rate"]), "median": a.get("median_perturbation")}
        for a in report.get("attacks", [])
    ]
    columns = [Column("attack", justify="left"), Column("norm"), Column("epsilon"), Column("n"),
               Column("clean", "clean acc %", ".1f"), Column("robust", "robust acc %", ".1f"),
               Column("success", "success rate %", ".1f"), Column("median", "median pert.", ".4g")]
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
    return rows


def render_table(report: dict):
    """A rich renderable: header, per-corruption table, summary, notes."""
    from rich.console import Group
    from rich.text import Text

    parts = [Text(header_line(report), style="dim")]
    if report["cells"]:
        rows, columns = corruption_rows(report)
        parts.append(rich_table(rows, columns, title="ImageNet-C: top-1 error by severity"))
    if report.get("attacks"):
        rows, columns = attack_rows(report)
        parts.append(rich_table(rows, columns, title="Adversarial: accuracy under attack"))
    parts.append(rich_table(summary_rows(report), [Column("metric", justify="left"),
                                                   Column("value", fmt=".2f")]))
    for note in report.get("notes", []):
        parts.append(Text(f"note: {note}", style="yellow"))
    return Group(*parts)


def long_rows(report: dict) -> list[dict]:
    """Long CSV rows: one per cell, one per corruption (severity "all"), one for the mean."""
    base = {"model": report["model"], "checkpoint_sha256": report.get("checkpoint_sha256"),
            "suite": report["suite"], "seed": report["seed"]}
    rows = []
    if report.get("clean"):
        rows.append({**base, "corruption": "clean", "severity": 0, **report["clean"],
                     "CE": None, "relative_CE": None})
    for cell in report["cells"]:
        rows.append({**base, **cell, "CE": None, "relative_CE": None})
    for entry in report["per_corruption"]:
        rows.append({**base, "corruption": entry["corruption"], "severity": "all", "n": None,
                     "top1_error": entry["mean_error"], "top5_error": None,
                     "CE": entry["CE"], "relative_CE": entry["relative_CE"]})
    for a in report.get("attacks", []):
        rows.append({**base, "attack": a["attack"], "norm": a["norm"], "epsilon": a["epsilon"], "n": a["n"],
                     "clean_accuracy": a["clean_accuracy"], "robust_accuracy": a["robust_accuracy"],
                     "success_rate": a["success_rate"],
                     "median_perturbation": a.get("median_perturbation")})
    metrics = report.get("metrics") or {}
    if report["cells"]:
        rows.append({**base, "corruption": "mean (benchmark)", "severity": "all", "n": None,
                     "top1_error": metrics.get("mean_error"), "top5_error": None,
                     "CE": metrics.get("mCE"), "relative_CE": metrics.get("relative_mCE")})
    return rows


LONG_COLUMNS = ["model", "checkpoint_sha256", "suite", "seed", "corruption", "severity", "n",
                "top1_error", "top5_error", "CE", "relative_CE"]
ATTACK_COLUMNS = ["attack", "norm", "epsilon", "clean_accuracy", "robust_accuracy", "success_rate",
                  "median_perturbation"]


def to_long_csv(report: dict) -> str:
    columns = LONG_COLUMNS + (ATTACK_COLUMNS if report.get("attacks") else [])
    return to_csv(long_rows(report), columns)


def to_report_markdown(report: dict) -> str:
    text = [f"### {report['model']} on {report['suite']}", "", header_line(report), ""]
    if report["cells"]:
        rows, columns = corruption_rows(report)
        text.append(to_markdown(rows, columns))
    if report.get("attacks"):
        rows, columns = attack_rows(report)
        text.append(to_markdown(rows, columns))
    text.append(to_markdown(summary_rows(report), [Column("metric", justify="left"),
                                                   Column("value", fmt=".2f")]))
    for note in report.get("notes", []):
        text.append(f"_Note: {note}_\n")
    return "\n".join(text)


__all__ = ["render_table", "to_long_csv", "to_report_markdown", "long_rows", "format_value"]
