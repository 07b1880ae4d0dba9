"""corruptions.jpeg: the JPEG round trip in tensor arithmetic against PIL's libjpeg-turbo.

The reference is the protocol's own codec: ``Image.save(f, "JPEG", quality=q)`` and
``Image.open(f)``, as imagecorruptions' jpeg_compression and the released files' storage do.
Equality is exact (every pixel, every channel): any difference in a rounding step, a table,
an edge rule or the range limit shows on some size, quality or content below.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from corruptions import corrupt, storage_roundtrip
from corruptions.digital import jpeg_roundtrip
from corruptions.jpeg import quant_tables, roundtrip


def pil_roundtrip(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    """(B, 3, H, W) uint8 through PIL's JPEG save and open."""
    out = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=quality)
        out.append(torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1))
    return torch.stack(out)


def _random(rng: np.random.Generator, batch: int, height: int, width: int) -> torch.Tensor:
    return torch.from_numpy(rng.integers(0, 256, (batch, 3, height, width), dtype=np.uint8))


def _differing(a: torch.Tensor, b: torch.Tensor) -> str:
    where = (a != b).nonzero()
    return f"{len(where)} values differ, first at {where[:3].tolist()}"


@pytest.fixture(scope="module")
def photos224() -> torch.Tensor:
    from robustbench_gcp.bench.photos import photos

    return (photos(3, 224) * 255).round().to(torch.uint8)


def test_quant_tables_are_the_ones_pil_writes():
    for quality in (1, 2, 7, 10, 15, 18, 25, 49, 50, 51, 85, 99, 100):
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "JPEG", quality=quality)
        written = Image.open(buffer).quantization  # natural order
        assert quant_tables(quality) == (tuple(written[0]), tuple(written[1])), quality


@pytest.mark.parametrize("height", [1, 2, 3, 5, 8, 9, 15, 16, 17, 23])
def test_every_small_size_equals_pil(height):
    """Edge padding, the 2x2 downsampling bias, the MCU and block edges, and the
    upsampler's edges and its plain repetition for chroma 1 or 2 samples wide."""
    rng = np.random.default_rng(height)
    for width in range(1, 26):
        x = _random(rng, 1, height, width)
        for quality in (20, 90):
            expected = pil_roundtrip(x, quality)
            got = roundtrip(x, quality)
            assert torch.equal(got, expected), f"{height}x{width} q{quality}: {_differing(got, expected)}"


def test_every_quality_equals_pil():
    x = _random(np.random.default_rng(0), 2, 37, 53)
    for quality in range(1, 101):
        assert torch.equal(roundtrip(x, quality), pil_roundtrip(x, quality)), quality


def test_random_sizes_qualities_and_content_equal_pil():
    """A seeded mix: sizes 1..70, qualities 1..100, batches of 1..3, five kinds of content."""
    rng = np.random.default_rng(2026)
    for case in range(40):
        batch, height, width = int(rng.integers(1, 4)), *(int(v) for v in rng.integers(1, 71, 2))
        quality = int(rng.integers(1, 101))
        kind = case % 5
        if kind == 0:  # noise
            x = _random(rng, batch, height, width)
        elif kind == 1:  # binary noise: the largest coefficients
            x = _random(rng, batch, height, width) // 128 * 255
        elif kind == 2:  # saturated colours, one per image
            colours = torch.from_numpy(rng.integers(0, 2, (batch, 3, 1, 1)) * 255).to(torch.uint8)
            x = colours.expand(batch, 3, height, width).contiguous()
        elif kind == 3:  # gradients
            cols = torch.linspace(0, 255, width).round().expand(height, width)
            rows = torch.linspace(0, 255, height).round()[:, None].expand(height, width)
            x = torch.stack([cols, cols.flip(1), rows]).to(torch.uint8).expand(batch, 3, height, width)
            x = x.contiguous()
        else:  # smooth photograph-like content with noise
            base = torch.from_numpy(rng.integers(0, 256, (batch, 3, 4, 4)).astype(np.float32))
            smooth = torch.nn.functional.interpolate(base, size=(height, width), mode="bilinear")
            x = (smooth + torch.from_numpy(rng.normal(0, 8, smooth.shape).astype(np.float32)))
            x = x.round().clamp(0, 255).to(torch.uint8)
        got, expected = roundtrip(x, quality), pil_roundtrip(x, quality)
        assert torch.equal(got, expected), f"case {case}: {batch}x{height}x{width} q{quality}: " + \
            _differing(got, expected)


def test_flat_colours_cover_the_colour_tables():
    """8192 random colours, each filling a 16 x 16 MCU: the YCbCr values range over the whole
    tables of both colour conversions (smooth content keeps its chroma near grey), and a
    coefficient one unit off in 16-bit fixed point changes about 1 colour in 500."""
    rng = np.random.default_rng(7)
    colours = torch.from_numpy(rng.integers(0, 256, (2, 3, 64, 64), dtype=np.uint8))
    x = colours.repeat_interleave(16, -2).repeat_interleave(16, -1)  # (2, 3, 1024, 1024)
    for quality in (100, 90):
        got, expected = roundtrip(x, quality), pil_roundtrip(x, quality)
        assert torch.equal(got, expected), f"q{quality}: {_differing(got, expected)}"


def test_worst_case_content_equals_pil():
    """Full-swing patterns: the largest coefficients (int32 range), ringing past 0..255
    and quality 100's unit divisors."""
    rows, cols = torch.meshgrid(torch.arange(48), torch.arange(40), indexing="ij")
    patterns = [(rows + cols) % 2, cols % 2, rows % 2, (rows // 8 + cols // 8) % 2, cols > 20]
    planes = [p.to(torch.uint8) * 255 for p in patterns]
    x = torch.stack([torch.stack((p, 255 - p, p)) for p in planes])
    for quality in (1, 5, 25, 50, 75, 95, 100):
        got, expected = roundtrip(x, quality), pil_roundtrip(x, quality)
        assert torch.equal(got, expected), f"q{quality}: {_differing(got, expected)}"


#: 8x8 grey blocks whose IDCT output reaches +-512 at their quality (found by a search): the
#: range limit must saturate there, as libjpeg-turbo's SIMD IDCT does, not wrap around as the C
#: decoder's table would
FAR_OUT_BLOCKS = {
    15: [[255, 0, 0, 255, 42, 222, 18, 0], [0, 255, 0, 0, 255, 255, 255, 0],
         [255, 255, 169, 0, 93, 136, 255, 255], [0, 0, 0, 0, 0, 215, 203, 0],
         [239, 190, 0, 0, 116, 255, 83, 255], [0, 255, 0, 234, 0, 0, 149, 223],
         [255, 255, 219, 0, 230, 0, 8, 0], [0, 255, 172, 172, 48, 0, 255, 255]],
    7: [[0, 0, 253, 255, 1, 255, 0, 0], [0, 0, 0, 0, 0, 0, 0, 255],
        [79, 255, 221, 255, 42, 213, 244, 0], [0, 255, 0, 255, 255, 255, 255, 0],
        [0, 255, 0, 0, 255, 158, 0, 255], [255, 255, 0, 0, 0, 255, 255, 45],
        [0, 255, 140, 0, 0, 0, 255, 53], [0, 0, 255, 255, 234, 255, 255, 0]],
}


@pytest.mark.parametrize("quality", sorted(FAR_OUT_BLOCKS))
def test_idct_outputs_far_out_of_range_saturate_as_pil(quality):
    from corruptions import jpeg as module

    x = torch.tensor(FAR_OUT_BLOCKS[quality], dtype=torch.uint8).expand(1, 3, 8, 8).contiguous()
    table = torch.tensor(quant_tables(quality)[0], dtype=torch.int32).view(1, 8, 8)
    before_limit = module._idct(module._dequantized(x[:, 0].int() - 128, table))
    assert before_limit.abs().max() >= 512  # the block still reaches that far
    got, expected = roundtrip(x, quality), pil_roundtrip(x, quality)
    assert torch.equal(got, expected), _differing(got, expected)


@pytest.mark.parametrize("quality", [85, 25, 18, 15, 10, 7])  # storage; ImageNet-C's five
def test_photos_equal_pil_and_the_cpu_codec(photos224, quality):
    expected = pil_roundtrip(photos224, quality)
    assert torch.equal(roundtrip(photos224, quality), expected)
    assert torch.equal(jpeg_roundtrip(photos224, quality), expected)  # torchvision's libjpeg


def test_a_batch_is_its_images_coded_one_by_one(photos224):
    together = roundtrip(photos224[:, :, :61, :90], 30)
    for i in range(photos224.shape[0]):
        assert torch.equal(together[i : i + 1], roundtrip(photos224[i : i + 1, :, :61, :90], 30))


def test_jpeg_compression_and_storage_use_it_off_the_cpu(photos224, monkeypatch):
    """Off the CPU (here the "meta" device, where any read of a value fails) both JPEG users
    take the tensor path and never read the device."""
    import corruptions.jpeg as jpeg_module

    calls = []
    original = jpeg_module.roundtrip

    def counted(pixels, quality):
        calls.append((pixels.device.type, quality))
        return original(pixels, quality)

    monkeypatch.setattr(jpeg_module, "roundtrip", counted)
    x = (photos224[:2].float() / 255).to("meta")
    assert corrupt(x, "jpeg_compression", 5).device.type == "meta"
    assert storage_roundtrip(x).device.type == "meta"
    assert calls == [("meta", 7), ("meta", 85)]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        roundtrip(torch.zeros(1, 3, 8, 8), 85)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        roundtrip(torch.zeros(3, 8, 8, dtype=torch.uint8), 85)


# --------------------------------------------------------------------------------------
# gcp-robust bench jpeg


def test_bench_jpeg_times_both_codecs_and_finds_them_identical():
    import json

    from click.testing import CliRunner

    from robustbench_gcp.cli import main

    result = CliRunner().invoke(main, ["bench", "jpeg", "--batch-size", "2", "--size", "40",
                                       "--qualities", "85,7,85", "--repeats", "1", "--json"])  # 85 once
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [(r["codec"], r["quality"]) for r in rows] == [
        ("libjpeg", 85), ("tensor", 85), ("libjpeg", 7), ("tensor", 7)]
    assert all(r["identical"] and r["mad_levels"] == 0 and r["ms_per_image"] > 0 for r in rows)
    assert all(r["vs_libjpeg"] == 1.0 for r in rows if r["codec"] == "libjpeg")


def test_bench_jpeg_refuses_bad_options():
    from click.testing import CliRunner

    from robustbench_gcp.bench.jpeg_speed import bench_jpeg
    from robustbench_gcp.cli import main
    from robustbench_gcp.errors import ConfigError

    for qualities in ("0", "85,101", "high", ""):
        result = CliRunner().invoke(main, ["bench", "jpeg", "--qualities", qualities])
        assert result.exit_code == 2 and "--qualities" in result.output, result.output
    with pytest.raises(ConfigError, match="qualities"):
        bench_jpeg("cpu", qualities=(85, True))
    with pytest.raises(ConfigError, match="batch_size"):
        bench_jpeg("cpu", batch_size=0)


def test_from_uint8_divides_uint8_only():
    from corruptions import from_uint8

    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(from_uint8(levels), levels.float() / 255)
    for wrong, got in ((torch.ones(2), "a torch.float32 tensor"), (np.ones(2, np.uint8), "ndarray")):
        with pytest.raises(TypeError, match=f"should be a uint8 tensor\\. Got {got}"):
            from_uint8(wrong)  # a float tensor was divided by 255 a second time, without a word
    for dtype in ("float32", torch.int32):  # "Invalid device string: 'float32'"; a cast error
        with pytest.raises(TypeError, match="`dtype` should be a floating torch.dtype"):
            from_uint8(levels, dtype)
