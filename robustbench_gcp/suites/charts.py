"""The figures of the ImageNet-C and ImageNet-P suites (``Suite.plots``): error against severity,
CE per corruption, flip probability per perturbation; ``report --plot DIR`` writes them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robustbench_gcp.reports.report_type import Report


def _severity_points(clean: dict | None, cells: Sequence[dict],
                     measured: set[int]) -> tuple[list, list, list]:
    """A model's points of one corruption: severities (0 = clean), top-1 errors (%) with a gap
    (NaN) where it skipped a severity another model of the figure has (``measured``), so that no
    line joins clean to severity 3 across its missing 1 and 2 (severities no model has are joined
    over: a run of 1, 3, 5 was lone points), and each point's 95 % Wilson interval over its images
    (none where a cell lacks its count)."""
    from robustbench_gcp.stats import wilson_of_count

    points = ([(0, clean)] if clean is not None else []) + sorted(
        ((c["severity"], c) for c in cells), key=lambda point: point[0])
    xs, ys, bounds = [], [], []
    for severity, cell in points:
        if cell.get("top1_error") is None:
            continue
        if xs and any(xs[-1] < other < severity for other in measured):
            xs.append(xs[-1] + 0.5)
            ys.append(math.nan)
            bounds.append((0.0, 0.0))
        error, n = cell["top1_error"], cell.get("n")
        iv = wilson_of_count(round(error * n), n) if n else None
        xs.append(severity)
        ys.append(100 * error)
        bounds.append((100 * (error - iv.low), 100 * (iv.high - error)) if iv else (0.0, 0.0))
    return xs, ys, [list(b) for b in zip(*bounds)]


def error_vs_severity(reports: Sequence[Report], path: Path, heading: str | None = None) -> Path | None:
    """One panel per corruption: top-1 error (%) against severity, a line per model with each
    point's 95 % interval over images (Wilson's) as a bar."""
    from matplotlib.ticker import MaxNLocator

    from robustbench_gcp.reports import figures

    reports = [r for r in reports if r.sections.get("cells")]
    if not reports:
        return None
    corruptions = list(dict.fromkeys(c["corruption"] for r in reports for c in r.sections["cells"]))
    fig, axes, cols = figures.panel_grid(len(corruptions), cols=5, width=3.1, height=2.6, least_width=5.5)
    for ax, corruption in zip(axes, corruptions):
        measured = {c["severity"] for r in reports for c in r.sections["cells"]
                    if c["corruption"] == corruption and c.get("top1_error") is not None}
        measured |= {0} if any(r.sections.get("clean") for r in reports) else set()
        for i, r in enumerate(reports):
            cells = [c for c in r.sections["cells"] if c["corruption"] == corruption]
            if not cells:  # a model without this corruption: no line (its clean point alone said nothing)
                continue
            xs, ys, yerr = _severity_points(r.sections.get("clean"), cells, measured)
            shift = figures.spread(i, len(reports), 1.0)  # the models' bars side by side, not on one another
            ax.errorbar([x + shift for x in xs], ys, yerr=yerr, marker=figures.model_marker(i), markersize=3,
                        capsize=2, elinewidth=0.7, color=figures.model_color(i, len(reports)))
        ax.set_title(corruption.replace("_", " "), fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # severities, not 1.5
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    figures.panel_labels(axes, cols, "severity (0 = clean)", "top-1 error (%)", fontsize=8)
    figures.title_and_layout(fig, f"{heading or reports[0].heading}: top-1 error against severity")
    # every model's line, whichever panels it is drawn in (the first panel may lack some)
    figures.legend_beside(fig, figures.model_handles(len(reports)), [r.model for r in reports], title="model")
    return figures.save(fig, path)


def _names(names: Sequence[str]) -> str:
    return ", ".join(n.replace("_", " ") for n in names)


def _no_mce(report) -> str:
    """Why a model with CEs has no mCE: no benchmark corruption among its corruptions (the means
    average those), or a CE it lacks (an mCE needs every benchmark corruption's)."""
    if not report.sections["metrics"].get("corruptions"):
        return "no mCE: no benchmark corruption"
    lacking = [e["corruption"] for e in report.sections["per_corruption"] if e["CE"] is None]
    return f"no mCE: no CE for {_names(lacking[:3])}{' ...' if len(lacking) > 3 else ''}"


def mean_scopes(reports: Sequence[Report],
                metric: str = "mCE") -> list[tuple[tuple[str, ...], tuple[int, ...]] | None]:
    """What each report's mCE (or another mean of its metrics: ``mean_error``) averages,
    (corruptions, severities); None where it has none. The
    severities are its mean corruptions' CEs' (its own report's), not its cells', which held a
    severity it stored for some corruptions only (helper-248: mCEs of severities 1-3 and 1-2 side by
    side without a word, or a legend naming a severity 4 the mCE left out)."""
    scopes = []
    for r in reports:
        metrics = r.sections["metrics"]
        over = tuple(metrics.get("corruptions") or ())
        severities = tuple(sorted({s for e in r.sections["per_corruption"] if e["corruption"] in over
                                   for s in e.get("severities") or ()}))
        scopes.append((over, severities) if metrics.get(metric) is not None else None)
    return scopes


def mean_scope_texts(reports: Sequence[Report], metric: str = "mCE") -> list[str]:
    """Each report's ``over 4 corruptions at severities 1, 2`` where the models' mCEs (``metric``)
    average other corruptions or severities (they do not compare), else ""; "" for one without."""
    scopes = mean_scopes(reports, metric)
    averaged = [scope for scope in scopes if scope is not None]
    other_corruptions = len({over for over, _ in averaged}) > 1
    other_severities = len({severities for _, severities in averaged}) > 1
    texts = []
    for scope in scopes:
        of = []
        if scope is not None and other_corruptions:
            over = scope[0]
            of.append(f"over {_names(over)}" if len(over) <= 3 else f"over {len(over)} corruptions")
        if scope is not None and other_severities:
            of.append(f"at severities {', '.join(map(str, scope[1]))}")
        texts.append(" ".join(of))
    return texts


def ce_bars(reports: Sequence[Report], path: Path, heading: str | None = None) -> Path | None:
    """CE per corruption as grouped bars, a bar per model (the baseline's = 100); a model's missing
    CE is marked "n/a". Each model's mCE in the legend is its own report's: where the models average
    other corruptions (or severities), the legend names them and says so.

    Raises:
        NotDrawn: the reports have corruption errors but no CE (nothing normalizes them).
    """
    from robustbench_gcp.reports.figures import NotDrawn, bar_figure, save
    from robustbench_gcp.reports.tables import decimal_format

    reports = [r for r in reports if r.sections.get("per_corruption")]
    if not reports:
        return None
    if all(e["CE"] is None for r in reports for e in r.sections["per_corruption"]):
        raise NotDrawn(f"{reports[0].heading}: {path.name} (CE per corruption) not drawn, as no model has a "
                       "CE here (the notes say why); the error-against-severity figure shows the errors")
    corruptions = list(dict.fromkeys(e["corruption"] for r in reports for e in r.sections["per_corruption"]))

    averaged = {scope for scope in mean_scopes(reports) if scope is not None}
    # the same reason for every model (a CE its baseline lacks): said once, in the legend's title
    shared = {_no_mce(r) for r in reports} if len(reports) > 1 and not averaged else set()
    shared_why = next(iter(shared)) if len(shared) == 1 else None
    series = {}
    for r, of in zip(reports, mean_scope_texts(reports)):
        ce_of = {e["corruption"]: e["CE"] for e in r.sections["per_corruption"]}
        mce = r.sections["metrics"].get("mCE")
        if mce is not None:
            label = f"{r.model} (mCE {decimal_format(mce, '.1f')}{' ' + of if of else ''})"
        elif all(ce is None for ce in ce_of.values()):
            label = f"{r.model} (no CE)"
        elif shared_why:
            label = r.model
        else:
            label = f"{r.model} ({_no_mce(r)})"
        series[label] = [ce_of.get(c) for c in corruptions]
    legend = "model" if len(averaged) < 2 else "model (mCE of its own report's cells)"
    if shared_why:
        legend = f"model ({shared_why})"
    baseline = reports[0].sections["metrics"].get("baseline") or "baseline"
    fig = bar_figure([(None, corruptions, series)], title=f"{heading or reports[0].heading}: corruption "
                     "error per corruption", xlabel="corruption", ylabel=f"CE (%, {baseline} = 100)",
                     legend_title=legend, reference=100)
    return save(fig, path)


def flip_probability(reports: Sequence[Report], path: Path, heading: str | None = None) -> Path | None:
    """Flip probability (%) per perturbation as grouped bars, a bar per model: a row of panels per
    difficulty (the lowest alone was drawn, without a word)."""
    from robustbench_gcp.reports.figures import bar_figure, save

    reports = [r for r in reports if r.sections.get("perturbations")]
    if not reports:
        return None
    difficulties = sorted({e["difficulty"] for r in reports for e in r.sections["perturbations"]})
    panels = []
    for difficulty in difficulties:
        names = list(dict.fromkeys(e["perturbation"] for r in reports for e in r.sections["perturbations"]
                                   if e["difficulty"] == difficulty))
        series = {}
        for r in reports:
            fp = {e["perturbation"]: e["flip_probability"] for e in r.sections["perturbations"]
                  if e["difficulty"] == difficulty}
            series[r.model] = [None if fp.get(p) is None else 100 * fp[p] for p in names]
        panels.append((f"difficulty {difficulty}" if len(difficulties) > 1 else None, names, series))
    at = f" (difficulty {difficulties[0]})" if len(difficulties) == 1 else ""
    fig = bar_figure(panels, title=f"{heading or reports[0].heading}: flip probability per perturbation{at}",
                     xlabel="perturbation", ylabel="flip probability (%)")
    return save(fig, path)
