"""PGD through the suite against a plain PyTorch PGD loop, side by side (``gcp-robust bench attack``).

The suite's path is :class:`robustbench_gcp.suites.attacks.AttackTask` (foolbox,
with its bookkeeping: clean pass, seeded per-image random starts, projection,
success pass); the plain path is :func:`plain_pgd` doing the same steps. Both run
on the same images and model, taking turns; the best time of each counts.

Example:
    >>> from robustbench_gcp.config import load_config
    >>> from robustbench_gcp.pipeline.weights import choose_model, load_chosen
    >>> net = load_chosen(choose_model(load_config(), "demo-gap"), "cpu")  # doctest: +SKIP
    >>> rows = pgd_speed(net, "cpu", images=8, steps=2, epsilon=2 / 255,
    ...                  repeats=1)                                          # doctest: +SKIP
    >>> [r["path"] for r in rows]                                            # doctest: +SKIP
    ['suite', 'plain']
"""

from __future__ import annotations

import torch
from torch import nn

from robustbench_gcp.bench.timing import time_calls

__all__ = ["REL_STEPSIZE", "demo_batch", "pgd_speed", "plain_pgd"]

#: PGD step size as a fraction of epsilon, on both paths
REL_STEPSIZE = 0.25


def plain_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              eps: float, steps: int, rel_stepsize: float, generator: torch.Generator) -> torch.Tensor:
    """A textbook Linf PGD (random start, sign steps, projection) with a clean pass before and a
    check after, as the suite does.

    Args:
        model: classifier of normalized images.
        x: (B, 3, H, W) images in [0, 1]; y: their labels.
        mean, std: the model's normalization, broadcastable to ``x``.
        eps: Linf budget on the [0, 1] scale.
        steps: iterations; rel_stepsize: step as a fraction of ``eps``.
        generator: draws the random start (on ``x``'s device).

    Returns:
        (B,) booleans: the clean-correct images the attack flips.
    """
    import torch.nn.functional as F

    with torch.no_grad():
        correct = model((x - mean) / std).argmax(-1) == y
    step = rel_stepsize * eps
    adv = (x + (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model((adv - mean) / std), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * grad.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    with torch.no_grad():
        return correct & (model((adv - mean) / std).argmax(-1) != y)


def demo_batch(count: int, *, resize_size: int, input_size: int, num_classes: int,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images of the embedded demo's validation set (generated in a temporary folder,
    repeated as needed), resized to ``resize_size`` and centre-cropped to ``input_size``.

    Returns:
        (count, 3, input_size, input_size) floats in [0, 1] and their labels, clamped below
        ``num_classes``, on ``device``.
    """
    import tempfile
    from pathlib import Path

    from robustbench_gcp.data.demo_images import build_demo_dataset
    from robustbench_gcp.data.folders import scan_folder
    from robustbench_gcp.data.loader import Preprocess, iterate_batches

    with tempfile.TemporaryDirectory(prefix="gcp-robust-bench-") as tmp:
        folder = scan_folder(build_demo_dataset(Path(tmp) / "data") / "val", class_order="sorted")
        # each photograph decoded once, then repeated (a large count failed only after decoding
        # all of its copies, or never ended)
        preprocess = Preprocess(resize_size, input_size)
        decoded = torch.cat([b for b, _ in iterate_batches(folder.paths(), preprocess, batch_size=64)])
    repeat = torch.arange(count) % len(folder)
    x = decoded[repeat].to(device).float().div_(255)
    labels = torch.tensor(folder.labels, device=device)[repeat.to(device)]
    return x, labels.clamp(max=num_classes - 1)


def pgd_speed(net: nn.Module, device: torch.device | str, *, images: int = 64, batch_size: int = 32,
              steps: int = 10, epsilon: float, repeats: int = 3) -> list[dict]:
    """Images per second of PGD-Linf through the suite and through :func:`plain_pgd`.

    Args:
        net: a model of the registry (``pretrained_cfg``, ``num_classes``) in eval mode on
            ``device``.
        device: where it runs.
        images: images attacked per path and round (demo images, see :func:`demo_batch`).
        batch_size: images per attack batch (both paths).
        steps: PGD iterations.
        epsilon: Linf budget on the [0, 1] scale (checked by the caller).
        repeats: alternating rounds; the best time of each path is kept.

    Returns:
        Two rows, ``suite`` then ``plain``: path, images_per_s, seconds, fooled
        (correctly classified images whose prediction the attack changes); the suite's
        row adds ``ratio`` (its images/s over the plain loop's).
    """
    from pathlib import Path

    from robustbench_gcp.engine.classifier import Classifier
    from robustbench_gcp.engine.runner import Context, ImageSource
    from robustbench_gcp.suites.attacks import AttackSpec, AttackTask

    device = torch.device(device)
    cfg = net.pretrained_cfg
    x, labels = demo_batch(images, resize_size=cfg.resize_size, input_size=cfg.input_size,
                           num_classes=net.num_classes, device=device)
    params = {"steps": steps, "rel_stepsize": REL_STEPSIZE, "random_start": True}
    task = AttackTask(AttackSpec("pgd-linf", (epsilon,), params), ImageSource(Path(".")), net.num_classes)
    ctx = Context(Classifier(net, device, mean=cfg.mean, std=cfg.std), seed=0, batch_size=batch_size)
    mean = torch.tensor(cfg.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std, device=device).view(1, -1, 1, 1)

    def suite() -> int:
        fooled = 0
        for i in range(0, images, batch_size):
            uint8 = (x[i:i + batch_size] * 255).round().to(torch.uint8)
            (result,) = task.process(uint8, labels[i:i + batch_size], list(range(i, i + len(uint8))), ctx)
            fooled += result.counts["successes"]  # on the device, as the suite leaves it
        return int(fooled)

    def plain() -> int:
        g = torch.Generator(device=device).manual_seed(0)
        return sum(int(plain_pgd(net, x[i:i + batch_size], labels[i:i + batch_size], mean, std, epsilon,
                                 steps, REL_STEPSIZE, g).sum()) for i in range(0, images, batch_size))

    timings = time_calls([suite, plain], device=device, repeats=repeats, warmup=1)  # imports, first calls
    rows = [{"path": name, "images_per_s": images / timing.best, "seconds": timing.best,
             "fooled": timing.result} for name, timing in zip(("suite", "plain"), timings, strict=True)]
    rows[0]["ratio"] = rows[0]["images_per_s"] / rows[1]["images_per_s"]
    return rows
