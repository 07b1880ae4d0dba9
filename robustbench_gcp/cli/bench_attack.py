"""``gcp-robust bench attack``: the suite's PGD against a plain PyTorch PGD loop, side by side."""

from __future__ import annotations

import click

from robustbench_gcp.cli.options import device_option, json_option


def plain_pgd(model, x, y, mean, std, eps: float, steps: int, rel_stepsize: float, generator):
    """A textbook Linf PGD (random start, sign steps, projection) with a clean pass before and a
    check after, as the suite does; returns which clean-correct images it flips."""
    import torch
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


@click.command("attack")
@click.option("--model", default="demo-gap", show_default=True, help="A model of benchmarks.yaml.")
@click.option("--checkpoint", default=None, help="Weights (default: the model's in benchmarks.yaml).")
@click.option("--random-weights", is_flag=True,
              help="Use the registry architecture with seeded random weights (no checkpoint needed).")
@device_option
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per attack batch (both paths).")
@click.option("--images", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images attacked per path and round.")
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="PGD iterations.")
@click.option("--epsilon", default="2/255", show_default=True, help="Linf budget on the [0, 1] scale.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Alternating rounds; the best time of each is kept.")
@json_option
def bench_attack(model, checkpoint, random_weights, device, batch_size, images, steps, epsilon, repeats,
                 as_json) -> None:
    """Images per second of PGD-Linf through the suite (foolbox, with its bookkeeping:
    clean pass, seeded per-image random starts, projection, success pass) and through
    a plain PyTorch loop doing the same steps (clean pass, batch random start, sign
    steps, projection, success pass), on the same images and model; and their ratio.
    "fooled" counts correctly classified images whose prediction the attack changes.

    The images are the embedded demo's validation images (generated in a
    temporary folder), resized to the model's input size.
    """
    import tempfile
    import time
    from pathlib import Path

    import torch

    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.config import AttackSpec, load_config
    from robustbench_gcp.data.demo_images import build_demo_dataset
    from robustbench_gcp.data.folders import scan_folder
    from robustbench_gcp.data.loader import Preprocess, iterate_batches
    from robustbench_gcp.engine.device import resolve_device, synchronize
    from robustbench_gcp.engine.runner import Classifier, Context, ImageSource
    from robustbench_gcp.evaluation import resolve_model
    from robustbench_gcp.fetch import resolve_checkpoint
    from robustbench_gcp.models import load_model
    from robustbench_gcp.reports.tables import Column
    from robustbench_gcp.suites.adversarial import AttackTask, check_epsilons, parse_epsilon

    eps = parse_epsilon(epsilon)
    check_epsilons("pgd-linf", [eps])
    dev = resolve_device(device)
    spec = resolve_model(load_config(), model, checkpoint, None)
    if random_weights:
        torch.manual_seed(0)
        net = load_model(spec.arch, None, device=dev)
    else:
        path = resolve_checkpoint(spec.checkpoint, sha256=spec.sha256) if spec.checkpoint else None
        net = load_model(spec.arch, path, device=dev, sha256=spec.sha256)
    cfg = net.pretrained_cfg
    with tempfile.TemporaryDirectory(prefix="gcp-robust-bench-") as tmp:
        folder = scan_folder(build_demo_dataset(Path(tmp) / "data") / "val")
        paths = (folder.paths() * (1 + images // len(folder)))[:images]
        x = torch.cat([b for b, _ in iterate_batches(paths, Preprocess(cfg.resize_size, cfg.input_size),
                                                      batch_size=64)]).float().div(255).to(dev)
    labels = torch.tensor((list(folder.labels) * (1 + images // len(folder)))[:images], device=dev)
    labels = labels.clamp(max=net.num_classes - 1)
    params = {"steps": steps, "rel_stepsize": 0.25, "random_start": True}
    task = AttackTask(AttackSpec("pgd-linf", (eps,), params), ImageSource(Path(".")), net.num_classes)
    ctx = Context(Classifier(net, dev, mean=cfg.mean, std=cfg.std), seed=0, batch_size=batch_size)
    mean = torch.tensor(cfg.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std, device=dev).view(1, -1, 1, 1)

    def suite() -> int:
        fooled = 0
        for i in range(0, images, batch_size):
            uint8 = (x[i:i + batch_size] * 255).round().to(torch.uint8)
            (result,) = task.process(uint8, labels[i:i + batch_size], list(range(i, i + len(uint8))), ctx)
            fooled += result.counts["successes"]
        return fooled

    def plain() -> int:
        g = torch.Generator(device=dev).manual_seed(0)
        return sum(int(plain_pgd(net, x[i:i + batch_size], labels[i:i + batch_size], mean, std, eps, steps,
                                 0.25, g).sum()) for i in range(0, images, batch_size))

    best = {"suite": float("inf"), "plain": float("inf")}
    fooled = {}
    for _ in range(repeats):
        for name, run in (("suite", suite), ("plain", plain)):
            synchronize(dev)
            t0 = time.perf_counter()
            fooled[name] = run()
            synchronize(dev)
            best[name] = min(best[name], time.perf_counter() - t0)
    rows = [{"path": name, "images_per_s": images / best[name], "seconds": best[name], "fooled": fooled[name]}
            for name in ("suite", "plain")]
    rows[0]["ratio"] = rows[0]["images_per_s"] / rows[1]["images_per_s"]
    emit(rows, [Column("path", justify="left"), Column("images_per_s", "images/s", ".2f"),
                Column("seconds", "best s", ".2f"), Column("fooled"),
                Column("ratio", "suite / plain", ".2f")],
         fmt="json" if as_json else "table",
         title=f"PGD-Linf eps {epsilon}, {steps} steps, {images} images, batch {batch_size}, "
               f"{spec.name} on {dev}")
