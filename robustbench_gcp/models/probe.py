"""What a model you bring is, told by running it: how many classes its output has, whether it returns
probabilities rather than logits, and whether it is a fixed model (eval mode, outputs that depend on
neither the batch nor the calls before), on two seeded random images.

Example:
    >>> import torchvision
    >>> output_classes(torchvision.models.resnet18(num_classes=10), 64, "torchvision:resnet18")
    10
"""

from __future__ import annotations

import torch
from torch import nn

from robustbench_gcp.errors import ConfigError, listed

__all__ = ["in_one_line", "output_classes", "probe_output", "said_as"]


def said_as(ref: str) -> str:
    """How an error names a model: ``--model REF`` as the command line gave it, ``model 'NAME'`` for
    a module object the library was given (``module:NAME``, which no command takes)."""
    return f"model {ref.partition(':')[2]!r}" if ref.startswith("module:") else f"`--model {ref}`"


def in_one_line(error: BaseException) -> str:
    """An exception in one line: ``RuntimeError: its message's first line`` (200 characters at
    most; the type alone for an empty message)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def output_classes(model: nn.Module, input_size: int, ref: str) -> int:
    """The number of classes of ``model``: the width of its output for a batch of 2 seeded random
    images, and of 1 (the first alone: a ``squeeze()`` drops its batch axis) (``model`` is put in
    eval mode; one whose outputs depend on the batch or on the calls before is refused).

    Raises:
        ConfigError: the output is not a (batch, classes) tensor of floating-point logits.
    """
    return probe_output(model, input_size, ref)[0]


def probe_output(model: nn.Module, input_size: int, ref: str) -> tuple[int, bool]:
    """:func:`output_classes`, and whether the outputs look like probabilities, not logits: every
    one >= 0 and each image's summing to 1 (a softmax at the end)."""
    model.eval()
    _refuse_training(model, ref, "eval() leaves {} in training mode (a train() of its own that does not "
                                 "pass the mode on?)")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    # seeded, of another value each (black images hid statistics over the batch), float32 as the images
    # are (a float64 default dtype made a float64 model pass); a copy for each pass (a model may write
    # into its input, as the engine allows)
    images = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float32).to(device)
    pair = _probe_pass(model, images.clone(), ref)
    sums = pair.detach().double().sum(dim=1)
    probabilities = bool((pair >= 0).all()) and bool(((sums - 1).abs() <= 1e-3).all())
    classes = int(pair.shape[1])
    alone = _probe_pass(model, images[:1].clone(), ref, classes)
    _check_fixed(model, pair, alone, _probe_pass(model, images.clone(), ref, classes), ref=ref)
    return classes, probabilities


def _probe_pass(model: nn.Module, images: torch.Tensor, ref: str, classes: int | None = None) -> torch.Tensor:
    """``model``'s output for ``images``, checked: (batch, classes) floating-point logits.

    Raises:
        ConfigError: the forward pass failed (or exited), or its output is not such logits.
    """
    n, _, size, _ = images.shape
    batch = f"({n}, 3, {size}, {size}) batch"
    try:
        with torch.no_grad():
            out = model(images)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's forward failed
        dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()} - {torch.float32}
        hint = (f" (its weights are {', '.join(sorted(map(str, dtypes)))}, the images float32: return "
                "the model in float32, .float(); --amp then runs its operators in half precision where "
                "they allow)" if dtypes else "; it exits instead of returning"
                if isinstance(error, SystemExit) else "")
        raise ConfigError(f"{said_as(ref)}: the forward pass of a {batch} failed: {in_one_line(error)}"
                          f"{hint}") from None
    if (not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != n or out.shape[1] < 2
            or out.shape[1] != (classes or out.shape[1])):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{said_as(ref)}: the output for a {batch} is {shape}, not ({n}, classes) logits")
    if not out.is_floating_point():
        raise ConfigError(f"{said_as(ref)}: the output for a {batch} is {out.dtype}, not floating-point "
                          "logits")
    return out


def _named(names: list[str]) -> str:
    return listed([f"'{n}'" for n in names], 3)


def _refuse_training(model: nn.Module, ref: str, what: str) -> None:
    """Refuse ``model`` where a submodule is in training mode, ``what`` saying how it got there."""
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ConfigError(f"{said_as(ref)}: {what.format(_named(training))}: in training mode BatchNorm "
                          "normalizes each batch by its own statistics and Dropout drops at random, so "
                          "results would depend on the batch and the draw; gcp-robust measures a fixed "
                          "model in eval mode")


def _check_fixed(model: nn.Module, pair: torch.Tensor, alone: torch.Tensor, again: torch.Tensor, *,
                 ref: str) -> None:
    """Refuse a module whose outputs depend on the batch it is given or on the calls before: its
    cells would differ with --batch-size, and a run would store them under the weights hash taken
    before it changed (one ran at 2 and at 12 images a batch gave two top-1 errors, the second reusing
    the first's: helper-255). Told by what it does: ``pair``, ``alone`` and ``again`` are its outputs
    for two seeded images, for the first alone, and for the two again. State that does not change
    its outputs is no change (a cache of tables made at the first call, timm's LeViT attention
    biases; spectral_norm's weight; the last attention map kept for a plot: helper-258).

    Raises:
        ConfigError: a submodule in training mode after the forward passes (the forward puts it
            there), a BatchNorm without running statistics, or other outputs for the same images.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    _refuse_training(model, ref, "its forward pass puts {} in training mode")
    batch_statistics = [name for name, m in model.named_modules()
                        if isinstance(m, _BatchNorm) and m.running_mean is None]
    if batch_statistics:
        raise ConfigError(f"{said_as(ref)}: BatchNorm {_named(batch_statistics)} keeps no running statistics "
                          "(track_running_stats=False), so in eval mode it normalizes each batch by its "
                          "own: results would depend on the batch size and on which images share a batch. "
                          "gcp-robust measures a fixed model: give it running statistics (or GroupNorm / "
                          "LayerNorm, which are per image)")

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:  # (other kernels for other batch sizes round apart)
        finite = a[a.isfinite()].abs()
        scale = float(finite.max()) if finite.numel() else 0.0  # relative to the outputs' size, however small
        return bool(torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-3 * scale, equal_nan=True))

    if not same(pair, again):
        raise ConfigError(f"{said_as(ref)}: its forward pass gives other outputs for the same images at a "
                          "second call (state it changes as it runs: a counter, a running mean, weights): "
                          "results would depend on how many batches it saw before; gcp-robust measures a "
                          "fixed model")
    if not same(pair[:1], alone):
        raise ConfigError(f"{said_as(ref)}: its outputs for an image depend on the images batched with it "
                          "(statistics over the batch, or dynamic quantization's scales?): results would "
                          "depend on --batch-size and on which images share a batch; gcp-robust measures a "
                          "fixed model")
