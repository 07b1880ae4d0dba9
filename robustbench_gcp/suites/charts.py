"""The figures of the ImageNet-C and ImageNet-P suites (``Suite.plots``): error against severity,
CE per corruption, flip probability per perturbation; ``report --plot DIR`` writes them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robustbench_gcp.reports.report_type import Report


def _severity_points(clean: dict | None, cells: Sequence[dict]) -> tuple[list, list, list]:
    """A model's points of one corruption: severities (0 = clean), top-1 errors (%) with a gap
    (NaN) where severities were skipped, so that no line joins clean to severity 3 across 1 and
    2, and each point's 95 % Wilson interval over its images (none where a cell lacks its count)."""
    from robustbench_gcp.stats import wilson_of_count

    points = ([(0, clean)] if clean is not None else []) + sorted(
        ((c["severity"], c) for c in cells), key=lambda point: point[0])
    xs, ys, bounds = [], [], []
    for severity, cell in points:
        if cell.get("top1_error") is None:
            continue
        if xs and severity > xs[-1] + 1:
            xs.append(xs[-1] + 0.5)
            ys.append(math.nan)
            bounds.append((0.0, 0.0))
        error, n = cell["top1_error"], cell.get("n")
        iv = wilson_of_count(round(error * n), n) if n else None
        xs.append(severity)
        ys.append(100 * error)
        bounds.append((100 * (error - iv.low), 100 * (iv.high - error)) if iv else (0.0, 0.0))
    return xs, ys, [list(b) for b in zip(*bounds)]


def error_vs_severity(reports: Sequence[Report], path: Path) -> Path | None:
    """One panel per corruption: top-1 error (%) against severity, a line per model with each
    point's 95 % interval over images (Wilson's) as a bar."""
    from matplotlib.ticker import MaxNLocator

    from robustbench_gcp.reports.figures import legend_beside, model_color, pyplot, save

    reports = [r for r in reports if r.sections.get("cells")]
    if not reports:
        return None
    plt = pyplot()
    corruptions = list(dict.fromkeys(c["corruption"] for r in reports for c in r.sections["cells"]))
    cols = min(5, len(corruptions))
    rows = math.ceil(len(corruptions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.1 * cols, 5.5), 2.6 * rows + 0.8), squeeze=False,
                             sharey=True)
    for index, (ax, corruption) in enumerate(zip(axes.flat, corruptions)):
        for i, r in enumerate(reports):
            cells = [c for c in r.sections["cells"] if c["corruption"] == corruption]
            if not cells:  # a model without this corruption: no line (its clean point alone said nothing)
                continue
            xs, ys, yerr = _severity_points(r.sections.get("clean"), cells)
            # the models' bars side by side, not on one another
            shift = (i - (len(reports) - 1) / 2) * min(0.08, 0.4 / len(reports))
            ax.errorbar([x + shift for x in xs], ys, yerr=yerr, marker="o", markersize=3,
                        capsize=2, elinewidth=0.7, color=model_color(i, len(reports)))
        ax.set_title(corruption.replace("_", " "), fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # severities, not 1.5
        if index >= len(corruptions) - cols:  # bottom row of each column
            ax.set_xlabel("severity (0 = clean)", fontsize=8)
        if index % cols == 0:
            ax.set_ylabel("top-1 error (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(corruptions):]:
        ax.set_visible(False)
    # every model's line, whichever panels it is drawn in (the first panel may lack some)
    handles = [plt.Line2D([], [], marker="o", markersize=3, color=model_color(i, len(reports)))
               for i in range(len(reports))]
    fig.suptitle(f"{reports[0].heading}: top-1 error against severity")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    legend_beside(fig, handles, [r.model for r in reports], title="model")
    return save(fig, path)


def ce_bars(reports: Sequence[Report], path: Path) -> Path | None:
    """CE per corruption as grouped bars, a bar per model (the baseline's = 100); a model's missing
    CE is marked "n/a".

    Raises:
        NotDrawn: the reports have corruption errors but no CE (nothing normalizes them).
    """
    from robustbench_gcp.reports.figures import NotDrawn, grouped_bars, pyplot, save

    reports = [r for r in reports if r.sections.get("per_corruption")]
    if not reports:
        return None
    if all(e["CE"] is None for r in reports for e in r.sections["per_corruption"]):
        raise NotDrawn(f"{reports[0].heading}: {path.name} (CE per corruption) not drawn, as no model has a "
                       "CE here (the notes say why); the error-against-severity figure shows the errors")
    plt = pyplot()
    corruptions = list(dict.fromkeys(e["corruption"] for r in reports for e in r.sections["per_corruption"]))
    series = {}
    averaged = {len(r.sections["metrics"].get("corruptions") or ()) for r in reports
                if r.sections["metrics"].get("mCE") is not None}
    for r in reports:
        ce_of = {e["corruption"]: e["CE"] for e in r.sections["per_corruption"]}
        mce = r.sections["metrics"].get("mCE")
        over = r.sections["metrics"].get("corruptions") or ()
        # mCEs over other corruption sets do not compare: say over how many each averages
        of = f" over {len(over)}" if len(averaged) > 1 else ""
        has_ce = any(e["CE"] is not None for e in r.sections["per_corruption"])
        label = r.model + (f" (mCE {mce:.1f}{of})" if mce is not None else "" if has_ce else " (no CE)")
        series[label] = [ce_of.get(c) for c in corruptions]
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(corruptions) * max(1, len(series)) / 1.5), 4.5))
    grouped_bars(ax, corruptions, series)
    ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("corruption")
    ax.set_ylabel(f"CE (%, {reports[0].sections['metrics'].get('baseline') or 'baseline'} = 100)")
    ax.set_title(f"{reports[0].heading}: corruption error per corruption")
    fig.tight_layout()
    return save(fig, path)


def flip_probability(reports: Sequence[Report], path: Path) -> Path | None:
    """Flip probability (%) per perturbation as grouped bars, a bar per model."""
    from robustbench_gcp.reports.figures import grouped_bars, pyplot, save

    reports = [r for r in reports if r.sections.get("perturbations")]
    if not reports:
        return None
    plt = pyplot()
    difficulty = min(e["difficulty"] for r in reports for e in r.sections["perturbations"])
    names = list(dict.fromkeys(e["perturbation"] for r in reports for e in r.sections["perturbations"]
                               if e["difficulty"] == difficulty))
    series = {}
    for r in reports:
        fp = {e["perturbation"]: e["flip_probability"] for e in r.sections["perturbations"]
              if e["difficulty"] == difficulty}
        series[r.model] = [None if fp.get(p) is None else 100 * fp[p] for p in names]
    fig, ax = plt.subplots(figsize=(max(7, 0.7 * len(names) * max(1, len(series)) / 1.5), 4.5))
    grouped_bars(ax, names, series)
    ax.set_xlabel("perturbation")
    ax.set_ylabel("flip probability (%)")
    ax.set_title(f"{reports[0].heading}: flip probability per perturbation (difficulty {difficulty})")
    fig.tight_layout()
    return save(fig, path)
