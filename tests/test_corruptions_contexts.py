"""The corruptions called as a researcher calls them, inside torch's own contexts: inference mode
(per thread: the CPU's worker threads must take it) and autocast (the corruptions' float32 matrix
products must not run in bfloat16), and the errors of parameters drawn for other images."""

from __future__ import annotations

import math

import pytest
import torch

from corruptions import (
    corrupt,
    get_corruption,
    image_seeds,
    list_corruptions,
    perturbation_sequence,
    sample_parameters,
    storage_roundtrip,
)
from corruptions.perturbations import list_perturbations
from corruptions.reference import corrupt_reference, reference_with_draws

RANDOM = [name for name in list_corruptions("all") if get_corruption(name).random]


@pytest.fixture
def two_threads():
    """The CPU's per-image draws run on a thread pool from two threads on."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    from robustbench_gcp.bench.photos import photos

    return photos(2, 64)


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_run_in_inference_mode(name, photo, two_threads):
    """The draws' tensor, made in inference mode by the caller's thread, was filled in the pool's
    threads outside it: "Inplace update to inference tensor outside InferenceMode"."""
    expected = corrupt(photo, name, 3, seed=[5, 6])
    with torch.inference_mode():
        got = corrupt(photo, name, 3, seed=[5, 6])
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "speckle_noise", "snow", "spatter"])
def test_random_sequences_run_in_inference_mode(name, photo, two_threads):
    expected = perturbation_sequence(photo, name, seed=[1, 2], frames=[0, 1], crop_size=48)
    with torch.inference_mode():
        got = perturbation_sequence(photo, name, seed=[1, 2], frames=[0, 1], crop_size=48)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", list_corruptions("all"))
def test_corruptions_under_autocast_are_those_without(name, photo):
    """spatter's, pixelate's and elastic_transform's float32 matrix products ran in bfloat16 under
    a caller's autocast: up to 189 levels off, in float32 output that did not show it."""
    spec = get_corruption(name)
    params = sample_parameters(photo, name, 3, seed=[3, 4])
    expected = (corrupt(photo, name, 3, seed=[3, 4]), spec.apply(photo, 3, params))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = (corrupt(photo, name, 3, seed=[3, 4]), spec.apply(photo, 3, params))
    for one, other in zip(expected, got):
        one, other = one.clamp(0, 1), other.clamp(0, 1)  # apply leaves them unclipped
        assert other.dtype == torch.float32 and torch.equal(storage_roundtrip(one), storage_roundtrip(other))


@pytest.mark.parametrize("name", list_perturbations("all"))
def test_sequences_under_autocast_are_those_without(name, photo):
    expected = perturbation_sequence(photo, name, seed=[1, 2], frames=[0, 3], crop_size=48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = perturbation_sequence(photo, name, seed=[1, 2], frames=[0, 3], crop_size=48)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["gaussian_noise", "glass_blur", "snow", "fog", "elastic_transform",
                                  "spatter", "impulse_noise"])  # impulse's draw could not run on "meta"
def test_params_drawn_for_another_size_are_named(name, photo):
    """torch's "The size of tensor a (40) must match the size of tensor b (64)" named neither."""
    params = sample_parameters(photo, name, 3, seed=[1, 2])
    small = torch.nn.functional.interpolate(photo, size=(40, 40), mode="bilinear")
    leveled = name == "glass_blur"  # (its offsets' shape is the severity's and the preset's too)
    what, level = ("size", "")
    if leveled:
        what, level = "size, severity or preset", r" at severity 3 \(preset imagenet\)"
    said = rf"^{name}: `params` were drawn for images of another {what}: '\w+' is \(.*\) an image, "
    with pytest.raises(ValueError, match=said + rf"a draw for these 40x40 images{level} \(.*\): draw"):
        get_corruption(name).apply(small, 3, params)
    get_corruption(name).apply(small, 3, sample_parameters(small, name, 3, seed=[1, 2]))  # its own: fine


def test_params_that_are_no_dict_are_named(photo):
    """An AttributeError ("'NoneType' object has no attribute 'items'")."""
    for name in ("snow", "fog"):
        with pytest.raises(TypeError, match=rf"^{name}: `params` should be the dict sample_parameters drew"):
            get_corruption(name).apply(photo, 3, None)


def test_frost_params_drawn_for_larger_images_are_named(photo):
    """The crops fell off the smaller images' texture: torch.stack's "equal size" error."""
    params = sample_parameters(torch.rand(2, 3, 224, 224), "frost", 3, seed=[1, 2])
    with pytest.raises(ValueError, match=r"^frost: `params` place a crop beyond its texture for these 64x64 "
                                         r"images: were they drawn for images of another size\?"):
        get_corruption("frost").apply(photo, 3, params)


def test_the_original_frost_says_an_image_larger_than_its_texture():
    """The original crops its textures at native size: NumPy's "high <= 0" before."""
    said = r"^frost \(follow_original=True\): the original crops its texture at native size, and frost\d\."
    with pytest.raises(ValueError, match=said + r"(png|jpg) \(\d+x\d+\) holds no 700x900 crop"):
        corrupt_reference(torch.rand(1, 3, 700, 900), "frost", 5, seed=0, follow_original=True)


def test_frost_draws_pair_at_224_px_only():
    """The original's native crop positions at 48 x 80 fell off the port's scaled textures."""
    with pytest.raises(ValueError, match=r"pair for images whose larger side is 224 only"):
        reference_with_draws(torch.rand(1, 3, 48, 80), "frost", 3, seed=[11], follow_original=True)
    reference_with_draws(torch.rand(1, 3, 100, 224), "frost", 3, seed=[11], follow_original=True)


def test_image_seeds_of_a_count_says_range():
    with pytest.raises(TypeError, match=r"an iterable of ints \(range\(5\) for the first 5 images\)"):
        image_seeds(0, 5)
    with pytest.raises(TypeError, match=r"`indices` should be an iterable of ints\. Got float"):
        image_seeds(0, 2.5)


# --------------------------------------------------------------------------------------
# inputs a little off the happy path (helper-281)


def test_float8_images_are_refused_in_one_line():
    """float8 passed the float check, then failed inside torch ("aminmax_cpu" not implemented)."""
    import corruptions

    images = torch.rand(1, 3, 40, 40).to(torch.float8_e4m3fn)
    said = r"^`images` should be float16, bfloat16, float32 or float64\. Got torch\.float8_e4m3fn"
    for call in (lambda: corruptions.corrupt(images, "fog", 2),
                 lambda: corruptions.corrupt(images, "fog", 2, check_values=False),
                 lambda: corruptions.storage_roundtrip(images),
                 lambda: corruptions.perturbation_sequence(images, "speckle_noise", 1, seed=1)):
        with pytest.raises(TypeError, match=said):
            call()


def test_infinite_values_get_no_advice_about_0_255_values():
    import corruptions

    with pytest.raises(ValueError, match=r"^`images` should be in \[0, 1\]\. Got values from 0 to inf$"):
        corruptions.corrupt(torch.cat([torch.zeros(1, 3, 40, 20), torch.full((1, 3, 40, 20), math.inf)], 3),
                            "fog", 2)
    with pytest.raises(ValueError, match=r"to 255 \(0-255 values: divide by 255"):
        corruptions.corrupt(torch.full((1, 3, 40, 40), 255.0), "fog", 2)


def test_a_numpy_bool_is_no_seed():
    """True is refused as a seed; NumPy's True was taken as 1."""
    import numpy as np

    import corruptions

    images = torch.rand(2, 3, 40, 40)
    for seed in (True, np.True_, np.array(False)):
        with pytest.raises(TypeError, match=r"^`seed` should be an int or one int per image\. Got bool$"):
            corruptions.corrupt(images, "gaussian_noise", 2, seed=seed)
    assert torch.equal(corruptions.corrupt(images, "gaussian_noise", 2, seed=np.int64(3)),
                       corruptions.corrupt(images, "gaussian_noise", 2, seed=3))


def test_the_parameter_tables_are_read_only_and_still_dicts():
    """An edit of a table the README shows changed every later call's output in the process; a
    read-only MappingProxyType then made a Corruption unpicklable (a loader's spawned workers),
    no deepcopy and no JSON (helper-283)."""
    import copy
    import dataclasses
    import json
    import pickle

    import corruptions

    contrast = corruptions.get_corruption("contrast")
    table = contrast.parameters
    for change in (lambda: table.__setitem__("imagenet", (1.0,) * 5), lambda: table.update(imagenet=()),
                   lambda: table.pop("imagenet"), table.clear):
        with pytest.raises(TypeError, match="parameter table is read-only"):
            change()
    assert table["imagenet"] == (0.4, 0.3, 0.2, 0.1, 0.05) and isinstance(table["imagenet"], tuple)
    again = pickle.loads(pickle.dumps(contrast))
    assert again == contrast == copy.deepcopy(contrast) and again.parameters == table
    assert json.loads(json.dumps(table))["imagenet"] == [0.4, 0.3, 0.2, 0.1, 0.05]
    assert dataclasses.asdict(contrast)["parameters"] == dict(table)
    images = torch.rand(1, 3, 40, 40)
    assert torch.equal(again.apply(images, 3, {}), contrast.apply(images, 3, {}))


def test_glass_blur_params_of_another_severity_are_said_so():
    """The offsets' shape is the severity's and the preset's too: "drawn for images of another size"
    blamed the size of images of the same size."""
    import corruptions

    images = torch.rand(1, 3, 48, 64)
    drawn = corruptions.sample_parameters(images, "glass_blur", 1, seed=0)
    with pytest.raises(ValueError, match=r"were drawn for glass_blur at severity 1 \(imagenet preset\)"):
        corruptions.get_corruption("glass_blur").apply(images, 5, drawn)  # it says what it was drawn for
    params = dict(drawn)  # a plain dict: told by its shapes
    with pytest.raises(ValueError, match=r"drawn for images of another size, severity or preset: 'offsets' "
                                         r"is \(2, 2, 46, 62\) an image, a draw for these 48x64 images at "
                                         r"severity 5 \(preset imagenet\) \(2, 2, 40, 56\): draw them for "
                                         r"these images at this severity and preset"):
        corruptions.get_corruption("glass_blur").apply(images, 5, params)


def test_spatter_frames_of_a_1_pixel_crop_and_opencvs_borders_of_1_pixel_sides():
    """crop_size=1 is documented (1..S): spatter's reflect-101 borders failed in torch's pad, which
    refuses a pad as wide as the side; OpenCV repeats a 1-pixel side."""
    import cv2
    import numpy as np

    import corruptions
    from corruptions.weather import _pad_mirror

    for height, width in ((1, 1), (1, 5), (4, 1), (3, 2), (6, 7)):
        plane = np.random.default_rng(height * 10 + width).random((height, width), dtype=np.float32)
        expected = cv2.copyMakeBorder(plane, 1, 1, 1, 1, cv2.BORDER_REFLECT_101)
        assert np.array_equal(_pad_mirror(torch.from_numpy(plane)[None, None])[0, 0].numpy(), expected)
    frames = corruptions.perturbation_sequence(torch.rand(2, 3, 40, 40), "spatter", 1, seed=1, frames=[0, 1],
                                               crop_size=1)
    assert frames.shape == (2, 2, 3, 1, 1) and 0 <= frames.min() and frames.max() <= 1
