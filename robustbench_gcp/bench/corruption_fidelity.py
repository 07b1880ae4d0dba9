"""Distance of the torch corruptions to the reference backend, per corruption and severity.

Used by ``gcp-robust bench fidelity``; usable from Python too. Needs NumPy,
Pillow, scikit-image and imagecorruptions (the reference backend), imported on
the first call.

Example:
    >>> from robustbench_gcp.bench.corruption_fidelity import fidelity
    >>> (row,) = fidelity(["brightness"], images=1, severities=[3])  # doctest: +SKIP
    >>> row["mad"] < 1                                               # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from corruptions import (
    PRESET_SIZES,
    SEVERITIES,
    check_name,
    check_preset,
    corrupt,
    get_corruption,
    list_corruptions,
)
from robustbench_gcp.bench.corruption_speed import reference_name
from robustbench_gcp.bench.photos import photo_levels

__all__ = ["AGREEMENT", "fidelity"]

Progress = Callable[[str], None]


def _psnr(corrupted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    mse = ((corrupted.double() - clean.double()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


#: a row agrees with its reference where its MAD (paired for random corruptions) is below this, in
#: 1/255 units: float error only (the tests' bound; measured at most 7e-5), and its row of constants
#: is the original script's (``table``: the paired MAD cannot see those that shape what the port is
#: handed, as fog's plasma decay or snow's layer loc and scale). A wrong constant it sees is far
#: above the bound (gaussian_noise's 0.08 as 0.10: 3 levels). The PSNR and std statistics, which
#: test the samplers, give no verdict: over a few images their standard error is too rough for one.
AGREEMENT = 0.01

#: corruptions whose transcription of the original ImageNet-C code is of 224 px images only
AT_224_ONLY = ("elastic_transform", "frost")


def fidelity(
    names: Sequence[str] | None = None,
    *,
    images: int = 4,
    seeds: int = 3,
    severities: Sequence[int] = SEVERITIES,
    glass_blur_images: int = 1,
    progress: Progress | None = None,
    preset: str = "imagenet",
    size: int | None = None,
) -> list[dict]:
    """Distance of the torch corruptions to the reference, per corruption and severity.

    Reference (``preset="imagenet"``): imagecorruptions, except for the corruptions
    where it departs from the original ImageNet-C code (pixelate, elastic_transform, snow,
    frost), compared with the corruptions package's NumPy transcription of the
    original (``corrupt_reference(..., follow_original=True)``); the row says which.
    ``preset="cifar"`` / ``"tinyimagenet"``: the transcription of ``make_cifar_c.py`` /
    ``make_tinyimagenet_c.py`` for every corruption (motion blur: imagecorruptions'
    NumPy port, as ImageMagick is not installable); rows say the script's name.

    - ``table``: this package's row of constants is the original script's
      (:func:`corruptions.reference.table_differs`).
    - ``agrees``: ``table``, and ``mad`` below :data:`AGREEMENT` (None where ``mad`` is not
      measured and ``table`` holds).
    - ``mad``: mean absolute difference in 1/255 units. Deterministic
      corruptions: on the same images. Random ones: *paired*, i.e. with the
      reference's own random draws fed to the torch corruption
      (:func:`corruptions.reference.reference_with_draws`), on ``images`` images.
    - random ones also get distribution statistics over ``images`` x ``seeds``
      independent draws on each side: mean PSNR to the clean image (dB) of both and
      their difference, with its standard error (from the per-image differences of
      the means over seeds, so that the spread between images cancels), and the
      mean standard deviation of (corrupted - clean) in 1/255 units. glass_blur uses
      ``glass_blur_images`` images and one seed (its reference takes about a second
      per image).

    Runs on CPU, in float64, on the photographs' uint8 levels (k / 255 exactly, as decoded
    images; before 0.7.13 their float32 values widened, a hair off the grid the references
    round to, so the figures held that input difference too).

    Args:
        names: corruption names (default: all of them).
        images: photographs (``size`` px, uint8 levels).
        seeds: independent draws per image for the statistics of random corruptions.
        severities: 1..5.
        glass_blur_images: photographs for glass_blur.
        progress: called with ``"<corruption> <severity>"`` before each is measured.
        preset: the corruption parameters (:data:`corruptions.PRESETS`) and reference.
        size: side of the photographs (default: the preset's: 224, 32, 64). With the ImageNet
            preset at another size, elastic_transform and frost are not measured (their rows'
            ``mad`` is None): the original's transcription is of 224 px images.

    Returns:
        One row per corruption and severity: corruption, severity, random, reference,
        table, mad, max_abs, agrees; random corruptions add psnr, psnr_reference, psnr_diff,
        psnr_diff_se, std, std_reference, std_diff, samples.

    Raises:
        ValueError: an unknown corruption name or preset.
    """
    from corruptions.reference import ORIGINAL_DIFFERS, corrupt_reference, reference_with_draws, table_differs

    preset = check_preset(preset)
    size = PRESET_SIZES[preset] if size is None else size
    names = list(names) if names is not None else list_corruptions("all")
    names = [check_name(n) for n in names]
    clean_all = photo_levels(images, size).double() / 255  # exactly k / 255, as decoded
    rows = []
    for name in names:
        spec = get_corruption(name)
        original = name in ORIGINAL_DIFFERS and preset == "imagenet"
        label = "original" if original else reference_name(preset)
        n_images = glass_blur_images if name == "glass_blur" else images
        n_seeds = 1 if name == "glass_blur" else seeds
        clean = clean_all[:n_images]
        for severity in severities:
            if progress:
                progress(f"{name} {severity}")
            row = {
                "corruption": name,
                "severity": severity,
                "random": spec.random,
                "reference": label,
                "table": not table_differs(name, severity, preset),
            }
            if original and name in AT_224_ONLY and size != PRESET_SIZES["imagenet"]:
                # the transcription hard-codes 224 px (elastic's 244 unit, frost's native crop), while
                # the port scales them: another algorithm (frost's crops fell off its textures)
                rows.append({**row, "reference": f"{label} (224 px only)", "mad": None, "max_abs": None,
                             "agrees": None if row["table"] else False})
                continue
            if not spec.random:
                ours = corrupt(clean, name, severity, preset=preset)
                ref = corrupt_reference(clean, name, severity, follow_original=original,
                                        preset=preset)
                row["mad"] = float((ours - ref).abs().mean() * 255)
                row["max_abs"] = float((ours - ref).abs().max() * 255)
            else:
                first = [1000 + i for i in range(len(clean))]
                ref, params = reference_with_draws(
                    clean, name, severity, seed=first, follow_original=original, preset=preset
                )
                paired = spec.apply(clean, severity, params, preset=preset).clamp(0, 1)
                row["mad"] = float((paired - ref).abs().mean() * 255)
                row["max_abs"] = float((paired - ref).abs().max() * 255)
                psnr_ours, psnr_ref, std_ours, std_ref = [], [], [], []
                for k in range(n_seeds):
                    seed = [10_000 * (k + 1) + i for i in range(len(clean))]
                    ours = corrupt(clean, name, severity, seed=seed, preset=preset)
                    ref = corrupt_reference(clean, name, severity, seed=seed,
                                            follow_original=original, preset=preset)
                    psnr_ours.append(_psnr(ours, clean))
                    psnr_ref.append(_psnr(ref, clean))
                    std_ours.append((ours - clean).std(dim=(1, 2, 3)) * 255)
                    std_ref.append((ref - clean).std(dim=(1, 2, 3)) * 255)
                # (seeds, images): the image effect cancels in per-image differences
                psnr_ours, psnr_ref = torch.stack(psnr_ours), torch.stack(psnr_ref)
                std_ours, std_ref = torch.stack(std_ours), torch.stack(std_ref)
                per_image = psnr_ours.mean(0) - psnr_ref.mean(0)
                row.update({
                    "psnr": float(psnr_ours.mean()),
                    "psnr_reference": float(psnr_ref.mean()),
                    "psnr_diff": float(per_image.mean()),
                    "psnr_diff_se": float(per_image.std() / len(per_image) ** 0.5)
                    if len(per_image) > 1 else None,
                    "std": float(std_ours.mean()),
                    "std_reference": float(std_ref.mean()),
                    "std_diff": float(std_ours.mean() - std_ref.mean()),
                    "samples": psnr_ours.numel(),
                })
            row["agrees"] = row["table"] and row["mad"] < AGREEMENT
            rows.append(row)
    return rows
