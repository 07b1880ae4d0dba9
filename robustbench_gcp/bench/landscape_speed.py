"""The landscape suite against the naive loop, side by side (``gcp-robust bench landscape``).

The suite's path is :func:`robustbench_gcp.suites.landscape_measure.measure`: the stem once
per image, the K perturbed copies of every image stacked along the batch dimension
(:data:`~robustbench_gcp.suites.landscape_measure.ROWS` rows per image at a time), weights
frozen. The naive loop (:func:`naive_landscape`) is what the
authors' code does per step: for each k, the full model forward from the image, then
backward (weight gradients included), one step at a time; and one such pass for ``g``
first. Both compute the same numbers (the largest difference is reported) on the same
images and model, taking turns; the best time of each counts.

Example:
    >>> from robustbench_gcp.config import load_config
    >>> from robustbench_gcp.pipeline.weights import choose_model, load_chosen
    >>> net = load_chosen(choose_model(load_config(), "demo-gap"), "cpu")         # doctest: +SKIP
    >>> from robustbench_gcp.suites.landscape_measure import LandscapeSettings, parse_etas
    >>> settings = LandscapeSettings("stem", "ascent", parse_etas("0.001:0.3:5"))
    >>> rows = landscape_speed(net, "cpu", settings=settings, images=8, repeats=1)  # doctest: +SKIP
    >>> [r["path"] for r in rows]                                                   # doctest: +SKIP
    ['suite', 'naive']
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_gcp.bench.attack_speed import demo_batch
from robustbench_gcp.bench.timing import time_calls
from robustbench_gcp.engine.classifier import Classifier
from robustbench_gcp.suites.landscape_measure import (
    LandscapeSettings,
    in_precision,
    measure,
    measurement_split,
    passes_per_image,
)

__all__ = ["landscape_speed", "naive_landscape"]


def naive_landscape(classifier: Classifier, x: torch.Tensor, labels: torch.Tensor,
                    settings: LandscapeSettings) -> np.ndarray:
    """The landscape values of :func:`~robustbench_gcp.suites.landscape_measure.measure`, the
    naive way: for each step, the full model from the image, forward and backward
    (``loss.backward()`` with the weights' gradients, as in training code). ``classifier``
    computes in ``settings.precision`` (:func:`~robustbench_gcp.suites.landscape_measure.in_precision`).

    Returns:
        (B, 2 + 2K) float32, the columns of ``measure``.
    """
    to_x, rest = measurement_split(classifier, settings.at)
    model = classifier.model
    model.requires_grad_(True)
    etas = settings.etas.values() * settings.sign

    def at_step(eta: float | None, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        point = to_x(x.clone())  # forward from the image
        if eta is not None:
            point = point + eta * g
        point = point.detach().requires_grad_(True)
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(rest(point), labels, reduction="none")
        loss.sum().backward()
        return loss.detach(), point.grad.detach()

    with torch.enable_grad():
        loss0, g = at_step(None, None)
        losses, changes = [], []
        for eta in etas:
            loss, grad = at_step(float(eta), g)
            losses.append(loss)
            changes.append((grad - g).flatten(1).norm(dim=1))
    model.zero_grad(set_to_none=True)
    out = torch.cat([loss0[:, None], g.flatten(1).norm(dim=1)[:, None], torch.stack(losses, 1),
                     torch.stack(changes, 1)], 1)
    return out.cpu().numpy().astype(np.float32)


def landscape_speed(net: nn.Module, device: torch.device | str, *, settings: LandscapeSettings,
                    images: int = 32, batch_size: int = 32, repeats: int = 3) -> list[dict]:
    """Images per second of the landscape suite and of :func:`naive_landscape`.

    Args:
        net: a model (``pretrained_cfg``, ``num_classes``) in eval mode on ``device``.
        device: where it runs.
        settings: measurement point, direction and steps (K passes per image).
        images: images measured per path and round (demo images, see
            :func:`~robustbench_gcp.bench.attack_speed.demo_batch`).
        batch_size: images per batch (the suite stacks at most
            :data:`~robustbench_gcp.suites.landscape_measure.ROWS` perturbed copies per pass).
        repeats: alternating rounds; the best time of each path is kept.

    Returns:
        Two rows, ``suite`` then ``naive``: path, passes (forward + backward per image: the
        suite's stack an image's steps, ``landscape_measure.passes_per_image``), rows (of the
        model those passes carry per image), images_per_s, seconds; the suite's row adds
        ``ratio`` (its images/s over the naive loop's) and ``max_rel_diff`` (the largest
        relative difference of their values).
    """
    device = torch.device(device)
    cfg = net.pretrained_cfg
    x, labels = demo_batch(images, resize_size=cfg.resize_size, input_size=cfg.input_size,
                           num_classes=net.num_classes, device=device)
    # both paths on the one copy of the model in the suite's precision (float64 by default)
    classifier = in_precision(Classifier(net, device, mean=cfg.mean, std=cfg.std), settings.precision)
    split = measurement_split(classifier, settings.at)
    batches = [(x[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, images, batch_size)]

    def suite() -> np.ndarray:
        return np.concatenate([measure(b, y, classifier, settings, split=split)
                               for b, y in batches])

    def naive() -> np.ndarray:
        return np.concatenate([naive_landscape(classifier, b, y, settings) for b, y in batches])

    timings = time_calls([suite, naive], device=device, repeats=repeats, warmup=1)
    ours, theirs = (t.result.astype(np.float64) for t in timings)
    scale = np.maximum(np.abs(theirs), np.abs(theirs).max(axis=0, keepdims=True) * 1e-3)
    # forward + backward passes of the rest of the model per image, and the rows they carry
    work = {"suite": passes_per_image(settings), "naive": (settings.etas.count + 1,) * 2}
    rows = [{"path": name, "passes": work[name][0], "rows": work[name][1],
             "images_per_s": images / timing.best, "seconds": timing.best}
            for name, timing in zip(("suite", "naive"), timings, strict=True)]
    rows[0]["ratio"] = rows[0]["images_per_s"] / rows[1]["images_per_s"]
    rows[0]["max_rel_diff"] = float(np.max(np.abs(ours - theirs) / np.maximum(scale, 1e-30)))
    return rows
