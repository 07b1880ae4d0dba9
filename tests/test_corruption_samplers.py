"""The corruptions' own random draws and edge paths, against the originals' laws and formulas.

The paired fidelity tests feed the reference's draws to the port, so they never run the port's
samplers; these check each sampler's range and centre (a motion-blur angle drawn from -40 .. 45
passed every other test), the per-image seeds against SplitMix64 written out here, and the edge
paths the 224 px comparisons do not reach.
"""

from __future__ import annotations

import math

import pytest
import torch

from corruptions import corrupt, get_corruption, sample_parameters
from corruptions._rng import image_seeds
from corruptions.perturbations import window_size
from corruptions.storage import truncate_to_uint8
from corruptions.weather import frost_textures

N = 4000  # images of 32 px: every draw's range is reached to within a fraction of a percent


@pytest.fixture(scope="module")
def small() -> torch.Tensor:
    return torch.rand(N, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name, key, low, high", [
    ("motion_blur", "angle", -45.0, 45.0),  # np.random.uniform(-45, 45)
    ("snow", "angle", -135.0, -45.0),  # np.random.uniform(-135, -45)
    ("elastic_transform", "jitter", -1.0, 1.0),  # the affine's corners: uniform(-c, c) / c
])
def test_uniform_draws_cover_their_interval_and_are_centred(small, name, key, low, high):
    values = sample_parameters(small, name, 3, seed=11)[key].double().flatten()
    width = high - low
    assert low <= float(values.min()) < low + 0.01 * width
    assert high - 0.01 * width < float(values.max()) < high
    standard_error = width / math.sqrt(12 * values.numel())
    assert abs(float(values.mean()) - (low + high) / 2) < 5 * standard_error


@pytest.mark.parametrize("preset", ["imagenet", "cifar"])
def test_frost_crops_are_drawn_as_the_originals_exclusive_randint(small, preset):
    """randint(0, th - H) and randint(0, tw - W): every top-left corner that leaves the crop
    inside the texture, never the one past it; all five textures."""
    drawn = sample_parameters(small, "frost", 3, seed=5, preset=preset)
    textures = frost_textures(32, 32, torch.device("cpu"), preset)
    assert set(drawn["index"].tolist()) == set(range(5))
    for index in range(5):
        mine = drawn["index"] == index
        room_h, room_w = textures[index].shape[-2] - 32, textures[index].shape[-1] - 32
        for offsets, room in ((drawn["top"][mine], room_h), (drawn["left"][mine], room_w)):
            assert int(offsets.min()) >= 0 and int(offsets.max()) < room
            assert int(offsets.max()) >= 0.9 * room - 1  # ~800 draws over at most a few hundred values


def test_glass_offsets_are_randint_minus_delta_to_delta_exclusive(small):
    for preset, severity in (("imagenet", 5), ("cifar", 5)):
        delta = get_corruption("glass_blur").level(severity, preset).c[1]
        offsets = sample_parameters(small[:64], "glass_blur", severity, seed=3, preset=preset)["offsets"]
        assert int(offsets.min()) == -delta and int(offsets.max()) == delta - 1


def _splitmix64(state: int) -> int:
    """SplitMix64's output for ``state`` (Steele, Lea and Flood 2014), as Java's SplittableRandom."""
    mask = (1 << 64) - 1
    z = (state + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_image_seeds_are_the_documented_splitmix64_formula():
    """``splitmix64(splitmix64(seed mod 2**64) XOR index) >> 1``: a change (``>> 2``) changes every
    seeded corruption and every ImageNet-P noise frame."""
    assert _splitmix64(0) == 0xE220A8397B1DCDAF  # the generator's published first output
    for seed in (0, 1, -1, 2**64 + 3, 123456789):
        base = _splitmix64(seed % 2**64)
        indices = [0, 1, 2, 49_999, 2**40]
        expected = [_splitmix64(base ^ index) >> 1 for index in indices]
        assert image_seeds(seed, indices).tolist() == expected
    assert image_seeds(0, [0, 1]).tolist() == [6017775124710473527, 313702574736366215]


def test_a_per_image_seed_is_taken_modulo_2_to_the_64():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    minus_one = corrupt(x, "gaussian_noise", 3, seed=[-1])
    assert torch.equal(minus_one, corrupt(x, "gaussian_noise", 3, seed=[2**64 - 1]))
    assert not torch.equal(minus_one, corrupt(x, "gaussian_noise", 3, seed=[2**64 - 2]))


def test_perturbation_windows_keep_every_crop_centred():
    """(window - crop) / 2 is even for every crop size and perturbation: an odd margin (rotate at
    224 needs 27) gave a window that the window check refuses."""
    from corruptions.perturbations import list_perturbations

    for crop in range(32, 257):
        for names in [*([name] for name in list_perturbations()), "all"]:
            assert (window_size(crop, names) - crop) % 4 == 0, (crop, names)


def test_frost_textures_scale_by_the_longer_side():
    """A 224 x 300 image takes textures enlarged by 300 / 224, as the docstring says (the shorter
    side left them native)."""
    native = frost_textures(224, 224, torch.device("cpu"))[0].shape[-2:]
    wide = frost_textures(224, 300, torch.device("cpu"))[0].shape[-2:]
    assert wide == (round(native[0] * 300 / 224), round(native[1] * 300 / 224))


def test_float16_images_come_back_to_their_level_and_no_higher():
    """float16 holds k / 255 within 0.062 levels: k + 0.8 stays k (a looser tolerance rounded up)."""
    k = torch.arange(255, dtype=torch.float64)
    assert torch.equal(truncate_to_uint8(((k + 0.8) / 255).half()), k.to(torch.uint8))
    assert torch.equal(truncate_to_uint8((k / 255).half()), k.to(torch.uint8))


def test_images_just_outside_zero_one_are_refused():
    for value in (1.01, -0.01):
        with pytest.raises(ValueError, match=r"should be in \[0, 1\]"):
            corrupt(torch.full((1, 3, 32, 32), value), "brightness", 1)
    corrupt(torch.full((1, 3, 32, 32), 1.0005), "brightness", 1)  # float error is tolerated
