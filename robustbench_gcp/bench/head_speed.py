"""Timing the pooling heads (``gcp-robust bench heads``).

Each head runs on random post-ReLU feature maps of the real ResNet-50 shapes,
in eval mode: GAP on ``(B, 2048, 7, 7)`` (layer4 at stride 2), GCP heads on
``(B, 2048, 14, 14)`` (layer4 at stride 1). The last row, ``isqrt-relu6``, is the
head of the MobileNetV2 / ShuffleNetV2 GCP models (ReLU6 after the reduction), on
the map those models pool: MobileNetV2's ``(B, 1280, 7, 7)`` (M = 49; ShuffleNetV2's
has 1024 channels). Two scopes:

- ``head`` (default): everything between layer4 and the logits: for GCP the
  1x1 reduction 2048 -> d + BN + ReLU, covariance, square root, upper triangle
  and the classifier (d (d + 1) / 2 -> 1000); for GAP the average and the
  classifier (2048 -> 1000).
- ``pool``: the pooling alone: GAP's average of ``(B, 2048, 7, 7)``; for GCP the
  covariance, square root and upper triangle of already reduced ``(B, d, 14, 14)``
  (``isqrt-relu6``: ``(B, d, 7, 7)``).

"forward" runs under ``torch.no_grad()``; "forward + backward" computes the
gradient with respect to the input features only (parameters frozen), which is
what gradient-based attacks need. After one warm-up round, the heads take turns
for ``repeats`` rounds (so that load from other processes hits all of them
alike); times are the fastest of them, ratios are to GAP measured in the same call.

Example:
    >>> from robustbench_gcp.bench.head_speed import bench_heads
    >>> rows = bench_heads("cpu", batch_size=1, repeats=1, scope="pool")  # doctest: +SKIP
    >>> rows[0]["head"], rows[0]["forward_vs_gap"]                        # doctest: +SKIP
    ('gap', 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from robustbench_gcp.bench.timing import time_calls
from robustbench_gcp.engine.device import float32_as_eval
from robustbench_gcp.errors import ConfigError, check_integer, suggest
from robustbench_gcp.models.heads import HEADS, create_pool
from robustbench_gcp.models.resnet import last_stride

__all__ = ["BENCH_HEADS", "BENCH_VARIANTS", "bench_heads", "check_heads"]

#: (head, what its matrix function is), in table order
BENCH_HEADS = (
    ("gap", "mean"),
    ("isqrt", "newton-schulz x5"),
    ("mpncov", "eigh fp32"),
    ("svdpade", "svd fp64"),
    ("dropcov", "none"),
    ("isqrt-relu6", "newton-schulz x5"),
)

#: channels of MobileNetV2's last 1x1 conv, the map its GCP head pools (ShuffleNetV2's: 1024)
MOBILENETV2_CHANNELS = 1280

#: rows of BENCH_HEADS that are a head of HEADS on another backbone's feature map: label ->
#: (head, activation of the reduction, input channels, side of the feature map). MobileNetV2 /
#: ShuffleNetV2 GCP: ReLU6 on MobileNetV2's 1280 x 7 x 7, whatever ``in_channels`` is.
BENCH_VARIANTS = {"isqrt-relu6": ("isqrt", "relu6", MOBILENETV2_CHANNELS, 7)}


def check_heads(heads: Sequence[str] | None, option: str = "heads") -> None:
    """Each name a row of :data:`BENCH_HEADS` (None: all), else :class:`ConfigError` naming ``option``."""
    labels = [label for label, _ in BENCH_HEADS]
    if heads is not None and not heads:
        raise ConfigError(f"`{option}` names no head: give some of {', '.join(labels)}, or all")
    for name in heads or ():
        if name not in labels:
            raise ConfigError(f"`{option}`: no head {name!r}.{suggest(name, labels)}")


def bench_heads(device: torch.device | str = "cpu", *, batch_size: int = 32, repeats: int = 5,
                scope: str = "head", in_channels: int = 2048, reduction_dim: int = 256,
                num_classes: int = 1000, seed: int = 0, heads: Sequence[str] | None = None) -> list[dict]:
    """Time every pooling head, forward and forward + backward.

    Args:
        device: a torch device (already resolved) or its name.
        batch_size: feature maps per batch.
        repeats: timed runs per measurement (the fastest reported).
        scope: ``head`` (reduction + pooling + classifier) or ``pool`` (pooling only).
        in_channels, reduction_dim, num_classes: sizes (ResNet-50 defaults); the rows of
            :data:`BENCH_VARIANTS` keep their backbone's own channel count.
        seed: seed of the random features.
        heads: the rows of :data:`BENCH_HEADS` to time (default all); GAP is always timed, as the
            ratios are to it (the SVD head's float64 SVD is the slowest by far on a GPU).

    Returns:
        One dict per head: ``head``, ``matrix_function``, ``input`` (C x H x W),
        ``forward_ms``, ``forward_backward_ms``, ``forward_vs_gap``,
        ``forward_backward_vs_gap``.

    Raises:
        ConfigError: bad ``scope``, an unknown head or a non-positive size.
    """
    if scope not in ("head", "pool"):
        raise ConfigError(f"`scope` should be head or pool. Got {scope!r}")
    check_heads(heads)
    chosen = [(label, fn) for label, fn in BENCH_HEADS if heads is None or label == "gap" or label in heads]
    for option, value in (("batch_size", batch_size), ("repeats", repeats),
                          ("in_channels", in_channels), ("reduction_dim", reduction_dim),
                          ("num_classes", num_classes)):
        check_integer(option, value)
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    rows, calls = [], []
    for label, matrix_function in chosen:
        head, activation, width, side = BENCH_VARIANTS.get(label, (label, "relu", in_channels, None))
        gcp = HEADS[head].covariance
        pool = create_pool(head, width, reduction_dim=reduction_dim if gcp else None,
                           activation=activation)
        pool = pool.eval().requires_grad_(False).to(device)
        if scope == "pool":
            fn: Callable[[torch.Tensor], torch.Tensor] = pool.pool if gcp else pool
            channels = reduction_dim if gcp else width
        else:
            fc = nn.Linear(pool.out_features, num_classes).requires_grad_(False).to(device)
            fn = nn.Sequential(pool, fc)
            channels = width
        side = side or 14 // last_stride(head)  # the published ResNets' map: SVD-Pade's is 7x7, as GAP's
        shape = (batch_size, channels, side, side)
        x = torch.randn(shape, generator=generator).relu_().to(device)

        def forward(fn=fn, x=x):
            with torch.no_grad():
                return fn(x)

        def forward_backward(fn=fn, x=x):
            x = x.detach().requires_grad_(True)
            fn(x).sum().backward()
            return x.grad

        rows.append({"head": label, "matrix_function": matrix_function,
                     "input": "x".join(map(str, shape[1:]))})
        calls += [forward, forward_backward]

    # warm up, then take turns so that load from other processes hits every head alike
    with float32_as_eval(device):  # IEEE float32 on CUDA, as eval
        timings = time_calls(calls, device=device, repeats=repeats, warmup=1)
    for i, row in enumerate(rows):
        row["forward_ms"] = 1e3 * timings[2 * i].best  # the fastest: load only ever slows a call
        row["forward_backward_ms"] = 1e3 * timings[2 * i + 1].best
    for row in rows:
        row["forward_vs_gap"] = row["forward_ms"] / rows[0]["forward_ms"]
        row["forward_backward_vs_gap"] = row["forward_backward_ms"] / rows[0]["forward_backward_ms"]
    return rows
