"""The rules that put frames and corrupted images on the uint8 grid, the centre crop of an odd
margin, the batch generator's noise blocks and the seeds' 64-bit form, each against its
definition written out (the fidelity tests compare the code with the originals only where the two
agree by construction: exact k / 255 inputs, even margins, per-image seeds)."""

from __future__ import annotations

import numpy as np
import torch
from original_p import center_crop
from PIL import Image

from corruptions._rng import normalize_seeds
from corruptions.perturbations import perturbation_sequence
from corruptions.storage import truncate_to_uint8


def textured(size: int, seed: int = 0) -> torch.Tensor:
    """Two images of random levels k / 255 (float32), ``size`` px."""
    levels = torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(seed))
    return levels.float() / 255


def test_truncation_keeps_a_level_within_its_float_error_and_no_further():
    """np.uint8(255 x) with a tolerance of 1e-4 levels in float32: a value 5e-5 levels below k was
    k / 255 before float arithmetic in another order and stays k; 2e-3 levels below is k - 1 (a
    zero tolerance dropped 236 values of two 224 px images by a level)."""
    k = torch.arange(1, 256, dtype=torch.float64)
    near = ((k - 5e-5) / 255).float()
    assert torch.equal(truncate_to_uint8(near).long(), k.long())
    below = ((k - 2e-3) / 255).float()
    assert torch.equal(truncate_to_uint8(below).long(), k.long() - 1)


def test_geometric_frames_are_stored_with_a_tolerance_for_float_error():
    """translate's frame 20 is the crop itself (shift 0): levels 4e-4 below k / 255 (float
    arithmetic in another order than the original's) are stored as k, not k - 1; 0.01 below, as
    k - 1 (the tolerance is 1e-3 levels)."""
    x = textured(73)
    top = (73 - 64) // 2  # 4.5 rounds to 4 (half to even, as torchvision's CenterCrop)
    crop = x[..., top:top + 64, top:top + 64]
    near = perturbation_sequence(x - 4e-4 / 255, "translate", frames=[20])[:, 0]
    assert torch.equal(near, crop)
    below = perturbation_sequence((x - 0.01 / 255).clamp(0, 1), "translate", frames=[20])[:, 0]
    assert torch.equal(below, torch.where(crop > 0, crop - 1 / 255, crop).mul(255).round().div(255))


def test_an_odd_margin_is_cropped_as_torchvisions_center_crop():
    """A 90 px image's 79 px crop starts at round(5.5) = 6 (Python's round, CenterCrop's), not at
    floor 5: the sizes the tests used (73, 96, 256) gave the same corner either way."""
    x = textured(90, seed=1)
    frames = perturbation_sequence(x, "translate", frames=[20])[:, 0]
    assert frames.shape[-1] == 79
    for image, frame in zip(x, frames):
        pil = Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy())
        expected = torch.from_numpy(np.array(center_crop(pil, 79))).permute(2, 0, 1).float() / 255
        assert torch.equal(frame, expected)


def test_rounded_frames_are_their_float_frames_rounded_half_up():
    """tilt's frames are stored as floor(255 f + 0.5): the same call with quantize=False gives f
    (an offset of 0.499 passed the OpenCV comparison's one-level tolerance, 1,342 values a level
    down)."""
    x = textured(73, seed=2)
    rounded = perturbation_sequence(x, "tilt", frames=[3, 27])
    floats = perturbation_sequence(x, "tilt", frames=[3, 27], quantize=False)
    assert torch.equal(rounded, torch.floor(floats * 255 + 0.5) / 255)
    assert not torch.equal(rounded, torch.floor(floats * 255 + 0.499) / 255)


def test_a_batch_generator_gives_each_image_its_own_30_noise_blocks():
    """With ``generator=``, the batch's noise is one draw of (B x 30) standard normal blocks, image
    i's frames 1..30 the blocks 30 i .. 30 i + 29 (31 per image gave image 1 other noise)."""
    x = textured(73, seed=3)
    noise = torch.empty(2 * 30, 3, 64, 64).normal_(generator=torch.Generator().manual_seed(4))
    noise = noise.view(2, 30, 3, 64, 64)
    crop = x[..., 4:68, 4:68][:, None]
    expected = torch.floor((crop + 0.03 * noise).clamp(0, 1) * 255) / 255  # sigma 0.03, truncated
    frames = perturbation_sequence(x, "gaussian_noise", 1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(frames[:, 1:], expected)


def test_seeds_are_taken_modulo_two_to_the_64():
    """A negative or too large seed is its value modulo 2^64 (CUDA's Philox takes all 64 bits;
    modulo 2^63 gave -1 another stream)."""
    assert normalize_seeds([-1, 2**64 + 5, 7], 3, torch.device("cpu")) == [2**64 - 1, 5, 7]
