"""PNG figures from report objects (matplotlib, no display needed).

Each function draws one figure for several models and returns the path it
wrote, or None when the reports hold nothing to draw. Every figure has a title,
labelled axes and a legend naming the models; the number of axes is written
into the PNG's metadata (``Axes``) so tests and tools can check a figure
without looking at it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from robustbench_gcp.reports.evaluation import attack_label, format_epsilon


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n_axes = sum(1 for ax in fig.axes if ax.get_visible())
    fig.savefig(path, dpi=110, metadata={"Axes": str(n_axes), "Software": "gcp-robust"})
    _pyplot().close(fig)
    return path


def _models(reports: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in reports))


def error_vs_severity(reports: Sequence[dict], path: Path) -> Path | None:
    """One panel per corruption: top-1 error (%) against severity, a line per model."""
    reports = [r for r in reports if r["cells"]]
    if not reports:
        return None
    plt = _pyplot()
    corruptions = list(dict.fromkeys(c["corruption"] for r in reports for c in r["cells"]))
    cols = min(5, len(corruptions))
    rows = math.ceil(len(corruptions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.6 * rows + 0.8), squeeze=False,
                             sharey=True)
    for index, (ax, corruption) in enumerate(zip(axes.flat, corruptions)):
        for i, r in enumerate(reports):
            cells = sorted((c["severity"], c["top1_error"]) for c in r["cells"]
                           if c["corruption"] == corruption)
            clean = r["clean"]["top1_error"] if r.get("clean") else None
            xs = ([0] if clean is not None else []) + [s for s, _ in cells]
            ys = ([clean] if clean is not None else []) + [e for _, e in cells]
            ax.plot(xs, [100 * y for y in ys], marker="o", markersize=3, label=r["model"], color=f"C{i % 10}")
        ax.set_title(corruption.replace("_", " "), fontsize=9)
        if index >= len(corruptions) - cols:  # bottom row of each column
            ax.set_xlabel("severity (0 = clean)", fontsize=8)
        if index % cols == 0:
            ax.set_ylabel("top-1 error (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(corruptions):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, title="model")
    fig.suptitle(f"{reports[0]['suite']}: top-1 error against severity")
    fig.tight_layout(rect=(0, 0, 0.92, 0.95))
    return _save(fig, path)


def _grouped_bars(ax, categories: list[str], series: dict[str, list[float | None]]) -> None:
    width = 0.8 / max(1, len(series))
    for i, (model, values) in enumerate(series.items()):
        xs = [k + (i - (len(series) - 1) / 2) * width for k in range(len(categories))]
        ax.bar(xs, [math.nan if v is None else v for v in values], width=width, label=model)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([c.replace("_", " ") for c in categories], rotation=40, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="model", fontsize=8)


def ce_bars(reports: Sequence[dict], path: Path) -> Path | None:
    """CE per corruption as grouped bars, a bar per model (AlexNet = 100)."""
    reports = [r for r in reports
               if r["per_corruption"] and any(e["CE"] is not None for e in r["per_corruption"])]
    if not reports:
        return None
    plt = _pyplot()
    corruptions = list(dict.fromkeys(e["corruption"] for r in reports for e in r["per_corruption"]))
    series = {}
    for r in reports:
        ce = {e["corruption"]: e["CE"] for e in r["per_corruption"]}
        mce = r["metrics"].get("mCE")
        label = r["model"] + (f" (mCE {mce:.1f})" if mce is not None else "")
        series[label] = [ce.get(c) for c in corruptions]
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(corruptions) * max(1, len(series)) / 1.5), 4.5))
    _grouped_bars(ax, corruptions, series)
    ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("corruption")
    ax.set_ylabel(f"CE (%, {reports[0]['metrics'].get('baseline') or 'baseline'} = 100)")
    ax.set_title(f"{reports[0]['suite']}: corruption error per corruption")
    fig.tight_layout()
    return _save(fig, path)


def robust_accuracy(reports: Sequence[dict], path: Path) -> Path | None:
    """One panel per attack: robust accuracy (%) against epsilon, a line per model."""
    reports = [r for r in reports if r.get("attacks")]
    if not reports:
        return None
    plt = _pyplot()
    attacks = list(dict.fromkeys(attack_label(a) for r in reports for a in r["attacks"]))
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.6 * len(attacks) + 0.6, 3.4), squeeze=False)
    for ax, attack in zip(axes.flat, attacks):
        norm = "linf"
        for i, r in enumerate(reports):  # a model keeps its colour in every panel
            points = sorted((a["epsilon"], a["robust_accuracy"], a["norm"]) for a in r["attacks"]
                            if attack_label(a) == attack)
            if not points:
                continue
            norm = points[0][2]
            clean = 1 - r["clean"]["top1_error"] if r.get("clean") else None
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            if clean is not None and xs[0] > 0:
                xs, ys = [0.0, *xs], [clean, *ys]
            scale = 255 if norm == "linf" else 1
            ax.plot([x * scale for x in xs], [100 * y for y in ys], marker="o", markersize=3,
                    label=r["model"], color=f"C{i % 10}")
        ax.set_title(attack, fontsize=10)
        ax.set_xlabel("epsilon (x 1/255)" if norm == "linf" else "epsilon (L2, [0, 1] pixels)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(top=100.5)
        ax.grid(alpha=0.3)
        ax.legend(title="model", fontsize=8)
    fig.suptitle("Robust accuracy against the attack budget")
    fig.tight_layout()
    return _save(fig, path)


def flip_probability(reports: Sequence[dict], path: Path) -> Path | None:
    """Flip probability (%) per perturbation as grouped bars, a bar per model."""
    reports = [r for r in reports if r.get("perturbations")]
    if not reports:
        return None
    plt = _pyplot()
    difficulty = min(e["difficulty"] for r in reports for e in r["perturbations"])
    names = list(dict.fromkeys(e["perturbation"] for r in reports for e in r["perturbations"]
                               if e["difficulty"] == difficulty))
    series = {}
    for r in reports:
        fp = {e["perturbation"]: e["flip_probability"] for e in r["perturbations"]
              if e["difficulty"] == difficulty}
        series[r["model"]] = [None if fp.get(p) is None else 100 * fp[p] for p in names]
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(names) * max(1, len(series)) / 1.5), 4.5))
    _grouped_bars(ax, names, series)
    ax.set_xlabel("perturbation")
    ax.set_ylabel("flip probability (%)")
    ax.set_title(f"{reports[0]['suite']}: flip probability per perturbation (difficulty {difficulty})")
    fig.tight_layout()
    return _save(fig, path)


PLOTS = {
    "error_vs_severity": error_vs_severity,
    "ce_per_corruption": ce_bars,
    "robust_accuracy": robust_accuracy,
    "flip_probability": flip_probability,
}


def write_plots(reports: Sequence[dict], folder: str | Path) -> list[Path]:
    """Every figure the reports allow, one PNG per figure and suite, into ``folder``."""
    folder = Path(folder)
    written = []
    suites = list(dict.fromkeys(r["suite"] for r in reports))
    for suite in suites:
        group = [r for r in reports if r["suite"] == suite]
        stem = suite.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        for name, draw in PLOTS.items():
            path = draw(group, folder / f"{stem}_{name}.png")
            if path is not None:
                written.append(path)
    return written


__all__ = ["PLOTS", "write_plots", "format_epsilon"]
