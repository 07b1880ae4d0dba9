"""Metrics computed from stored counts (PROTOCOL.md). Pure functions, no I/O.

Conventions: errors are fractions in [0, 1]; CE, mCE, relative CE and relative
mCE are percentages with the baseline (AlexNet) = 100, as in the literature.

- E(s, c): top-1 error at severity s of corruption c.
- CE_c = sum_s E(s, c) / sum_s E_base(s, c)            (x 100)
- relative CE_c = sum_s (E(s, c) - E_clean) / sum_s (E_base(s, c) - E_base_clean)   (x 100)
- mCE, relative mCE: means of CE_c / relative CE_c over the benchmark corruptions run.
- mean error (unnormalized): mean over corruptions of mean_s E(s, c) (what
  hendrycks' test.py prints; it is not the mCE).
When only some severities were run, both sums run over those severities only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from robustbench_gcp.errors import check_integer

#: the normalizer of reports when none is named (benchmarks.yaml's AlexNet table; for
#: ImageNet-P a stored run of that name, when there is one)
DEFAULT_BASELINE = "alexnet"


def baseline_names(value: str) -> list[str]:
    """The names of ``--baseline`` (``alexnet,demo-gap``: each suite takes the first it can use)."""
    return list(dict.fromkeys(name.strip() for name in str(value).split(",") if name.strip())) or [value]


#: a float, or an array of bootstrap resamples of it: the formulas below take either
Value = TypeVar("Value")


@dataclass(frozen=True)
class Baseline:
    """ImageNet-C normalizers: per-corruption top-1 errors at severities 1..5, clean error."""

    name: str
    description: str = ""
    clean_error: float | None = None
    imagenet_c: dict[str, tuple[float, ...]] = field(default_factory=dict)
    #: a stored baseline run (``gcp-robust baseline``): the run, and per cell ("fog/3", "clean")
    #: its per-image errors, which comparisons resample with the images of a run on the same
    #: images (None: published errors, fixed)
    run: Any = None
    samples: Mapping[str, Any] | None = None
    #: the run this normalizes is that baseline run itself: its CE is 100 by definition
    own: bool = False
    #: a stored baseline run's corruptions it lacks complete cells of, and at which of the asked
    #: severities (the table holds a corruption only with every asked severity)
    lacking: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    #: a stored baseline run's errors on every complete cell it was asked for, corruption ->
    #: severity -> error, from which :meth:`for_cells` makes the table of those cells or some of
    #: them (None: published errors, every severity)
    cell_errors: Mapping[str, Mapping[int, float]] | None = None
    #: a stored baseline run's corruptions it holds cells of only of another dataset's images than
    #: the cells asked for, corruption -> that dataset's name (they normalize nothing here)
    elsewhere: Mapping[str, str] = field(default_factory=dict)
    #: a stored baseline run's corruptions it holds cells of only made another way than the cells
    #: asked for (released files for generated ones, other parameters) or of a model of other
    #: classes: corruption -> ("made" or "classes", how its cells are, how the asked ones are, at
    #: which severities)
    made_otherwise: Mapping[str, tuple[str, str, str, tuple[int, ...]]] = field(default_factory=dict)

    def error(self, corruption: str, severity: int) -> float:
        return self.imagenet_c[corruption][severity - 1]

    def for_cells(self, keys: Iterable[Any]) -> Baseline:
        """This baseline as it normalizes only the cells ``keys`` (cell keys: a corruption's
        ``name`` and its severity as ``level``; the clean cell's empty level is passed over), e.g.
        those every model of a comparison has: a stored run then holds every corruption whose
        severities among them it has, where it lacked others of the cells it was first asked
        for. Published errors (every severity) are returned as they are."""
        if self.cell_errors is None:
            return self
        asked: dict[str, set[int]] = {}
        for key in keys:
            if str(key.level).isdigit():
                asked.setdefault(key.name, set()).add(int(key.level))
        errors = self.cell_errors
        # the corruptions with every asked severity (NaN at severities 1-5 it was not asked for)
        table = {c: tuple(errors[c].get(s, math.nan) for s in range(1, 6)) for c in errors
                 if asked.get(c, set()) <= set(errors[c])}
        lacking = {c: tuple(sorted(levels - set(errors.get(c, {})))) for c, levels in asked.items()
                   if not levels <= set(errors.get(c, {}))}
        return dataclasses.replace(self, imagenet_c=table, lacking=lacking)


def rate(count: float, n: int) -> float | None:
    """count / n, or None when nothing was counted."""
    return count / n if n else None


def ce(errors: Sequence[Value], baseline_errors: Sequence[float]) -> Value | None:
    """CE_c in percent: 100 sum_s E(s, c) / sum_s E_base(s, c) over the same severities.

    ``errors`` may be floats or arrays (bootstrap resamples); None when the baseline's
    errors sum to 0.
    """
    denominator = sum(baseline_errors)
    return 100.0 * (sum(errors) / denominator) if denominator > 0 else None


def relative_ce(errors: Sequence[Value], clean_error: Value, baseline_errors: Sequence[float],
                baseline_clean_error: float) -> Value | None:
    """Relative CE_c in percent: 100 sum_s (E(s, c) - E_clean) / sum_s (E_base(s, c) - E_base_clean).

    None when the baseline's denominator is not positive (no degradation to normalize by).
    """
    denominator = sum(b - baseline_clean_error for b in baseline_errors)
    if denominator <= 0:
        return None
    # the ratio first, as in ce: the baseline's own relative CE is exactly 100 (it was 99.99999999999999)
    return 100.0 * (sum(e - clean_error for e in errors) / denominator)


def relative_rate(value: Value, baseline: float | None) -> Value | None:
    """FR_p and T5D_p in percent: 100 value / the baseline's; None without a positive baseline."""
    # the ratio first: a value equal to the baseline's gives exactly 100 (100 v / v may not)
    return 100.0 * (value / baseline) if baseline is not None and baseline > 0 else None


@dataclass(frozen=True)
class CorruptionSummary:
    corruption: str
    severities: tuple[int, ...]
    mean_error: float
    CE: float | None
    relative_CE: float | None


def corruption_errors(
    errors: Mapping[tuple[str, int], float],
    clean_error: float | None,
    baseline: Baseline | None,
) -> list[CorruptionSummary]:
    """CE and relative CE per corruption from the top-1 error of each (corruption, severity).

    Corruptions keep the order in which they first appear in ``errors``.

    Example:
        >>> from robustbench_gcp.config import Baseline
        >>> base = Baseline("b", clean_error=0.4, imagenet_c={"fog": (0.5, 0.6, 0.7, 0.8, 0.9)})
        >>> s = corruption_errors({("fog", 1): 0.25, ("fog", 2): 0.3}, 0.2, base)[0]
        >>> round(s.CE, 6), round(s.relative_CE, 6)
        (50.0, 50.0)
    """
    by_corruption: dict[str, dict[int, float]] = {}
    for (corruption, severity), error in errors.items():
        by_corruption.setdefault(corruption, {})[severity] = error
    summaries = []
    for corruption, per_severity in by_corruption.items():
        severities = tuple(sorted(per_severity))
        values = [per_severity[s] for s in severities]
        value = relative = None
        if baseline is not None and corruption in baseline.imagenet_c:
            base = [baseline.error(corruption, s) for s in severities]
            value = ce(values, base)
            if clean_error is not None and baseline.clean_error is not None:
                relative = relative_ce(values, clean_error, base, baseline.clean_error)
        summaries.append(CorruptionSummary(corruption, severities, sum(values) / len(values), value,
                                           relative))
    return summaries


def mean_corruption_error(
    summaries: Sequence[CorruptionSummary], benchmark: Sequence[str]
) -> dict[str, object]:
    """mCE, relative mCE and the unnormalized mean error over the benchmark corruptions run.

    Returns a dict with ``mCE``, ``relative_mCE`` (None when not computable),
    ``mean_error``, ``corruptions`` (those averaged) and ``missing`` (benchmark
    corruptions that were not run).
    """
    chosen = [s for s in summaries if s.corruption in benchmark]
    chosen.sort(key=lambda s: list(benchmark).index(s.corruption))
    ces = [s.CE for s in chosen]
    rels = [s.relative_CE for s in chosen]
    return {
        "mCE": sum(ces) / len(ces) if chosen and None not in ces else None,
        "relative_mCE": sum(rels) / len(rels) if chosen and None not in rels else None,
        "mean_error": sum(s.mean_error for s in chosen) / len(chosen) if chosen else None,
        "corruptions": [s.corruption for s in chosen],
        "missing": [c for c in benchmark if c not in {s.corruption for s in chosen}],
    }


# -- ImageNet-P: flip probability and top-5 distance -----------------------------------------

def flip_mode(perturbation: str) -> str:
    """"noise" (compare every frame with frame 0) for the noise perturbations, else "sequential"."""
    from corruptions import NOISE_PERTURBATIONS  # (imports torch: not when the CLI starts)

    return "noise" if perturbation in NOISE_PERTURBATIONS else "sequential"


def comparison_pairs(frames: int, *, mode: str, difficulty: int = 1) -> tuple[list[int], list[int]]:
    """(reference frame, compared frame) index pairs of a video with ``frames`` frames.

    noise: (0, j) for j >= 1. sequential: (j - d, j) for j >= d, d = difficulty
    (the original walks d interleaved chains i, i+d, i+2d, ...; these are the same pairs).
    """
    if mode not in ("noise", "sequential"):
        raise ValueError(f"`mode` should be 'noise' or 'sequential'. Got {mode!r}")
    difficulty = check_integer("difficulty", difficulty, error=ValueError)
    step = 1 if mode == "noise" else difficulty
    if frames <= step:
        raise ValueError(f"a video needs more than {step} frame{'s' if step > 1 else ''} for mode "
                         f"{mode!r}. Got {frames}")
    if mode == "noise":
        return [0] * (frames - 1), list(range(1, frames))
    return list(range(0, frames - step)), list(range(step, frames))


def flip_totals(logits, *, mode: str, difficulty: int = 1):
    """Per-video numbers of flips and total top-5 distances of logits (V, T, K).

    Returns:
        (flips, distance, pairs): int64 tensors of shape (V,) (flipped pairs, the sum over
        pairs of the top-5 distance) and the number of frame pairs compared per video; the
        per-video rates of the original are ``flips / pairs`` and ``distance / pairs``.

    With fewer than 5 classes K, the distance is between top-K rankings (at most K (K + 1) / 2,
    not 15). NaN logits are not checked here (a check would wait for the device): see
    :func:`flip_counts`.

    Ties: the top-1 class is the first maximal class; ranks are ordinal
    (ties ranked by class index), as ``argmax`` and ``rankdata(method="ordinal")``.
    Compared in float64 for float64 logits, else in float32 (float16 and bfloat16 are
    upcast): a cast to float32 would tie logits that float64 tells apart.
    """
    import torch

    from corruptions._ops import device_constant

    if not isinstance(logits, torch.Tensor):  # a NumPy array or nested lists, as the library takes them
        import numpy as np

        got = type(logits).__name__
        wanted = f"`logits` should be a tensor (V, T, K) or array-like of numbers. Got {got}"
        try:
            array = np.asarray(logits)
        except (TypeError, ValueError) as error:  # ragged lists
            raise TypeError(f"{wanted}: {error}") from None
        if array.dtype.kind == "c":  # cast to real: the imaginary part dropped, with a warning only
            raise TypeError(f"`logits` should be real numbers. Got {array.dtype}")
        if array.dtype.kind not in "biuf":  # None and text became NaN or were parsed as numbers
            raise TypeError(f"{wanted} of {array.dtype}")
        logits = torch.as_tensor(array.astype(np.float64))
        if bool(torch.isnan(logits).any()):  # on the CPU (a tensor on a device is the caller's to check)
            raise ValueError("`logits` holds NaN values: no ranking of them is defined")
    if logits.ndim != 3 or logits.shape[-1] == 0:
        raise ValueError(f"`logits` should have shape (V, T, K), K >= 1 classes. Got {tuple(logits.shape)}")
    if logits.is_complex():  # cast to real: the imaginary part dropped, with a warning only
        raise TypeError(f"`logits` should be real numbers. Got {logits.dtype}")
    if logits.dtype != torch.float64:
        logits = logits.float()
    videos, frames, classes = logits.shape
    ref, cmp = comparison_pairs(frames, mode=mode, difficulty=difficulty)
    if videos == 0:
        empty = torch.zeros(0, dtype=torch.long, device=logits.device)
        return empty, empty, len(ref)
    # kept on the device: a copy per batch would wait there for the model's work
    ref_t = device_constant(tuple(ref), torch.long, logits.device)
    cmp_t = device_constant(tuple(cmp), torch.long, logits.device)
    a, b = logits[:, ref_t], logits[:, cmp_t]  # (V, P, K)
    flips = a.argmax(-1) != b.argmax(-1)
    k = min(5, classes)
    top = torch.sort(a, dim=-1, descending=True, stable=True).indices[..., :k]  # (V, P, k)
    value = b.gather(-1, top)  # compared-frame logits of the reference's top-k classes
    class_index = torch.arange(classes, device=logits.device)
    above = (b.unsqueeze(-2) > value.unsqueeze(-1)).sum(-1)
    tied_before = ((b.unsqueeze(-2) == value.unsqueeze(-1)) & (class_index < top.unsqueeze(-1))).sum(-1)
    rank = above + tied_before  # 0-based rank in the compared frame
    position = torch.arange(k, device=logits.device)
    distance = (position - rank.clamp(max=k)).abs().sum(-1)  # (V, P)
    return flips.sum(1), distance.sum(1), len(ref)


def flip_counts(logits, *, mode: str, difficulty: int = 1) -> dict[str, float]:
    """Raw ImageNet-P counts of a batch of videos (what the store keeps).

    Args:
        logits: (V, T, K) tensor: V videos of T frames, K classes (compared in float64
            for float64 logits, else in float32).
        mode: "noise" or "sequential" (see :func:`comparison_pairs`).
        difficulty: the frame stride of the sequential rule.

    Returns:
        See :func:`rate_counts`.

    Raises:
        ValueError: NaN logits (they would rank as no class does, and count as flips or not
            by chance; the suite's engine refuses them before).
    """
    import torch

    if torch.is_tensor(logits) and bool(torch.isnan(logits).any()):
        raise ValueError("`logits` holds NaN values: no ranking of them is defined")
    return rate_counts(*flip_totals(logits, mode=mode, difficulty=difficulty))


def rate_counts(flips, distances, pairs: int, *, on_device: bool = False) -> dict:
    """The stored counts of videos of ``pairs`` frame pairs each, from their per-video flips and
    total top-5 distances (:func:`flip_totals`).

    ``videos``, ``comparisons`` (videos x pairs), and integer totals over the videos: ``flips``
    and ``distance_total``. Every video of a cell compares the same number of pairs, so the
    original's mean over videos of per-video means is FP = flips / videos / pairs (T5D alike):
    divisions of exact integers, the same to the last bit however the videos are split into
    shards (see :func:`figures_of_counts`).

    ``flip_rate_sum`` and ``distance_rate_sum`` (float64 sums of the per-video rates, float32 on MPS; what
    versions before 0.7.7 stored) and ``videos_with_totals`` are kept beside them, so that a cell
    resumed across that version, whose older shards lack the totals, is still read right.

    With ``on_device``, the totals are left as 0-dim tensors where the inputs are (no wait for
    the device).
    """
    from corruptions._ops import exact_dtype  # float64 (MPS: float32, it has no float64)

    wide = exact_dtype(flips.device)
    sums = {"flips": flips.sum(), "distance_total": distances.sum(),
            "flip_rate_sum": (flips.to(wide) / pairs).sum(),
            "distance_rate_sum": (distances.to(wide) / pairs).sum()}
    if not on_device:
        sums = {name: value.item() for name, value in sums.items()}  # int for the totals, float for the rest
    videos = int(flips.numel())
    return {"videos": videos, "comparisons": videos * pairs, "videos_with_totals": videos, **sums}


def figures_of_counts(counts) -> tuple[float, float]:
    """(flip probability, top-5 distance) of a cell's summed counts (see :func:`rate_counts`):
    ``flips / videos / pairs``, in that order (as a comparison divides the mean of its per-video
    totals by the pairs: the same bits), from the integer totals where every video has them, else
    from the rate sums of older shards, which times the pairs are the same integers again (each
    video's rate is an integer over its pairs: far below half a unit of float error), so that a
    store written before 0.7.7 and a new one give the same bits.

    Raises:
        ValueError: counts of no videos.
    """
    videos = counts["videos"]
    if not videos:
        raise ValueError("the counts hold no videos")
    pairs = counts["comparisons"] // videos  # every video of a cell compares as many pairs
    if counts.get("videos_with_totals") == videos:
        flips, distance = counts["flips"], counts["distance_total"]
    else:
        flips, distance = (round(counts[name] * pairs) for name in ("flip_rate_sum", "distance_rate_sum"))
    return flips / videos / pairs, distance / videos / pairs


def flip_stats(logits, *, mode: str, difficulty: int = 1) -> tuple[float, float]:
    """(flip probability, top-5 distance) of V videos of logits (V, T, K).

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 3, 10); logits[0, 1, 3] = 1.0   # frame 1 predicts class 3
        >>> flip_stats(logits, mode="sequential")  # top-5 [0,1,2,3,4] <-> [3,0,1,2,4] twice
        (1.0, 6.0)
    """
    counts = flip_counts(logits, mode=mode, difficulty=difficulty)
    if not counts["videos"]:
        raise ValueError("`logits` holds no videos")
    return figures_of_counts(counts)
