"""Speed and fidelity measurements of the torch corruptions against the reference backend.

Used by ``gcp-robust bench corruptions`` and ``gcp-robust bench fidelity``; usable
from Python too. Needs NumPy, Pillow, scikit-image and imagecorruptions (the
reference backend); ``import corruptions`` does not import this module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from corruptions import corrupt, get_corruption, list_corruptions
from corruptions._registry import check_name

__all__ = ["PHOTOS", "fidelity", "geometric_mean", "photos", "speed"]

#: colour photographs shipped inside scikit-image (no download)
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)

Progress = Callable[[str], None]


def photos(count: int = 4, size: int = 224) -> torch.Tensor:
    """Real photographs as (count, 3, size, size) float images on the uint8 grid (k / 255).

    scikit-image's colour photographs, shorter side resized to ``size`` (PIL
    bilinear) and centre-cropped, as the ImageNet-C preprocessing; beyond the 8
    photographs, mirrored and transposed copies follow.
    """
    import numpy as np
    import skimage.data
    from PIL import Image

    if count < 1:
        raise ValueError(f"`count` should be >= 1. Got {count}")
    base = []
    for name in PHOTOS:
        array = getattr(skimage.data, name)()
        if isinstance(array, tuple):  # stereo_motorcycle: (left, right, disparity)
            array = array[0]
        image = Image.fromarray(array).convert("RGB")
        width, height = image.size
        scale = size / min(width, height)
        image = image.resize(
            (max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR
        )
        width, height = image.size
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
        base.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    variants = [lambda t: t, lambda t: t.flip(-1), lambda t: t.transpose(-1, -2),
                lambda t: t.flip(-2)]
    out = [variants[(i // len(base)) % len(variants)](base[i % len(base)]) for i in range(count)]
    return torch.stack(out).float() / 255


def geometric_mean(values: Sequence[float]) -> float | None:
    """Geometric mean of the positive finite values (None if there are none)."""
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Minimum wall time of ``repeats`` calls, in seconds (robust to other processes)."""
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def speed(
    names: Sequence[str] | None = None,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    size: int = 224,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    reference_images: int = 2,
    repeats: int = 3,
    progress: Progress | None = None,
) -> list[dict]:
    """Time this package and the reference backend on the same images.

    For each corruption and severity: the best of ``repeats`` calls of
    :func:`corrupt` on a batch of ``batch_size`` photographs (after one warm-up call
    that fills the caches), per image; and imagecorruptions on each of the first
    ``reference_images`` of the same images, one at a time on the CPU, best of 2
    (glass_blur: one image, once; it takes about a second per image). The best of
    several runs is robust to other processes on a shared machine. Times are then
    averaged over the severities.

    Returns:
        One row per corruption: corruption, ms_per_image, images_per_second,
        reference_ms_per_image, speedup, reference_images.
    """
    from corruptions.reference import corrupt_reference

    device = torch.device(device)
    names = list(names) if names is not None else list_corruptions("all")
    names = [check_name(n) for n in names]
    images = photos(batch_size, size).to(device)
    seeds = list(range(batch_size))
    warm = photos(1, 32)  # imports and first-call costs of the reference, on a tiny image
    cpu = torch.device("cpu")
    rows = []
    for name in names:
        if progress:
            progress(name)
        glass = name == "glass_blur"
        count = 1 if glass else max(1, min(reference_images, batch_size))
        ours, reference = [], []
        for severity in severities:
            corrupt(images, name, severity, seed=seeds)  # warm-up: caches, textures, kernels
            best = _best_time(lambda n=name, s=severity: corrupt(images, n, s, seed=seeds),
                              repeats, device)
            ours.append(best / batch_size * 1000)
            corrupt_reference(warm, name, severity, seed=[0])
            per_image = [
                _best_time(lambda i=i, n=name, s=severity: corrupt_reference(
                    images[i : i + 1].cpu(), n, s, seed=[seeds[i]]), 1 if glass else 2, cpu)
                for i in range(count)
            ]
            reference.append(sum(per_image) / count * 1000)
        ms = sum(ours) / len(ours)
        ref_ms = sum(reference) / len(reference)
        rows.append({
            "corruption": name,
            "ms_per_image": ms,
            "images_per_second": 1000 / ms if ms > 0 else None,
            "reference_ms_per_image": ref_ms,
            "speedup": ref_ms / ms if ms > 0 else None,
            "reference_images": count,
        })
    return rows


def _psnr(corrupted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    mse = ((corrupted.double() - clean.double()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


def fidelity(
    names: Sequence[str] | None = None,
    *,
    images: int = 4,
    seeds: int = 3,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    glass_blur_images: int = 1,
    progress: Progress | None = None,
) -> list[dict]:
    """Distance of the torch corruptions to the reference, per corruption and severity.

    Reference: imagecorruptions, except for the corruptions where it departs from
    the original ImageNet-C code (pixelate, elastic_transform, frost), compared
    with this package's NumPy transcription of the original
    (``corrupt_reference(..., follow_original=True)``); the row says which.

    - ``mad``: mean absolute difference in 1/255 units. Deterministic
      corruptions: on the same images. Random ones: *paired*, i.e. with the
      reference's own random draws fed to this package's corruption
      (:func:`corruptions.reference.reference_with_draws`), on ``images`` images.
    - random ones also get distribution statistics over ``images`` x ``seeds``
      independent draws on each side: mean PSNR to the clean image (dB) of both and
      their difference, with its standard error (from the per-image differences of
      the means over seeds, so that the spread between images cancels), and the
      mean standard deviation of (corrupted - clean) in 1/255 units. glass_blur uses
      ``glass_blur_images`` images and one seed (its reference takes about a second
      per image).

    Runs on CPU, in float64.
    """
    from corruptions.reference import ORIGINAL_DIFFERS, corrupt_reference, reference_with_draws

    names = list(names) if names is not None else list_corruptions("all")
    names = [check_name(n) for n in names]
    clean_all = photos(images).double()
    rows = []
    for name in names:
        spec = get_corruption(name)
        original = name in ORIGINAL_DIFFERS
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
                "reference": "original" if original else "imagecorruptions",
            }
            if not spec.random:
                ours = corrupt(clean, name, severity)
                ref = corrupt_reference(clean, name, severity, follow_original=original)
                row["mad"] = float((ours - ref).abs().mean() * 255)
                row["max_abs"] = float((ours - ref).abs().max() * 255)
            else:
                first = [1000 + i for i in range(len(clean))]
                ref, params = reference_with_draws(
                    clean, name, severity, seed=first, follow_original=original
                )
                paired = spec.apply(clean, severity, params).clamp(0, 1)
                row["mad"] = float((paired - ref).abs().mean() * 255)
                row["max_abs"] = float((paired - ref).abs().max() * 255)
                psnr_ours, psnr_ref, std_ours, std_ref = [], [], [], []
                for k in range(n_seeds):
                    seed = [10_000 * (k + 1) + i for i in range(len(clean))]
                    ours = corrupt(clean, name, severity, seed=seed)
                    ref = corrupt_reference(clean, name, severity, seed=seed,
                                            follow_original=original)
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
            rows.append(row)
    return rows
