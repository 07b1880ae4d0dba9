"""ImageNet-P sequences: API contract, identity frames, seeding, chunking, errors, and
independent re-computation of the original formulas (NumPy / PIL / OpenCV / scikit-image)
on real photographs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from original_p import center_crop as _center_crop
from original_p import resize_shorter as _resize_shorter
from original_p import tilt_cv2 as _tilt_cv2
from original_p import water_frame

from corruptions import image_seeds
from corruptions.perturbations import (
    frame_count,
    get_perturbation,
    list_perturbations,
    perturbation_sequence,
)

ALL = list_perturbations("all")
RANDOM = [n for n in ALL if get_perturbation(n).random]
NOISE = ["gaussian_noise", "shot_noise", "speckle_noise"]
GEOMETRIC = ["zoom_blur", "translate", "rotate", "tilt", "scale", "shear"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# --------------------------------------------------------------------------------------
# images


def _to_tensor(image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def _frames_uint8(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, c, c) frames on the uint8 grid -> (T, c, c, 3) float64 levels."""
    return (frames * 255).round().permute(0, 2, 3, 1).double().numpy()


@pytest.fixture(scope="module")
def photos96():
    """Three real photographs (scikit-image's), shorter side 96 px: (PIL squares, tensor)."""
    import skimage.data
    from PIL import Image

    squares = []
    for name in ("astronaut", "chelsea", "coffee"):
        full = _resize_shorter(Image.fromarray(getattr(skimage.data, name)()).convert("RGB"), 96)
        squares.append(_center_crop(full, 96))
    return squares, torch.stack([_to_tensor(s) for s in squares])


@pytest.fixture(scope="module")
def small() -> torch.Tensor:
    """Two textured 73 px images on the uint8 grid."""
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(2, 3, 12, 12, generator=generator)
    up = torch.nn.functional.interpolate(base, size=(73, 73), mode="bilinear", align_corners=False)
    noise = torch.rand(2, 3, 73, 73, generator=generator) * 0.15
    return torch.round((up * 0.85 + noise).clamp(0, 1) * 255) / 255


def _crop(x: torch.Tensor, c: int) -> torch.Tensor:
    top = int(round((x.shape[-1] - c) / 2.0))
    return x[..., top : top + c, top : top + c]


# --------------------------------------------------------------------------------------
# the original's geometry (torchvision 0.2 ``affine`` on PIL, OpenCV's warpPerspective)


def _old_affine(image, angle=0.0, translate=(0, 0), scale=1.0, shear=0.0, bilinear=True):
    from PIL import Image

    center = (image.size[0] * 0.5 + 0.5, image.size[1] * 0.5 + 0.5)
    a, sh, inv = math.radians(angle), math.radians(shear), 1.0 / scale
    d = math.cos(a + sh) * math.cos(a) + math.sin(a + sh) * math.sin(a)
    m = [inv / d * v for v in (math.cos(a + sh), math.sin(a + sh), 0, -math.sin(a), math.cos(a), 0)]
    m[2] += m[0] * (-center[0] - translate[0]) + m[1] * (-center[1] - translate[1])
    m[5] += m[3] * (-center[0] - translate[0]) + m[4] * (-center[1] - translate[1])
    m[2] += center[0]
    m[5] += center[1]
    return image.transform(image.size, Image.AFFINE, m, Image.BILINEAR if bilinear else Image.NEAREST)


# --------------------------------------------------------------------------------------
# registry


def test_subsets_order_and_frame_counts():
    from robustbench_gcp.suites.imagenet_p import PERTURBATION_SUBSETS  # the suite's names

    assert list_perturbations() == [
        "gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
        "brightness", "translate", "rotate", "tilt", "scale",
    ]
    assert list_perturbations("validation") == ["speckle_noise", "gaussian_blur", "spatter", "shear"]
    assert list_perturbations("all") == list_perturbations("test") + list_perturbations("validation")
    for subset in ("test", "validation", "all"):  # the suite's order is this one
        assert tuple(list_perturbations(subset)) == PERTURBATION_SUBSETS[subset]
    assert {n: frame_count(n) for n in ALL} == {n: 41 if n == "translate" else 31 for n in ALL}
    assert sorted(RANDOM) == sorted(NOISE + ["snow", "spatter"])
    with pytest.raises(ValueError, match="Did you mean 'validation'"):
        list_perturbations("valid")


def test_one_registry_and_constants_defined_once():
    import dataclasses

    import corruptions
    import corruptions.perturbations as perturbations
    from corruptions import _registry

    # the perturbations are entries of the corruptions' registry mechanism
    assert type(_registry.PERTURBATIONS) is type(_registry.CORRUPTIONS) is _registry.Registry
    assert sorted(_registry.PERTURBATIONS) == sorted(ALL)
    for module in (corruptions, perturbations):
        assert module.PERTURBATION_SUBSETS is _registry.PERTURBATION_SUBSETS
        assert module.DIFFICULTIES is _registry.DIFFICULTIES
        assert module.NOISE_PERTURBATIONS is _registry.NOISE_PERTURBATIONS
    assert corruptions.SEVERITIES is _registry.SEVERITIES == (1, 2, 3, 4, 5)
    assert corruptions.DIFFICULTIES == (1, 2, 3)
    assert corruptions.NOISE_PERTURBATIONS == tuple(NOISE)
    assert [n for n in ALL if get_perturbation(n).noise] == NOISE
    assert {n: get_perturbation(n).subset for n in ALL} == {
        n: "test" if n in list_perturbations("test") else "validation" for n in ALL}
    assert corruptions.get_perturbation("rotate") is get_perturbation("rotate")
    with pytest.raises(ValueError, match="perturbation 'rotate' is registered twice"):
        _registry.register_perturbation(get_perturbation("rotate"))
    with pytest.raises(ValueError, match="not one of the 14 of ImageNet-P"):
        _registry.register_perturbation(dataclasses.replace(get_perturbation("rotate"), name="roll"))
    with pytest.raises(TypeError, match="`name` should be a perturbation name"):
        get_perturbation(3)


def test_sample_apply_split_draws_noise_per_image_and_frame(small):
    import dataclasses

    from corruptions._rng import ImageRandom
    from corruptions.perturbations import draw_parameters
    from corruptions.perturbations._sequence import Job

    assert {n for n in ALL if get_perturbation(n).sample is not None} == set(RANDOM)
    spec = get_perturbation("gaussian_noise")
    job = Job(x=small, crop=64, top=4, frames=[0, 7, 3, 7], difficulty=2, seeds=[11, 12],
              generator=None, quantize=True)
    noise = draw_parameters(spec, job)["noise"]
    assert noise.shape == (2, 3, 3, 64, 64)  # (B, requested frames >= 1, 3, c, c)
    for i, seed in enumerate((11, 12)):
        for n, j in enumerate((7, 3, 7)):  # frame j of image i: its own generator
            expected = ImageRandom(1, "cpu", seeds=image_seeds(seed, [j]).tolist()).normal(3, 64, 64)[0]
            assert torch.equal(noise[i, n], expected)
    # frames = apply(job, params): the sequence is the sampled draws, then the frames
    video = perturbation_sequence(small, "gaussian_noise", 2, seed=[11, 12], frames=[0, 7, 3, 7])
    frames = spec.apply(job, {"noise": noise})
    assert torch.equal(video, torch.floor(frames.clamp(0, 1) * 255) / 255)
    # nothing to draw: no noisy frame requested, or a deterministic perturbation
    assert draw_parameters(spec, dataclasses.replace(job, frames=[0])) == {}
    assert draw_parameters(get_perturbation("rotate"), job) == {}


# --------------------------------------------------------------------------------------
# contract: shapes, dtype, input untouched, values, empty batch, chunks, batching


@pytest.mark.parametrize("name", ALL)
def test_contract(small, name):
    before = small.clone()
    seeds = [11, 12]
    video = perturbation_sequence(small, name, seed=seeds)
    assert video.shape == (2, frame_count(name), 3, 64, 64)  # round(73 * 224 / 256) = 64
    assert video.dtype == small.dtype and video.device == small.device
    assert torch.equal(small, before)
    assert video.min() >= 0 and video.max() <= 1
    assert torch.equal(torch.round(video * 255) / 255, video)  # uint8 grid (quantize=True)
    # frames= chunks equal the full sequence, in any order and with repeats
    total = frame_count(name)
    chunks = torch.cat([perturbation_sequence(small, name, seed=seeds, frames=range(a, min(a + 12, total)))
                        for a in range(0, total, 12)], dim=1)
    assert torch.equal(chunks, video)
    picked = [total - 1, 0, 5, 5]
    assert torch.equal(perturbation_sequence(small, name, seed=seeds, frames=picked), video[:, picked])
    # batched equals one by one with per-image seeds
    alone = torch.cat([perturbation_sequence(small[i : i + 1], name, seed=[s]) for i, s in enumerate(seeds)])
    assert torch.equal(alone, video)
    # empty batch
    empty = perturbation_sequence(small[:0], name, seed=[])
    assert empty.shape == (0, total, 3, 64, 64)


def test_sizes_256_and_crop_size():
    x = torch.rand(1, 3, 256, 256)
    assert perturbation_sequence(x, "rotate").shape == (1, 31, 3, 224, 224)
    assert perturbation_sequence(x, "translate", frames=[0, 40]).shape == (1, 2, 3, 224, 224)
    y = torch.rand(2, 3, 96, 96)
    assert perturbation_sequence(y, "brightness").shape == (2, 31, 3, 84, 84)
    assert perturbation_sequence(y, "snow", crop_size=96, seed=0).shape == (2, 31, 3, 96, 96)
    assert perturbation_sequence(y, "shear", crop_size=50).shape == (2, 31, 3, 50, 50)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_kept(small, dtype):
    x = small.to(dtype)
    for name in ("rotate", "gaussian_noise", "brightness"):
        out = perturbation_sequence(x, name, seed=0, frames=[0, 7])
        assert out.dtype == dtype
        reference = perturbation_sequence(small, name, seed=0, frames=[0, 7])
        assert (out.double() - reference.double()).abs().max() <= 1 / 255 + 1e-2  # half precision


def test_quantize_false_keeps_floats(small):
    quantized = perturbation_sequence(small, "rotate", frames=[3])
    floats = perturbation_sequence(small, "rotate", frames=[3], quantize=False)
    assert not torch.equal(torch.round(floats * 255) / 255, floats)
    assert floats.min() >= 0 and floats.max() <= 1
    assert (quantized - floats).abs().max() < 1 / 255 + 1e-6
    assert (quantized <= floats + 1e-5).all()  # PIL truncates


# --------------------------------------------------------------------------------------
# what the frames are


@pytest.mark.parametrize("name", NOISE)
def test_noise_frame0_is_the_clean_crop(small, name):
    for difficulty in (1, 2, 3):
        video = perturbation_sequence(small, name, difficulty, seed=3)
        assert torch.equal(video[:, 0], _crop(small, 64))
        assert not torch.equal(video[:, 1], video[:, 2])  # fresh noise per frame


@pytest.mark.parametrize(("name", "frame"), [("translate", 20), ("rotate", 15), ("shear", 15),
                                             ("scale", 24)])
def test_identity_frames_are_the_crop(photos96, name, frame):
    # shift 0, angle 0, shear 0, scale (2.5 * 24 + 40) / 100 = 1: every sample point is a
    # pixel centre, the bilinear weights are exactly 0 and 1: equal to the bit
    _, x = photos96
    out = perturbation_sequence(x, name, frames=[frame])[:, 0]
    assert torch.equal(out, _crop(x, 84))


def test_tilt_identity_frame_within_interpolation_error(photos96):
    # The original's tilt at angle 0 is not the identity: P2 T P1 maps x to
    # (f x + w / 2) / (f + 1), a zoom by f / (f + 1) (0.9948 at 96 px, 0.9972 at 256 px)
    # about the centre: sample points move by at most 0.44 px at the crop's corners.
    # Tolerance: mean |difference| < 5 / 255, and the frame is OpenCV's (next test).
    _, x = photos96
    out = perturbation_sequence(x, "tilt", frames=[15])[:, 0]
    crop = _crop(x, 84)
    assert (out - crop).abs().mean() < 5 / 255
    assert (out - crop).abs().mean() > 0.1 / 255  # not the identity


@pytest.mark.parametrize("name", [n for n in ALL if n not in NOISE])
def test_difficulty_does_not_change_non_noise_frames(small, name):
    a = perturbation_sequence(small, name, 1, seed=5, frames=[0, 9])
    for difficulty in (2, 3):
        assert torch.equal(perturbation_sequence(small, name, difficulty, seed=5, frames=[0, 9]), a)


@pytest.mark.parametrize("name", NOISE)
def test_noise_level_grows_with_difficulty(name):
    x = torch.full((1, 3, 96, 96), 0.5)
    stds = [(perturbation_sequence(x, name, d, seed=1)[:, 1:] - 0.5).std().item() for d in (1, 2, 3)]
    assert stds[0] < stds[1] < stds[2]


# --------------------------------------------------------------------------------------
# seeding


@pytest.mark.parametrize("name", RANDOM)
def test_seeding(small, name):
    a = perturbation_sequence(small, name, seed=[1, 2])
    assert torch.equal(perturbation_sequence(small, name, seed=[1, 2]), a)
    b = perturbation_sequence(small, name, seed=[3, 4])
    changed = slice(1, None) if name in NOISE else slice(None)
    assert not torch.equal(a[:, changed], b[:, changed])
    # an int seed is image_seeds(seed, range(B))
    assert torch.equal(perturbation_sequence(small, name, seed=7),
                       perturbation_sequence(small, name, seed=image_seeds(7, range(2))))
    # a batch generator: reproducible through its seed
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(perturbation_sequence(small, name, generator=g1),
                       perturbation_sequence(small, name, generator=g2))
    # chunks drawn from a generator in the same state match the full draw
    full = perturbation_sequence(small, name, generator=torch.Generator().manual_seed(4))
    part = perturbation_sequence(small, name, generator=torch.Generator().manual_seed(4), frames=[3, 30])
    assert torch.equal(part, full[:, [3, 30]])


def test_deterministic_perturbations_ignore_seed(small):
    for name in ("rotate", "brightness", "motion_blur"):
        assert torch.equal(perturbation_sequence(small, name, seed=1, frames=[4]),
                           perturbation_sequence(small, name, seed=2, frames=[4]))


# --------------------------------------------------------------------------------------
# errors


def test_errors(small):
    with pytest.raises(ValueError, match="unknown perturbation 'rotat'. Did you mean 'rotate'"):
        perturbation_sequence(small, "rotat")
    with pytest.raises(ValueError, match="^unknown perturbation 'fog': an ImageNet-C corruption, which "
                                         "corrupt makes$"):
        perturbation_sequence(small, "fog")
    with pytest.raises(ValueError, match="Did you mean 'gaussian_noise'"):
        perturbation_sequence(small, "gausian_noise")
    with pytest.raises(ValueError, match="Did you mean 'motion_blur'"):
        frame_count("motionblur")
    with pytest.raises(ValueError, match=r"`difficulty` should be 1..3. Got 4"):
        perturbation_sequence(small, "rotate", 4)
    with pytest.raises(ValueError, match=r"`difficulty` should be 1..3. Got 0"):
        perturbation_sequence(small, "gaussian_noise", 0)
    with pytest.raises(TypeError, match="`difficulty` should be an int"):
        perturbation_sequence(small, "rotate", True)
    with pytest.raises(ValueError, match="should be square"):
        perturbation_sequence(torch.rand(1, 3, 64, 96), "rotate")
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        perturbation_sequence(small[0], "rotate")
    with pytest.raises(TypeError, match="float tensor"):
        perturbation_sequence((small * 255).to(torch.uint8), "rotate")
    with pytest.raises(ValueError,
                       match=r"`frames` should hold indices 0..30 \(rotate has 31 frames\). Got 31"):
        perturbation_sequence(small, "rotate", frames=[0, 31])
    with pytest.raises(ValueError, match="0..40"):
        perturbation_sequence(small, "translate", frames=[-1])
    with pytest.raises(TypeError, match="`frames` should hold ints"):
        perturbation_sequence(small, "rotate", frames=[1.5])
    with pytest.raises(ValueError, match=r"`crop_size` should be 1..73"):
        perturbation_sequence(small, "rotate", crop_size=80)
    with pytest.raises(ValueError, match="not both"):
        perturbation_sequence(small, "snow", seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="one entry per image"):
        perturbation_sequence(small, "snow", seed=[1, 2, 3])
    with pytest.raises(TypeError, match="`quantize` should be a bool"):
        perturbation_sequence(small, "rotate", quantize=1)


# --------------------------------------------------------------------------------------
# the original formulas, re-computed independently on real photographs (96 px -> 84)


def test_brightness_matches_scikit_image(photos96):
    import skimage.color as skcolor

    squares, x = photos96
    ours = perturbation_sequence(x, "brightness")
    for k, square in enumerate(squares):
        crop = np.array(_center_crop(square, 84), copy=True) / 255.0
        for i in (0, 7, 15, 22, 30):
            hsv = skcolor.rgb2hsv(crop)
            hsv[:, :, 2] = np.clip(hsv[:, :, 2] + (i - 15) * 2 / 100.0, 0, 1)
            expected = np.uint8(skcolor.hsv2rgb(hsv) * 255).astype(np.float64)
            # bit for bit: the same float64 operations, and the same truncations (even the
            # round trip at i = 15 drops some values by a level in the original)
            assert np.array_equal(_frames_uint8(ours[k, i : i + 1])[0], expected), (k, i)


@pytest.mark.parametrize("name", ["rotate", "shear", "scale"])
def test_affine_matches_pil(photos96, name):
    squares, x = photos96
    ours = perturbation_sequence(x, name)
    for k, square in enumerate(squares):
        for i in (0, 4, 13, 24, 30):
            params = {"rotate": {"angle": i - 15}, "shear": {"shear": i - 15},
                      "scale": {"scale": (i * 2.5 + 40) / 100.0}}[name]
            expected = np.array(_center_crop(_old_affine(square, **params), 84)).astype(np.float64)
            diff = np.abs(_frames_uint8(ours[k, i : i + 1])[0] - expected)
            # PIL's float64 arithmetic in PIL's order: equal here; the tolerance leaves room for
            # a compiler fusing PIL's multiply-adds (a level at a handful of values)
            assert diff[4:-4, 4:-4].mean() < 1 / 255, (k, i)
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (k, i)


def test_translate_matches_pil_exactly(photos96):
    squares, x = photos96
    ours = perturbation_sequence(x, "translate")
    for k, square in enumerate(squares):
        for i in (0, 5, 20, 33, 40):
            expected = np.array(_center_crop(_old_affine(square, translate=(i - 20, 0), bilinear=False), 84))
            assert np.array_equal(_frames_uint8(ours[k, i : i + 1])[0], expected.astype(np.float64))


def test_zoom_blur_matches_pil_running_mean(photos96):
    squares, x = photos96
    ours = perturbation_sequence(x, "zoom_blur", frames=[0, 1, 6, 30])
    square = squares[1]
    avg = torch.from_numpy(np.array(_center_crop(square, 84))).permute(2, 0, 1).float() / 255
    expected = {0: (avg * 255).byte()}
    for i in range(1, 31):
        zoom = _center_crop(_old_affine(square, scale=1 + 0.004 * i), 84)
        avg += torch.from_numpy(np.array(zoom)).permute(2, 0, 1).float() / 255
        expected[i] = (avg / (i + 1)).mul(255).byte()  # the original's ToPILImage
    for position, i in enumerate((0, 1, 6, 30)):
        diff = ((ours[1, position] * 255).round() - expected[i].float()).abs()
        assert diff.max() <= 1 and diff.mean() < 0.01, i


def test_tilt_matches_opencv(photos96):
    from PIL import Image

    squares, x = photos96
    ours = perturbation_sequence(x, "tilt", frames=[0, 15, 30])
    for k, square in enumerate(squares):
        for position, i in enumerate((0, 15, 30)):
            expected = np.array(_center_crop(Image.fromarray(_tilt_cv2(np.array(square), i - 15)), 84))
            diff = np.abs(_frames_uint8(ours[k, position : position + 1])[0] - expected)
            # OpenCV rounds source coordinates to 1/32 px and uses 15-bit weights
            assert diff.max() <= 1 and diff.mean() < 0.01, (k, i)


def test_gaussian_blur_matches_scikit_image(photos96):
    from skimage.filters import gaussian

    squares, x = photos96
    frames = [0, 1, 10, 20, 30]
    ours = perturbation_sequence(x, "gaussian_blur", frames=frames)
    for k, square in enumerate(squares):
        crop = np.array(_center_crop(square, 84), copy=True) / 255.0
        for position, i in enumerate(frames):
            expected = np.uint8(255 * gaussian(crop, sigma=0.25 + 0.035 * i, channel_axis=-1, truncate=6.0))
            # scipy's sums in scipy's order on the same doubles: the original's bytes (before 0.7.7,
            # summed in another order, up to 0.55 % of the values a level apart at sigma .25)
            assert np.array_equal(_frames_uint8(ours[k, position : position + 1])[0], expected), (k, i)


def test_motion_blur_matches_imagecorruptions(photos96):
    try:
        from corruptions.reference import load_imagecorruptions

        ic = load_imagecorruptions()
    except ImportError:
        pytest.skip("imagecorruptions (the NumPy stand-in for ImageMagick) is not installed")
    squares, x = photos96
    ours = perturbation_sequence(x, "motion_blur", frames=[0, 20])
    crop = np.array(_center_crop(squares[0], 84))
    for position, i in enumerate((0, 20)):
        blurred = ic._motion_blur(crop, radius=10, sigma=3, angle=(i - 30) * 4)
        expected = np.clip(np.round(blurred), 0, 255)  # ImageMagick writes an 8-bit PNG
        diff = np.abs(_frames_uint8(ours[0, position : position + 1])[0] - expected)
        assert diff.max() <= 1 and diff.mean() < 0.01


def test_snow_matches_the_original_formula_with_the_same_layer(photos96):
    import cv2
    from scipy.ndimage import zoom as scizoom

    from corruptions._rng import ImageRandom

    try:
        from corruptions.reference import load_imagecorruptions

        ic = load_imagecorruptions()
    except ImportError:
        pytest.skip("imagecorruptions (the NumPy stand-in for ImageMagick) is not installed")
    squares, x = photos96
    ours = perturbation_sequence(x[:1], "snow", seed=[123], frames=[0, 17])
    layer = ImageRandom(1, "cpu", seeds=[123]).normal(1, 84, 84, mean=0.05, std=0.3)[0, 0].double().numpy()
    crop_h = int(np.ceil(84 / 3))
    top = (84 - crop_h) // 2
    layer = scizoom(layer[top : top + crop_h, top : top + crop_h], 3, order=1)
    trim = (layer.shape[0] - 84) // 2
    layer = layer[trim : trim + 84, trim : trim + 84]
    layer[layer < 0.5] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)
    image = np.array(_center_crop(squares[0], 84)) / 255.0
    grey = cv2.cvtColor(np.float32(image), cv2.COLOR_RGB2GRAY).reshape(84, 84, 1)
    base = 0.85 * image + (1 - 0.85) * np.maximum(image, grey * 1.5 + 0.5)
    for position, i in enumerate((0, 17)):
        snow = np.clip(np.round(ic._motion_blur(layer, radius=14, sigma=4, angle=i * 4 - 150)), 0, 255)
        snow = (snow / 255.0)[..., None]
        expected = np.uint8(np.clip(base + snow + np.rot90(snow, k=2), 0, 1) * 255)
        diff = np.abs(_frames_uint8(ours[0, position : position + 1])[0] - expected)
        assert diff.max() <= 1 and diff.mean() < 0.01


def test_spatter_matches_opencv_pipeline_with_the_same_layer(photos96):
    from skimage.filters import gaussian

    from corruptions._rng import ImageRandom

    squares, x = photos96
    frames = [0, 1, 9]
    ours = perturbation_sequence(x[2:], "spatter", seed=[77], frames=frames)
    liquid = ImageRandom(1, "cpu", seeds=[77]).normal(1, 84, 84, mean=0.65, std=0.27)[0, 0].double().numpy()
    liquid = gaussian(liquid, sigma=3.7)
    liquid[liquid < 0.69] = 0
    image = np.array(_center_crop(squares[2], 84), dtype=np.float32) / 255.0
    for i in range(max(frames) + 1):
        if i in frames:
            expected = water_frame(image, liquid)
            diff = np.abs(_frames_uint8(ours[0, frames.index(i) : frames.index(i) + 1])[0] - expected)
            assert diff.max() <= 2 and diff.mean() < 0.01, i
        liquid = np.apply_along_axis(lambda col: np.convolve(col, [0.05, 0.1, 0.15, 0.7], mode="same"),
                                     0, liquid)


@pytest.mark.parametrize(("name", "difficulty", "sigma"), [
    ("gaussian_noise", 1, 0.03), ("gaussian_noise", 2, 0.05), ("gaussian_noise", 3, 0.08),
    ("speckle_noise", 1, 0.05 * 0.5), ("speckle_noise", 3, 0.15 * 0.5),
    ("shot_noise", 1, math.sqrt(0.5 / 300)), ("shot_noise", 3, math.sqrt(0.5 / 60)),
])
def test_noise_statistics_on_mid_grey(name, difficulty, sigma):
    # std of (frame - clean) over 30 frames x 3 x 84 x 84 values of a mid-grey image: sigma
    # (speckle: x sigma, shot: sqrt(x / L)), plus the uint8 truncation (a 1/255-wide uniform
    # error: +0.3 % at sigma .03) -> within 4 %; the mean is shifted by the truncation only
    x = torch.full((1, 3, 96, 96), 128 / 255)
    video = perturbation_sequence(x, name, difficulty, seed=0)
    noise = video[:, 1:] - video[:, :1]
    scale = 128 / 255 / 0.5 if name != "gaussian_noise" else 1.0
    expected = sigma * math.sqrt(scale) if name == "shot_noise" else sigma * scale
    assert abs(noise.std().item() / expected - 1) < 0.04
    assert abs(noise.mean().item() + 0.5 / 255) < 0.1 * expected


# --------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(small, name):
    gpu = perturbation_sequence(small.cuda(), name, seed=[1, 2])
    assert gpu.device.type == "cuda" and gpu.shape == (2, frame_count(name), 3, 64, 64)
    if name not in RANDOM:  # random streams differ between CPU and CUDA generators
        cpu = perturbation_sequence(small, name)
        assert (gpu.cpu() - cpu).abs().max() <= 1 / 255 + 1e-6


# --------------------------------------------------------------------------------------
# gcp-robust bench perturbations


def _invoke(*args):
    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


def test_bench_perturbations_cli():
    result = _invoke("bench", "perturbations", "--help")
    assert result.exit_code == 0 and "--model-batch-size" in result.output
    result = _invoke("bench", "perturbations", "--device", "cpu", "--model", "demo-gap",
                     "--perturbations", "rotate,gaussian_noise", "--batch-size", "1",
                     "--repeats", "1", "--model-batch-size", "4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["size"] == 73 and report["settings"]["crop_size"] == 64
    assert [r["perturbation"] for r in report["rows"]] == ["rotate", "gaussian_noise"]
    assert all(r["frames_per_second"] > 0 and r["frames"] == 31 for r in report["rows"])
    assert report["model"]["name"] == "demo-gap" and report["model"]["frames_per_second"] > 0
    # the model is timed in turns with each sequence; its own figure is its best of those
    beside = [r["frames_per_second"] / r["vs_model"] for r in report["rows"]]
    assert report["model"]["frames_per_second"] == pytest.approx(max(beside))
    assert all("beside_seconds" not in r for r in report["rows"])
    result = _invoke("bench", "perturbations", "--perturbations", "rotat")
    # one line, as bench corruptions' (it printed the usage block above "Invalid value")
    assert result.exit_code == 2
    assert result.output == "Error: unknown perturbation 'rotat'. Did you mean 'rotate'?\n"
    result = _invoke("bench", "perturbations", "--model", "resnet5-gap", "--perturbations", "rotate")
    assert result.exit_code != 0 and "unknown model" in result.output
