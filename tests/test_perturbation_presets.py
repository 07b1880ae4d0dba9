"""CIFAR-10-P and Tiny-ImageNet-P: the presets of the perturbation sequences and the suite.

The originals (hendrycks/robustness ``make_cifar_p.py``, ``make_tinyimagenet_p.py``) retune
ImageNet-P's sequences for 32 and 64 px images. Here: the tables hold their numbers; the
deterministic sequences equal an independent re-computation of their formulas with PIL
(torchvision 0.2's ``affine``), OpenCV and scikit-image on whole 32 / 64 px photographs; the
noise levels show in the statistics; the suite runs CIFAR-10-P end to end from generated
sequences and from released .npy files, and Tiny-ImageNet-P from released MP4 videos.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import shutil
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from original_p import affine_pil, tilt_cv2, water_frame, write_mp4

from corruptions.perturbations import frame_count, list_perturbations, perturbation_sequence
from robustbench_gcp.cli import main
from robustbench_gcp.engine.seeding import image_seeds
from robustbench_gcp.metrics import flip_stats
from robustbench_gcp.store import Store


def _affine_pil(array, **kwargs) -> np.ndarray:
    from PIL import Image

    return np.array(affine_pil(Image.fromarray(array), **kwargs))


_tilt_cv2 = tilt_cv2

ALL = list_perturbations("all")
SIDES = {"cifar": 32, "tinyimagenet": 64}


# --------------------------------------------------------------------------------------
# the originals' numbers (transcribed from make_cifar_p.py and make_tinyimagenet_p.py)


def test_preset_tables_are_the_scripts_numbers():
    from corruptions.perturbations import blur_sequences as blur
    from corruptions.perturbations import geometric_sequences as geo
    from corruptions.perturbations import noise_sequences as noise
    from corruptions.perturbations import weather_sequences as weather

    assert noise.NOISE_LEVELS == {
        "gaussian_noise": {"imagenet": (0.03, 0.05, 0.08), "cifar": (0.02, 0.04, 0.06),
                           "tinyimagenet": (0.025, 0.05, 0.075)},
        "shot_noise": {"imagenet": (300, 120, 60), "cifar": (700, 400, 200), "tinyimagenet": (500, 250, 125)},
        "speckle_noise": {"imagenet": (0.05, 0.10, 0.15), "cifar": (0.05, 0.07, 0.1),
                          "tinyimagenet": (0.05, 0.1, 0.15)},
    }
    # motion blur: radius, sigma, angle (i - offset) * step, frames
    assert (blur.MOTION_BLUR, blur.MOTION_BLUR_CIFAR, blur.MOTION_BLUR_TINY) == (
        (10, 3, 30, 4, 31), (6, 1.8, 20, 9, 21), (14, 3, 30, 5, 31))
    assert (blur.GAUSSIAN_BLUR, blur.GAUSSIAN_BLUR_CIFAR, blur.GAUSSIAN_BLUR_TINY) == (
        (0.25, 0.035, 6.0), (0.3, 0.015, 7.0), (0.35, 0.014, 7.0))
    assert blur.ZOOM_STEP == 0.004
    # snow: loc, scale, zoom, threshold, radius, sigma, blend
    assert (weather.SNOW, weather.SNOW_CIFAR, weather.SNOW_TINY) == (
        (0.05, 0.3, 3, 0.5, 14, 4, 0.85), (0.05, 0.3, 2, 0.5, 10, 2, 0.85),
        (0.05, 0.28, 2, 0.5, 10, 2.5, 0.85))
    assert weather.BRIGHTNESS_STEP == {"imagenet": 2, "cifar": 1.5, "tinyimagenet": 2}
    # spatter: loc, scale, sigma, threshold, intensity; the drift filter
    assert (weather.SPATTER, weather.SPATTER_CIFAR, weather.SPATTER_TINY) == (
        (0.65, 0.27, 3.7, 0.69, 0.6), (0.6, 0.265, 1.75, 0.7, 0.6), (0.6, 0.25, 1.75, 0.7, 0.6))
    assert (weather.SPATTER_DRIFT, weather.SPATTER_DRIFT_SMALL) == ((0.05, 0.1, 0.15, 0.7), (0.2, 0.8))
    assert geo.TRANSLATE == {"imagenet": (-20, 41), "cifar": (-7, 16), "tinyimagenet": (-15, 31)}
    assert geo.TILT_STEP == {"imagenet": 1.0, "cifar": 0.75, "tinyimagenet": 1.0}
    scale = geo.AFFINE_PRESETS["scale"]
    assert [scale["cifar"](i)["scale"] for i in (0, 15, 30)] == [0.7, 1.0, 1.3]
    assert [scale[p](i)["scale"] for p in ("imagenet", "tinyimagenet") for i in (0, 30)] == [0.4, 1.15] * 2
    for name, key in (("rotate", "angle"), ("shear", "shear")):
        assert {p: [geo.AFFINE_PRESETS[name][p](i)[key] for i in (0, 30)] for p in SIDES} == {
            "cifar": [-15, 15], "tinyimagenet": [-15, 15]}
    counts = {p: {n: frame_count(n, preset=p) for n in ALL if frame_count(n, preset=p) != 31}
              for p in ("imagenet", "cifar", "tinyimagenet")}
    assert counts == {"imagenet": {"translate": 41}, "cifar": {"translate": 16, "motion_blur": 21},
                      "tinyimagenet": {}}


# --------------------------------------------------------------------------------------
# images and the originals' operations, re-computed independently


@pytest.fixture(scope="module")
def photos():
    """Three photographs (scikit-image's) made CIFAR-sized and Tiny-ImageNet-sized: a centred
    square resized with PIL bilinear. {preset: (list of uint8 (s, s, 3), tensor (3, 3, s, s))}."""
    import skimage.data
    from PIL import Image

    out = {}
    for preset, side in SIDES.items():
        arrays = []
        for name in ("astronaut", "chelsea", "coffee"):
            image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
            w, h = image.size
            s = min(w, h)
            square = image.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            arrays.append(np.array(square.resize((side, side), Image.BILINEAR)))
        x = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]).float() / 255
        out[preset] = (arrays, x)
    return out


def _levels(frame: torch.Tensor) -> np.ndarray:
    """A (3, s, s) frame on the uint8 grid -> (s, s, 3) float64 levels."""
    return (frame * 255).round().permute(1, 2, 0).double().numpy()


def _brightness(array: np.ndarray, c: float) -> np.ndarray:
    import skimage.color as skcolor

    hsv = skcolor.rgb2hsv(np.array(array, copy=True) / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.uint8(skcolor.hsv2rgb(hsv) * 255)


def _zoom_blur(array: np.ndarray, last: int) -> dict[int, np.ndarray]:
    """The original's running mean: float32 ToTensor sums of the zooms, ToPILImage truncation."""
    avg = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    out = {0: array}
    for i in range(1, last + 1):
        avg += torch.from_numpy(_affine_pil(array, scale=1 + 0.004 * i)).permute(2, 0, 1).float() / 255
        out[i] = (avg / (i + 1)).mul(255).byte().permute(1, 2, 0).numpy()
    return out


def _expected(preset: str, name: str, array: np.ndarray, i: int) -> np.ndarray:
    """Frame i of the original's sequence (the frames the scripts append to ``seq``)."""
    from skimage.filters import gaussian

    cifar = preset == "cifar"
    if name == "brightness":
        return _brightness(array, (i - 15) * (1.5 if cifar else 2) / 100.0)
    if name == "translate":
        return _affine_pil(array, translate=(i - (7 if cifar else 15), 0), bilinear=False)
    if name == "rotate":
        return _affine_pil(array, angle=i - 15)
    if name == "shear":
        return _affine_pil(array, shear=i - 15)
    if name == "scale":
        return _affine_pil(array, scale=(i * 2 + 70) / 100.0 if cifar else (i * 2.5 + 40) / 100.0)
    if name == "tilt":
        return _tilt_cv2(array, 0.75 * (i - 15) if cifar else i - 15)
    if name == "gaussian_blur":
        sigma, truncate = (0.3 + 0.015 * i, 7.0) if cifar else (0.35 + 0.014 * i, 7.0)
        return np.uint8(255 * gaussian(np.array(array, copy=True) / 255.0, sigma=sigma, channel_axis=-1,
                                       truncate=truncate))
    raise AssertionError(name)


#: per perturbation: frames checked, and the tolerance (levels): exact, or (max, mean)
DETERMINISTIC = {
    "brightness": ([0, 7, 15, 22, 30], None),  # the same float64 operations: bit for bit
    "translate": ([0, 3, 7, 15], None),  # whole-pixel shifts (CIFAR-10-P 0..15, Tiny 0..30)
    "rotate": ([0, 4, 13, 24, 30], "affine"),
    "shear": ([0, 9, 30], "affine"),
    "scale": ([0, 10, 15, 30], "affine"),
    "tilt": ([0, 9, 15, 30], (1, 0.01)),  # OpenCV rounds source coordinates to 1/32 px
    "gaussian_blur": ([0, 10, 30], None),  # scipy's float64 sums in scipy's order
}


@pytest.mark.parametrize("preset", list(SIDES))
@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_deterministic_sequences_are_the_originals(photos, preset, name):
    arrays, x = photos[preset]
    frames, tolerance = DETERMINISTIC[name]
    if name == "translate" and preset == "tinyimagenet":
        frames = [0, 5, 15, 30]
    ours = perturbation_sequence(x, name, preset=preset, frames=frames)
    assert ours.shape == (3, len(frames), 3, SIDES[preset], SIDES[preset])  # the whole image, no crop
    for k, array in enumerate(arrays):
        for position, i in enumerate(frames):
            diff = np.abs(_levels(ours[k, position]) - _expected(preset, name, array, i).astype(np.float64))
            if tolerance is None:
                assert np.array_equal(diff, np.zeros_like(diff)), (k, i, diff.max())
            elif tolerance == "affine":  # PIL's float64 arithmetic in PIL's order (room for an FMA)
                assert diff.max() <= 1 and (diff > 0).mean() < 2e-3, (k, i)
            else:
                assert diff.max() <= tolerance[0] and diff.mean() < tolerance[1], (k, i)


@pytest.mark.parametrize("preset", list(SIDES))
def test_zoom_blur_is_the_originals_running_mean(photos, preset):
    arrays, x = photos[preset]
    frames = [0, 1, 8, 30]
    ours = perturbation_sequence(x, "zoom_blur", preset=preset, frames=frames)
    for k, array in enumerate(arrays):
        expected = _zoom_blur(array, max(frames))
        for position, i in enumerate(frames):
            diff = np.abs(_levels(ours[k, position]) - expected[i].astype(np.float64))
            assert diff.max() <= 1 and diff.mean() < 0.01, (k, i)


def test_the_presets_differ_from_imagenet_where_the_scripts_do(photos):
    """The same 32 px images through the ImageNet-P preset (whole image, crop 32) give other
    frames for every retuned perturbation: the tests above can tell the presets apart."""
    _, x = photos["cifar"]
    for name in ("brightness", "scale", "tilt", "gaussian_blur"):
        cifar = perturbation_sequence(x, name, preset="cifar", frames=[0, 30])
        imagenet = perturbation_sequence(x, name, crop_size=32, frames=[0, 30])
        assert (cifar - imagenet).abs().max() > 2 / 255, name
    for name in ("rotate", "shear", "zoom_blur"):  # the same in every script
        assert torch.equal(perturbation_sequence(x, name, preset="tinyimagenet", frames=[2, 29]),
                           perturbation_sequence(x, name, crop_size=32, frames=[2, 29]))


# --------------------------------------------------------------------------------------
# ImageMagick's motion blur, snow and spatter (with the same random layers)


def _imagecorruptions():
    try:
        from corruptions.reference import load_imagecorruptions

        return load_imagecorruptions()
    except ImportError:
        pytest.skip("imagecorruptions (the NumPy stand-in for ImageMagick) is not installed")


@pytest.mark.parametrize(("preset", "radius", "sigma", "angle"), [
    ("cifar", 6, 1.8, lambda i: (i - 20) * 9), ("tinyimagenet", 14, 3, lambda i: (i - 30) * 5)])
def test_motion_blur_presets(photos, preset, radius, sigma, angle):
    """ImageMagick's sums in double, tap after tap (imagecorruptions' NumPy version), rounded half up
    into the 8-bit PNG: the same bytes. In float32 with merged taps, a sum a hair below .5 came out
    a level up (4 values of a CIFAR video, 146 of four ImageNet-P videos)."""
    ic = _imagecorruptions()
    arrays, x = photos[preset]
    last = frame_count("motion_blur", preset=preset) - 1  # 20 (CIFAR-10-P: 21 frames) or 30
    frames = list(range(last + 1))
    ours = perturbation_sequence(x, "motion_blur", preset=preset, frames=frames)
    for image in range(len(x)):
        for i in frames:
            blurred = ic._motion_blur(arrays[image], radius=radius, sigma=sigma, angle=angle(i))
            expected = np.clip(np.floor(blurred + 0.5), 0, 255)  # ImageMagick writes an 8-bit PNG
            assert np.array_equal(_levels(ours[image, i]), expected), (image, i)


@pytest.mark.parametrize("preset", list(SIDES))
def test_snow_presets_with_the_same_layer(photos, preset):
    arrays, x = photos[preset]
    # 24 layers: in float32, 1 in 6 had a byte a level up at 224 px (none at these sizes)
    _check_snow(arrays[0], x[:1], preset, list(range(123, 147)), (0, 17))


def test_snow_at_224_px_with_the_same_layer():
    """ImageNet-P's own size, where float32 layers put a byte a level up in 1 video in 6."""
    from robustbench_gcp.bench.photos import photo_levels

    levels = photo_levels(1, 256)
    _check_snow(levels[0, :, 16:240, 16:240].permute(1, 2, 0).numpy(), levels.float() / 255,
                "imagenet", list(range(123, 135)), (0,))


def _check_snow(array: np.ndarray, x: torch.Tensor, preset: str, seeds: list[int],
                frames: tuple[int, ...]) -> None:
    """The port's snow frames of image ``x`` (1, 3, S, S) equal the original's, computed from
    ``array`` (its c x c crop, uint8 HWC) with the same layer, for every seed."""
    import cv2
    from scipy.ndimage import zoom as scizoom

    from corruptions._rng import ImageRandom

    ic = _imagecorruptions()
    loc, scale, zoom, threshold, radius, sigma, blend = {
        "imagenet": (0.05, 0.3, 3, 0.5, 14, 4, 0.85),
        "cifar": (0.05, 0.3, 2, 0.5, 10, 2, 0.85),
        "tinyimagenet": (0.05, 0.28, 2, 0.5, 10, 2.5, 0.85)}[preset]
    s = array.shape[0]
    ours = perturbation_sequence(x.expand(len(seeds), -1, -1, -1), "snow", seed=seeds, preset=preset,
                                 frames=list(frames))
    image = array / 255.0
    grey = cv2.cvtColor(np.float32(image), cv2.COLOR_RGB2GRAY).reshape(s, s, 1)
    base = blend * image + (1 - blend) * np.maximum(image, grey * 1.5 + 0.5)
    for video, seed in enumerate(seeds):
        layer = ImageRandom(1, "cpu", seeds=[seed]).normal(1, s, s, mean=loc, std=scale)
        layer = layer[0, 0].double().numpy()
        ch = int(np.ceil(s / zoom))
        top = (s - ch) // 2
        layer = scizoom(layer[top : top + ch, top : top + ch], zoom, order=1)
        trim = (layer.shape[0] - s) // 2
        layer = layer[trim : trim + s, trim : trim + s]
        layer[layer < threshold] = 0
        layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)
        for position, i in enumerate(frames):
            snow = ic._motion_blur(layer, radius=radius, sigma=sigma, angle=i * 4 - 150)
            snow = np.clip(np.floor(snow + 0.5), 0, 255)  # ImageMagick's 8-bit PNG
            snow = (snow / 255.0)[..., None]
            expected = np.uint8(np.clip(base + snow + np.rot90(snow, k=2), 0, 1) * 255)
            # the same bytes since 0.7.12 (the layer in float64, the blur's sums in double)
            assert np.array_equal(_levels(ours[video, position]), expected), (seed, i)


@pytest.mark.parametrize("preset", list(SIDES))
def test_spatter_presets_with_the_same_layer(photos, preset):
    from skimage.filters import gaussian

    from corruptions._rng import ImageRandom

    loc, scale = {"cifar": (0.6, 0.265), "tinyimagenet": (0.6, 0.25)}[preset]
    arrays, x = photos[preset]
    s = SIDES[preset]
    frames = [0, 1, 6]
    ours = perturbation_sequence(x[2:], "spatter", seed=[77], preset=preset, frames=frames)
    liquid = ImageRandom(1, "cpu", seeds=[77]).normal(1, s, s, mean=loc, std=scale)[0, 0].double().numpy()
    liquid = gaussian(liquid, sigma=1.75)
    liquid[liquid < 0.7] = 0
    image = np.array(arrays[2], dtype=np.float32) / 255.0
    checked = 0
    for i in range(max(frames) + 1):
        if i in frames:
            diff = np.abs(_levels(ours[0, frames.index(i)]) - water_frame(image, liquid))
            assert diff.max() <= 2 and diff.mean() < 0.02, i
            checked += int(liquid.max() * 255 >= 1)
        liquid = np.apply_along_axis(lambda col: np.convolve(col, [0.2, 0.8], mode="same"), 0, liquid)
    assert checked  # the layer has water to compare


def test_cifar_spatter_frames_whose_water_has_drifted_out_are_black(photos):
    """make_cifar_p.py divides the water by its maximum: 0 / 0 once the drift [.2, .8] has carried
    the layer out of 32 px, and np.uint8(NaN) is 0 (black); the port showed the clean image (1 in 10
    CIFAR-10-P videos, 5 % of their frames)."""
    from skimage.filters import gaussian

    from corruptions import image_seeds as corruption_seeds
    from corruptions._rng import ImageRandom

    arrays, x = photos["cifar"]
    seed = int(corruption_seeds(9, range(12))[11])  # a layer that is dry from frame 4 on
    ours = perturbation_sequence(x[:1], "spatter", seed=[seed], preset="cifar")
    liquid = ImageRandom(1, "cpu", seeds=[seed]).normal(1, 32, 32, mean=0.6, std=0.265)
    liquid = liquid[0, 0].double().numpy()
    liquid = gaussian(liquid, sigma=1.75)
    liquid[liquid < 0.7] = 0
    image = np.array(arrays[0], dtype=np.float32) / 255.0
    black = 0
    for i in range(frame_count("spatter", preset="cifar")):
        expected = water_frame(image, liquid)
        diff = np.abs(_levels(ours[0, i]) - expected)
        assert diff.max() <= 2 and diff.mean() < 0.02, i
        black += int(expected.max() == 0)
        liquid = np.apply_along_axis(lambda col: np.convolve(col, [0.2, 0.8], mode="same"), 0, liquid)
    assert black >= 20 and int((ours[0].flatten(1).amax(1) == 0).sum()) == black


# --------------------------------------------------------------------------------------
# noise: the levels show in the statistics (fixed draws)


@pytest.mark.parametrize(("preset", "name", "difficulty", "sigma"), [
    ("cifar", "gaussian_noise", 1, 0.02), ("cifar", "gaussian_noise", 3, 0.06),
    ("tinyimagenet", "gaussian_noise", 1, 0.025), ("tinyimagenet", "gaussian_noise", 3, 0.075),
    ("cifar", "shot_noise", 1, math.sqrt(0.5 / 700)), ("cifar", "shot_noise", 3, math.sqrt(0.5 / 200)),
    ("tinyimagenet", "shot_noise", 1, math.sqrt(0.5 / 500)),
    ("tinyimagenet", "shot_noise", 2, math.sqrt(0.5 / 250)),
    ("cifar", "speckle_noise", 2, 0.07 * 0.5), ("tinyimagenet", "speckle_noise", 3, 0.15 * 0.5),
])
def test_noise_levels_of_the_presets(preset, name, difficulty, sigma):
    # std of (frame - clean) over 30 frames of a mid-grey image: sigma (speckle: x sigma, shot:
    # sqrt(x / L)), plus the uint8 truncation -> within 4 % (the next level is >= 15 % away)
    side = SIDES[preset]
    x = torch.full((2, 3, side, side), 128 / 255)
    video = perturbation_sequence(x, name, difficulty, seed=[5, 6], preset=preset)
    assert video.shape == (2, 31, 3, side, side) and torch.equal(video[:, 0], x)
    noise = video[:, 1:] - video[:, :1]
    ratio = 128 / 255 / 0.5
    expected = sigma * (math.sqrt(ratio) if name == "shot_noise" else ratio if name == "speckle_noise" else 1)
    assert abs(noise.std().item() / expected - 1) < 0.04
    again = perturbation_sequence(x, name, difficulty, seed=[5, 6], preset=preset, frames=[3, 30])
    assert torch.equal(again, video[:, [3, 30]])


# --------------------------------------------------------------------------------------
# the API


def test_preset_arguments_are_checked():
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="`preset` should be one of imagenet, cifar, tinyimagenet.*'cifar'"):
        perturbation_sequence(x, "rotate", preset="cifar10")
    with pytest.raises(ValueError, match="`preset` should be one of"):
        frame_count("rotate", preset="imagenet-p")
    with pytest.raises(ValueError, match="`sizes` .* applies to the imagenet preset"):
        perturbation_sequence(x, "rotate", preset="cifar", sizes=[(32, 32)])
    with pytest.raises(ValueError, match="`frames` should hold indices 0..15 \\(translate has 16 frames\\)"):
        perturbation_sequence(x, "translate", preset="cifar", frames=[16])
    # the ImageNet default is unchanged: 224 / 256 of the side, 41 translate frames
    assert perturbation_sequence(x, "translate").shape == (1, 41, 3, 28, 28)
    assert perturbation_sequence(x, "translate", preset="tinyimagenet").shape == (1, 31, 3, 32, 32)
    cropped = perturbation_sequence(x, "rotate", preset="cifar", crop_size=24, frames=[0])
    assert cropped.shape == (1, 1, 3, 24, 24)


# --------------------------------------------------------------------------------------
# the suite, end to end: CIFAR-10-P (generated, released .npy) and Tiny-ImageNet-P (MP4)

MODULE = '''
import torch
import torch.nn as nn
from robustbench_gcp.models.resnet import PreprocessConfig


def build(seed=0):
    """A random linear read-out of the pixels: its answers move with the frames."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    net.pretrained_cfg = PreprocessConfig(input_size=32, resize_size=32, mean=(0.49, 0.48, 0.45),
                                          std=(0.25, 0.24, 0.26))
    return net


def other():
    return build(1)


def tiny(classes=4):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, classes))
    net.pretrained_cfg = PreprocessConfig(input_size=64, resize_size=64)
    return net


def tiny200():
    return tiny(200)
'''
N = 20


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def report_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def cifar(tmp_path, on_sys_path):
    """A CIFAR-10 pickle batch of N textured 32 px images and the user's model module."""
    (on_sys_path / "small_p_nets.py").write_text(textwrap.dedent(MODULE))
    rng = np.random.default_rng(0)
    base = rng.random((N, 4, 4, 3))
    images = (np.kron(base, np.ones((1, 8, 8, 1))) * 200 + rng.random((N, 32, 32, 3)) * 55).astype(np.uint8)
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    with open(batches / "test_batch", "wb") as f:
        data = images.transpose(0, 3, 1, 2).reshape(N, -1)
        pickle.dump({b"data": data, b"labels": [i % 10 for i in range(N)]}, f, protocol=2)
    return tmp_path, images


def _direct(images: np.ndarray, name: str, model, seed_token: str, difficulty: int = 1):
    """The suite's figures re-computed: the sequences of the images (seeded as the suite seeds
    them), classified by the model, flip statistics."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    frames = perturbation_sequence(x, name, difficulty, seed=image_seeds(0, seed_token, range(len(images))),
                                   preset="cifar")
    mean = torch.tensor(model.pretrained_cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.pretrained_cfg.std).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = model((frames.flatten(0, 1) - mean) / std).view(len(images), frames.shape[1], -1)
    mode = "noise" if name.endswith("_noise") else "sequential"
    return frames, flip_stats(logits, mode=mode, difficulty=1 if mode == "noise" else difficulty)


def test_cifar10_p_generated_and_released_through_the_cli(cifar):
    from small_p_nets import build

    root, images = cifar
    store = root / "s.db"
    common = ["--model", "small_p_nets:build", "--suite", "cifar10-p", "--store", store, "--workers", 0,
              "--format", "json"]
    out = report_json(run("eval", *common, "--data", root / "cifar-10-batches-py", "--perturbations",
                          "translate,gaussian_noise,motion_blur", "--difficulties", "1,2"))
    entries = {(e["perturbation"], e["difficulty"]): e for e in out["perturbations"]}
    names = ("translate", "gaussian_noise", "motion_blur")
    assert sorted(entries) == sorted((p, d) for p in names for d in (1, 2))
    assert out["metrics"]["dataset"] == "cifar10" and out["metrics"]["mFR"] is None
    assert any("CIFAR-10-P figures are unnormalized" in note for note in out["notes"])
    assert out["clean"]["n"] == N
    model = build()
    released = root / "CIFAR-10-P"
    released.mkdir()
    for (name, difficulty), entry in entries.items():
        token = f"imagenet-p/{name}/{difficulty}" if name == "gaussian_noise" else f"imagenet-p/{name}"
        frames, (fp, t5d) = _direct(images, name, model, token, difficulty)
        assert frames.shape[1] == {"translate": 16, "motion_blur": 21}.get(name, 31)
        assert entry["n_videos"] == N and 0 <= entry["flip_probability"] <= 1
        assert entry["flip_probability"] == pytest.approx(fp, abs=1e-12), (name, difficulty)
        assert entry["top5_distance"] == pytest.approx(t5d, abs=1e-12), (name, difficulty)
        if difficulty == 1:  # the released layout: one (N, F, 32, 32, 3) uint8 array per perturbation
            pixels = (frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
            np.save(released / f"{name}.npy", pixels)
    assert any(e["flip_probability"] > 0 for e in entries.values())
    first = [entries[(name, 1)] for name in names]  # the unnormalized means (cifar-p-eval.py prints FP's)
    at_1 = out["metrics"]["by_difficulty"]["1"]
    assert at_1["mean_flip_probability"] == pytest.approx(sum(e["flip_probability"] for e in first) / 3)
    assert at_1["mean_top5_distance"] == pytest.approx(sum(e["top5_distance"] for e in first) / 3)
    with Store(store) as s:
        variants = {json.loads(key.variant).get("dataset") for _, key in s.cells(s.runs()[0].id)
                    if key.name in ("translate", "motion_blur")}
    assert variants == {"cifar10"}
    # the released .npy of the same frames: the same figures, with the test set or alone
    read = report_json(run("eval", *common, "--data", root / "cifar-10-batches-py", "--corrupted-dir",
                           released, "--perturbations", "translate,motion_blur,gaussian_noise"))
    alone = report_json(run("eval", *common, "--corrupted-dir", released, "--perturbations",
                            "translate,motion_blur"))
    for report in (read, alone):
        for e in report["perturbations"]:
            generated = entries[(e["perturbation"], 1)]
            assert (e["n_videos"], e["flip_probability"], e["top5_distance"]) == (
                N, generated["flip_probability"], generated["top5_distance"])
    table = run("report", "--store", store)
    assert "(CIFAR-10-P, torch)" in table.output and "(CIFAR-10-P, released)" in table.output
    shown = run("eval", *common[:-2], "--data", root / "cifar-10-batches-py", "--perturbations", "translate")
    assert "CIFAR-10-P: flip probability and top-5 distance" in shown.output
    assert "mean flip probability (%, difficulty 1)" in shown.output  # no baseline: the raw means stand in
    assert "mean top-5 distance (difficulty 1)" in shown.output
    # CIFAR-100-P (the same layout): its own suite, and `report` names and selects it so (it was
    # reported as `imagenet-p`, and --suite cifar10-p, which eval had run, left it out)
    hundred = [*common[2:4], "--store", root / "p100.db", *common[6:]]
    for args in (["--suite", "cifar100-p"], ["--suite", "cifar10-p", "--dataset", "cifar100"]):
        ran = report_json(run("eval", "--model", "small_p_nets:build", *args, *hundred[2:], "--corrupted-dir",
                              released, "--perturbations", "translate"))
        assert ran["metrics"]["dataset"] == "cifar100" and ran["suite"] == "cifar100-p"  # as report says
    again = run("eval", "--model", "small_p_nets:build", "--suite", "cifar10-p", "--dataset", "cifar100",
                *hundred[2:], "--corrupted-dir", released, "--perturbations", "translate")
    assert "small_p_nets:build cifar100-p: reused from the store" in again.stderr  # its progress line too
    stored = report_json(run("report", "--store", root / "p100.db", "--suite", "cifar100-p", "--format",
                             "json", "--no-intervals"))
    assert [r["suite"] for r in stored["reports"]] == ["cifar100-p"]
    assert report_json(run("report", "--store", root / "p100.db", "--format", "json",
                           "--no-intervals"))["reports"][0]["suite"] == "cifar100-p"
    other = run("report", "--store", root / "p100.db", "--suite", "cifar10-p")  # another dataset: said
    assert other.exit_code == 1 and "(it has cifar100-p: --suite cifar100-p)" in other.output


def test_cifar10_p_normalized_by_a_stored_baseline(cifar):
    root, _ = cifar
    common = ["--suite", "cifar10-p", "--data", root / "cifar-10-batches-py", "--perturbations",
              "translate,rotate", "--store", root / "s.db", "--workers", 0, "--format", "json"]
    base = report_json(run("baseline", "--model", "small_p_nets:build", "--name", "small", *common))
    ours = report_json(run("eval", "--model", "small_p_nets:other", "--baseline", "small", *common))
    fp0 = {e["perturbation"]: e["flip_probability"] for e in base["perturbations"]}
    assert all(v > 0 for v in fp0.values())
    frs = [e["FR"] for e in ours["perturbations"]]
    assert frs == [pytest.approx(100 * e["flip_probability"] / fp0[e["perturbation"]])
                   for e in ours["perturbations"]]
    assert ours["metrics"]["mFR"] == pytest.approx(sum(frs) / 2) and ours["metrics"]["baseline"] == "small"


@pytest.mark.parametrize("shape, message", [
    ((N, 31, 32, 32, 3), "uint8 \\(N, 16, 32, 32, 3\\)"),  # 31 frames: not CIFAR-10-P's translate
    ((N, 16, 3, 32, 32), "uint8 \\(N, 16, 32, 32, 3\\)"),  # channels first
])
def test_a_wrong_cifar10_p_file_is_a_clear_error(cifar, shape, message):
    root, _ = cifar
    released = root / "CIFAR-10-P"
    released.mkdir()
    np.save(released / "translate.npy", np.zeros(shape, np.uint8))
    result = run("eval", "--model", "small_p_nets:build", "--suite", "cifar10-p", "--corrupted-dir", released,
                 "--perturbations", "translate", "--store", root / "s.db")
    assert result.exit_code == 1 and not (root / "s.db").exists()
    assert str(released / "translate.npy") in result.stderr and f"shape {shape}" in result.stderr
    assert re.search(message, result.stderr), result.stderr
    missing = run("eval", "--model", "small_p_nets:build", "--suite", "cifar10-p", "--corrupted-dir",
                  released, "--perturbations", "rotate", "--store", root / "s.db")
    assert missing.exit_code == 1 and "rotate.npy does not exist; the folder has translate" in missing.stderr


def test_tiny_imagenet_p_released_videos_and_generated_cells(tmp_path, on_sys_path):
    """Released Tiny-ImageNet-P: 64 px MP4 videos in ImageNet-P's layout, 31 translate frames
    (-15..15 px), labels from the sorted wnid folders; generated: 64 px frames, cells marked."""
    from PIL import Image

    (on_sys_path / "small_p_nets.py").write_text(textwrap.dedent(MODULE))
    rng = np.random.default_rng(2)
    wnids = ["n01443537", "n01629819", "n01641577", "n01644900"]
    images = (np.kron(rng.random((8, 8, 8, 3)), np.ones((1, 8, 8, 1))) * 255).astype(np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    frames = perturbation_sequence(x, "translate", preset="tinyimagenet")
    assert frames.shape == (8, 31, 3, 64, 64)
    pixels = (frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    released, clean = tmp_path / "Tiny-ImageNet-P", tmp_path / "val"
    for k, video in enumerate(pixels):
        write_mp4(released / "translate" / wnids[k % 4] / f"img_{k}.mp4", video)
        (clean / wnids[k % 4]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[k]).save(clean / wnids[k % 4] / f"img_{k}.png")
    store = tmp_path / "s.db"
    common = ["--model", "small_p_nets:tiny", "--suite", "tinyimagenet-p", "--perturbations", "translate",
              "--store", store, "--workers", 0, "--format", "json"]
    read = report_json(run("eval", *common, "--corrupted-dir", released))
    generated = report_json(run("eval", *common, "--data", clean))
    (r,), (g,) = read["perturbations"], generated["perturbations"]
    assert r["n_videos"] == g["n_videos"] == 8 and read["metrics"]["dataset"] == "tinyimagenet"
    # lossless H.264 still rounds RGB through YUV by a level: at most a pair or two differ
    assert g["flip_probability"] > 0.05  # the model's answers move: the comparison can fail
    assert r["flip_probability"] == pytest.approx(g["flip_probability"], abs=2 / 30)
    with Store(store) as s:
        variants = [json.loads(key.variant) for run_ in s.runs() for _, key in s.cells(run_.id)
                    if key.name == "translate"]
    assert {v["source"] for v in variants} == {"released", "torch"}
    assert all(v["dataset"] == "tinyimagenet" and "geometry" not in v for v in variants)
    # a model of the 200 classes on 4 of the class folders, read alone: flips need no label (it was
    # refused: "4 class folders are numbered in their sorted order, but ... 200 classes")
    whole = report_json(run("eval", *common[2:], "--model", "small_p_nets:tiny200", "--corrupted-dir",
                            released))
    assert whole["perturbations"][0]["n_videos"] == 8
    with_clean = run("eval", *common[2:], "--model", "small_p_nets:tiny200", "--data", clean)
    assert with_clean.exit_code == 1 and "numbered in their sorted order" in with_clean.output  # scored


def test_cifar10_p_files_located_by_benchmarks_yaml_and_a_folder_is_refused(cifar, monkeypatch):
    import yaml
    from PIL import Image

    from robustbench_gcp.config import DATA_VARIABLE, default_config_path

    root, images = cifar
    released = root / "CIFAR-10-P"
    released.mkdir()
    frames = perturbation_sequence(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, "rotate",
                                   preset="cifar")
    np.save(released / "rotate.npy", (frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy())
    config = yaml.safe_load(default_config_path().read_text())
    # the clean images configured but not there (only the released files downloaded): those are read
    config["datasets"] = {"root": "nowhere",
                          "cifar10": {"clean": "not-downloaded", "perturbed": "CIFAR-10-P"}}
    path = root / "benchmarks.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv(DATA_VARIABLE, str(root))
    found = report_json(run("eval", "--config", path, "--model", "small_p_nets:build", "--suite", "cifar10-p",
                            "--perturbations", "rotate", "--store", root / "s.db", "--format", "json"))
    assert found["corrupted_dir"] == str(released) and found["perturbations"][0]["n_videos"] == N
    said = (f"datasets.cifar10.clean: {root / 'not-downloaded'} does not exist: the released files of "
            "datasets.cifar10.perturbed are read alone (no clean cell; give --data for one)")
    assert said in found["notes"]
    shutil.move(released, root / "elsewhere")  # neither there: both keys named
    neither = run("eval", "--config", path, "--model", "small_p_nets:build", "--suite", "cifar10-p",
                  "--store", root / "s.db")
    assert neither.exit_code != 0 and "datasets.cifar10.clean" in neither.output
    assert "datasets.cifar10.perturbed" in neither.output
    assert neither.output.count("relative paths are under") == 1  # the remedy once, after both keys
    shutil.move(root / "elsewhere", released)
    # CIFAR-10-P rows are the test set's: a folder of images has no row order to match
    folder = root / "folder"
    for i, image in enumerate(images):
        (folder / f"c{i % 10}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"c{i % 10}" / f"{i:05d}.png")
    refused = run("eval", "--model", "small_p_nets:build", "--suite", "cifar10-p", "--data", folder,
                  "--corrupted-dir", released, "--perturbations", "rotate", "--store", root / "t.db")
    assert refused.exit_code == 1 and "give --data the CIFAR python batches" in refused.stderr
    assert not (root / "t.db").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.cuda
@pytest.mark.parametrize("preset", list(SIDES))
def test_presets_on_cuda_match_cpu(photos, preset):
    _, x = photos[preset]
    for name in ("translate", "motion_blur", "tilt", "scale", "gaussian_blur", "brightness", "zoom_blur"):
        cpu = perturbation_sequence(x, name, preset=preset)
        gpu = perturbation_sequence(x.cuda(), name, preset=preset)
        assert gpu.shape == cpu.shape and (gpu.cpu() - cpu).abs().max() <= 1 / 255 + 1e-6, name
