"""Every corruption and perturbation sequence accepts inputs of any memory layout.

Channels-last, permuted (NHWC made NCHW with ``permute``), strided or cropped slices of a
larger tensor, a batch slice (a storage offset) and expanded tensors (stride 0) must give
exactly the result of the same images stored contiguously, with the same seeds, leave the
input unchanged and return a new contiguous tensor.
"""

from __future__ import annotations

import pytest
import torch

from corruptions import (
    corrupt,
    get_corruption,
    list_corruptions,
    sample_parameters,
    storage_roundtrip,
)
from corruptions.noise import poisson_from_uniform
from corruptions.perturbations import list_perturbations, perturbation_sequence
from corruptions.weather import equalize_hist

CORRUPTIONS = list_corruptions("all")
PERTURBATIONS = list_perturbations("all")
SEEDS = [11, 12]


def _images(size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Textured images on the uint8 grid, (batch, 3, size, size), contiguous."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(batch, 3, 8, 8, generator=generator)
    up = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.rand(batch, 3, size, size, generator=generator) * 0.1
    return torch.round((up * 0.9 + noise).clamp(0, 1) * 255) / 255


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def permuted(x: torch.Tensor) -> torch.Tensor:
    """What a batch stacked from HWC arrays looks like: an NHWC tensor, permuted."""
    return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


def strided(x: torch.Tensor) -> torch.Tensor:
    """Every second pixel of a tensor twice as large."""
    b, c, h, w = x.shape
    big = torch.rand(b, c, 2 * h, 2 * w)
    big[:, :, ::2, ::2] = x
    return big[:, :, ::2, ::2]


def cropped(x: torch.Tensor) -> torch.Tensor:
    """A crop of a larger tensor (row stride wider than the row)."""
    b, c, h, w = x.shape
    big = torch.rand(b, c, h + 7, w + 5)
    big[:, :, 3 : 3 + h, 2 : 2 + w] = x
    return big[:, :, 3 : 3 + h, 2 : 2 + w]


def batch_slice(x: torch.Tensor) -> torch.Tensor:
    """Images 1..B of a larger batch (contiguous, at a storage offset)."""
    big = torch.rand(len(x) + 2, *x.shape[1:])
    big[1 : 1 + len(x)] = x
    return big[1 : 1 + len(x)]


LAYOUTS = {
    "channels_last": channels_last,
    "permuted": permuted,
    "strided": strided,
    "cropped": cropped,
    "batch_slice": batch_slice,
}


def _layouts(x: torch.Tensor):
    """(name, images as stored contiguously, the same images in another layout)."""
    for name, make in LAYOUTS.items():
        yield name, x, make(x)
    # stride 0 along the batch: compare with the repeated image
    yield "expanded", x[:1].repeat(len(x), 1, 1, 1), x[:1].expand(len(x), -1, -1, -1)


def _check_output(out: torch.Tensor, images: torch.Tensor, before: torch.Tensor) -> None:
    assert out.is_contiguous()
    assert out.untyped_storage().data_ptr() != images.untyped_storage().data_ptr()
    assert torch.equal(images, before), "the input was modified"


@pytest.mark.parametrize("severity", [3, 5])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_any_layout(name, severity):
    x = _images(64)
    for layout, contiguous, images in _layouts(x):
        before, strides = images.clone(), images.stride()
        out = corrupt(images, name, severity, seed=SEEDS)
        _check_output(out, images, before)
        assert images.stride() == strides
        expected = corrupt(contiguous, name, severity, seed=SEEDS)
        assert torch.equal(out, expected), layout


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "contrast"])
def test_corrupt_any_layout_in_cpu_chunks(name):
    # 320 px: the CPU path processes these one image at a time (slices of the input)
    x = _images(320)
    for layout, contiguous, images in _layouts(x):
        before = images.clone()
        out = corrupt(images, name, 3, seed=SEEDS)
        _check_output(out, images, before)
        assert torch.equal(out, corrupt(contiguous, name, 3, seed=SEEDS)), layout


@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if get_corruption(n).random])
def test_sample_parameters_any_layout(name):
    x = _images(64)
    expected = sample_parameters(x, name, 3, seed=SEEDS)
    for layout, _, images in _layouts(x):
        if layout == "expanded":
            continue  # other images: the draws may depend on the image (e.g. spatter)
        params = sample_parameters(images, name, 3, seed=SEEDS)
        assert params.keys() == expected.keys()
        for key, value in params.items():
            assert torch.equal(value, expected[key]), (layout, key)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_apply_any_layout(name):
    # ``apply`` (no layout normalization) must not fail on a non-contiguous tensor either.
    # Not bit-exact in general: a reduction over a non-contiguous tensor may sum in another
    # order (contrast's per-image mean differs by 1 ulp, 6e-8); ``corrupt`` is exact.
    x = _images(64)
    params = sample_parameters(x, name, 3, seed=SEEDS)
    expected = get_corruption(name).apply(x, 3, params)
    for layout, _, images in _layouts(x):
        if layout == "expanded":
            continue
        before = images.clone()
        out = get_corruption(name).apply(images, 3, params)
        assert torch.equal(images, before), layout
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0, msg=layout)


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_perturbation_sequence_any_layout(name):
    x = _images(40)
    for layout, contiguous, images in _layouts(x):
        before, strides = images.clone(), images.stride()
        out = perturbation_sequence(images, name, 2, seed=SEEDS)
        _check_output(out, images, before)
        assert images.stride() == strides
        expected = perturbation_sequence(contiguous, name, 2, seed=SEEDS)
        assert torch.equal(out, expected), layout


@pytest.mark.parametrize("quality", [85, None])
def test_storage_roundtrip_any_layout(quality):
    x = _images(64)
    for layout, contiguous, images in _layouts(x):
        before = images.clone()
        out = storage_roundtrip(images, quality)
        _check_output(out, images, before)
        assert torch.equal(out, storage_roundtrip(contiguous, quality)), layout


def test_internal_helpers_accept_views():
    # helpers that flatten their argument: called directly, they get whatever layout the
    # caller has (``corrupt`` itself hands them contiguous tensors)
    x = _images(64)
    uniform = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    expected = poisson_from_uniform(uniform, x, 60.0)
    for layout, contiguous, images in _layouts(x):
        assert torch.equal(poisson_from_uniform(uniform, images, 60.0),
                           poisson_from_uniform(uniform, contiguous, 60.0)), layout
        assert torch.equal(poisson_from_uniform(channels_last(uniform), x, 60.0), expected)
    grey = (x[:, 0] * 255).floor()  # (B, H, W) integers 0..255
    for view in (grey.transpose(1, 2), grey[:, ::2, ::2], grey.expand(3, 2, 64, 64)[1]):
        assert torch.equal(equalize_hist(view), equalize_hist(view.contiguous()))
