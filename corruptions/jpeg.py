"""A JPEG round trip in integer tensor arithmetic: libjpeg-turbo's numbers, on any device.

``roundtrip(pixels, quality)`` returns what PIL's ``Image.save(f, "JPEG", quality=q)``
followed by ``Image.open(f)`` returns (and torchvision's CPU ``encode_jpeg`` /
``decode_jpeg``, the same libjpeg-turbo with the same defaults): baseline JPEG, 4:2:0
chroma subsampling, the "islow" integer DCT, fancy (triangular) chroma upsampling. The
entropy coding is lossless, so a round trip does not need it; every lossy stage is
computed here with libjpeg-turbo's fixed-point arithmetic, so the output is the same, bit
for bit (``tests/test_jpeg.py`` checks it against PIL for odd sizes, every quality and
worst-case content).

``corruptions.digital.jpeg_roundtrip`` uses it on CUDA (and any device but the CPU, where
libjpeg-turbo itself is faster, and MPS, which lacks integer shifts before torch 2.5). Why not
nvJPEG on CUDA: torchvision's CUDA encoder fixes 4:4:4 sampling (not the protocol's
4:2:0), waits for the device twice per image, and its bytes must come back to the host for
the decoder. This file keeps the whole round trip on the images' device, in about 340
elementwise kernels per batch (the three components' blocks are transformed together),
with no host read.

The stages (libjpeg-turbo file in brackets):
1. RGB -> YCbCr with 16-bit fixed-point coefficients (jccolor.c);
2. edge padding by replication, chroma downsampled 2x2 with the alternating 1, 2 rounding
   bias (jcsample.c, jcprepct.c);
3. forward islow DCT, 13-bit constants, 2 extra bits in the first pass (jfdctint.c);
4. quantization: division by 8 q rounding half away from zero (jcdctmgr.c's reciprocal
   method gives exactly this for every coefficient and divisor), with the IJG tables
   scaled by ``quality`` and capped at 255 (jcparam.c);
5. dequantization and inverse islow DCT, clamped to 0..255 as the SIMD IDCT saturates
   (jidctint.c and its SIMD versions);
6. chroma upsampled with the triangular filter, the nearer sample weighted 3 and the
   farther 1, edges replicated (jdsample.c, jdmainct.c);
7. YCbCr -> RGB with libjpeg's tables, clamped to 0..255 (jdcolor.c).
"""

from __future__ import annotations

import torch

from corruptions._ops import device_constant

__all__ = ["quant_tables", "roundtrip"]

#: ITU-T T.81 Annex K tables K.1 (luminance) and K.2 (chrominance), natural order
_BASE_TABLES = (
    (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
    (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
     24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
     99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
     99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99),
)  # fmt: skip


def _fix(x: float, bits: int) -> int:
    """libjpeg's FIX(x): x in fixed point with ``bits`` fraction bits, rounded."""
    return int(x * (1 << bits) + 0.5)


def _descale(x: torch.Tensor, n: int) -> torch.Tensor:
    """Right shift by ``n`` rounding half up (libjpeg's DESCALE; ``>>`` floors)."""
    return (x + (1 << (n - 1))) >> n


# islow DCT constants (13 fraction bits) and the first pass's extra precision
_CONST_BITS, _PASS1_BITS = 13, 2
(_F0298, _F0390, _F0541, _F0765, _F0899, _F1175,
 _F1501, _F1847, _F1961, _F2053, _F2562, _F3072) = (
    _fix(c, _CONST_BITS) for c in (
        0.298631336, 0.390180644, 0.541196100, 0.765366865, 0.899976223, 1.175875602,
        1.501321110, 1.847759065, 1.961570560, 2.053119869, 2.562915447, 3.072711026))  # fmt: skip

# colour conversion (16 fraction bits)
_SCALE_BITS = 16
_HALF = 1 << (_SCALE_BITS - 1)
_CENTER = 128


def quant_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The luminance and chrominance quantization tables (natural order) that libjpeg's
    ``jpeg_set_quality(quality, force_baseline=TRUE)`` installs.

    Example:
        >>> quant_tables(50)[0][:4], quant_tables(100)[1][:4], quant_tables(1)[0][0]
        ((16, 11, 10, 16), (1, 1, 1, 1), 255)
    """
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple(
        tuple(min(max((base * scale + 50) // 100, 1), 255) for base in table)
        for table in _BASE_TABLES
    )


# --------------------------------------------------------------------------------------
# the islow DCT pair; a pass works on the 8 samples along ``dim`` of every block


def _butterfly_odd(t0, t1, t2, t3):
    """The shared odd part of both islow transforms (the LL&M rotation), in libjpeg's
    order of operations; returns (t0, t1, t2, t3) after the rotation."""
    z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
    z5 = (z3 + z4) * _F1175
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    return t0 * _F0298 + z1 + z3, t1 * _F2053 + z2 + z4, t2 * _F3072 + z2 + z3, t3 * _F1501 + z1 + z4


def _fdct_pass(x: torch.Tensor, dim: int, first: bool) -> torch.Tensor:
    """One pass of jpeg_fdct_islow over the blocks' rows (``first``: dim 2) or columns."""
    d = x.unbind(dim)
    t0, t7 = d[0] + d[7], d[0] - d[7]
    t1, t6 = d[1] + d[6], d[1] - d[6]
    t2, t5 = d[2] + d[5], d[2] - d[5]
    t3, t4 = d[3] + d[4], d[3] - d[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    # the first pass keeps PASS1_BITS more bits; the second removes them
    shift = _CONST_BITS - _PASS1_BITS if first else _CONST_BITS + _PASS1_BITS
    if first:
        out0, out4 = (t10 + t11) << _PASS1_BITS, (t10 - t11) << _PASS1_BITS
    else:
        out0, out4 = _descale(t10 + t11, _PASS1_BITS), _descale(t10 - t11, _PASS1_BITS)
    z1 = (t12 + t13) * _F0541
    out2 = _descale(z1 + t13 * _F0765, shift)
    out6 = _descale(z1 + t12 * -_F1847, shift)
    o7, o5, o3, o1 = (_descale(v, shift) for v in _butterfly_odd(t4, t5, t6, t7))
    return torch.stack((out0, o1, out2, o3, out4, o5, out6, o7), dim)


def _idct_pass(x: torch.Tensor, dim: int, first: bool) -> torch.Tensor:
    """One pass of jpeg_idct_islow over the dequantized blocks' columns (``first``: dim 1)
    or rows."""
    d = x.unbind(dim)
    z1 = (d[2] + d[6]) * _F0541
    t2, t3 = z1 + d[6] * -_F1847, z1 + d[2] * _F0765
    t0, t1 = (d[0] + d[4]) << _CONST_BITS, (d[0] - d[4]) << _CONST_BITS
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    o0, o1, o2, o3 = _butterfly_odd(d[7], d[5], d[3], d[1])  # libjpeg's tmp0..tmp3
    # the second pass also removes the DCT's factor 8 (3 bits)
    shift = _CONST_BITS - _PASS1_BITS if first else _CONST_BITS + _PASS1_BITS + 3
    out = (t10 + o3, t11 + o2, t12 + o1, t13 + o0, t13 - o0, t12 - o1, t11 - o2, t10 - o3)
    return torch.stack([_descale(v, shift) for v in out], dim)


def _dequantized(blocks: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(N, 8, 8) centred samples -> their DCT coefficients quantized with ``q`` (broadcast to
    the blocks) and multiplied back, as the decoder sees them."""
    coef = _fdct_pass(_fdct_pass(blocks, 2, True), 1, False)
    # jcdctmgr: divide by 8 q, rounding half away from zero
    return torch.sign(coef) * ((coef.abs() + 4 * q) // (8 * q)) * q


def _idct(coef: torch.Tensor) -> torch.Tensor:
    """(N, 8, 8) dequantized coefficients -> centred samples, before the range limit."""
    return _idct_pass(_idct_pass(coef, 1, True), 2, False)


def _range_limit(v: torch.Tensor) -> torch.Tensor:
    """The IDCT's output v + 128 clamped to 0..255. (libjpeg's C decoder indexes a table with
    ``v & 1023``, which wraps around for |v| >= 512; libjpeg-turbo's SIMD IDCT, which PIL and
    torchvision run, saturates instead, and outputs that far out do occur at low qualities:
    tests/test_jpeg.py has two such blocks.)"""
    return (v + _CENTER).clamp_(0, 255)


def _lossy(planes: list[torch.Tensor], tables: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """The components' trip through the DCT: (B, H, W) samples 0..255 (H, W multiples of 8)
    to the decoder's samples, int32. The blocks of all components are transformed together
    (one set of kernels), each quantized with its component's table."""
    blocks = [p.view(p.shape[0], p.shape[1] // 8, 8, p.shape[2] // 8, 8).transpose(2, 3).reshape(-1, 8, 8)
              for p in planes]
    counts = [len(b) for b in blocks]
    q = torch.cat([device_constant(t, torch.int32, b.device).view(1, 8, 8).expand(len(b), 8, 8)
                   for t, b in zip(tables, blocks)])
    samples = _range_limit(_idct(_dequantized(torch.cat(blocks) - _CENTER, q)))
    return [s.view(p.shape[0], p.shape[1] // 8, p.shape[2] // 8, 8, 8).transpose(2, 3).reshape(p.shape)
            for s, p in zip(samples.split(counts), planes)]


# --------------------------------------------------------------------------------------
# colour, sampling and padding


def _to_ycc(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(1)
    cbcr_offset = (_CENTER << _SCALE_BITS) + _HALF - 1  # rounds below .5: never 256
    y = (_fix(0.299, 16) * r + _fix(0.587, 16) * g + _fix(0.114, 16) * b + _HALF) >> _SCALE_BITS
    cb = (-_fix(0.16874, 16) * r - _fix(0.33126, 16) * g + _fix(0.5, 16) * b + cbcr_offset) >> _SCALE_BITS
    cr = (_fix(0.5, 16) * r - _fix(0.41869, 16) * g - _fix(0.08131, 16) * b + cbcr_offset) >> _SCALE_BITS
    return torch.stack((y, cb, cr), 1)


def _to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor) -> torch.Tensor:
    cb, cr = cb - _CENTER, cr - _CENTER
    r = y + ((_fix(1.402, 16) * cr + _HALF) >> _SCALE_BITS)
    g = y + ((-_fix(0.34414, 16) * cb - _fix(0.71414, 16) * cr + _HALF) >> _SCALE_BITS)
    b = y + ((_fix(1.772, 16) * cb + _HALF) >> _SCALE_BITS)
    return torch.stack((r, g, b), 1).clamp_(0, 255)


def _pad_edges(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Replicate the last row and column of (B, h, w) up to (B, height, width)."""
    pad_h, pad_w = height - x.shape[-2], width - x.shape[-1]
    if pad_h == pad_w == 0:
        return x
    # (replicate padding has no integer kernel: index the rows and columns)
    rows = torch.arange(height, device=x.device).clamp_(max=x.shape[-2] - 1)
    cols = torch.arange(width, device=x.device).clamp_(max=x.shape[-1] - 1)
    return x[:, rows][:, :, cols]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _downsample(c: torch.Tensor) -> torch.Tensor:
    """jcsample's h2v2: (B, H, W) -> (B, ceil(H/2), 8 ceil(W/16)), each output the sum of
    its 2x2 inputs plus a bias alternating 1, 2 along the row, shifted right by 2."""
    height, width = c.shape[-2:]
    c = _pad_edges(c, _round_up(height, 2), _round_up(width, 16))
    batch, h2, w2 = c.shape
    sums = c.view(batch, h2 // 2, 2, w2 // 2, 2).sum((2, 4), dtype=torch.int32)
    bias = device_constant(tuple(1 + i % 2 for i in range(w2 // 2)), torch.int32, c.device)
    return (sums + bias) >> 2


def _upsample(c: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """jdsample's h2v2 fancy upsampling of the (B, ceil(H/2), ceil(W/2)) decoded chroma
    to (B, H, W): vertical 3:1 sums with the nearer row, then 3:1 between columns with
    rounding +8 (left output) and +7 (right); rows and columns beyond the edges repeat.
    Planes 1 or 2 samples wide are repeated 2x2 instead (libjpeg's ``h2v2_upsample``)."""
    if c.shape[-1] <= 2:
        return c.repeat_interleave(2, -2).repeat_interleave(2, -1)[:, :height, :width]
    rows = torch.cat((c[:, :1], c, c[:, -1:]), 1)
    above = 3 * c + rows[:, :-2]  # output rows 2i: the farther row is the one above
    below = 3 * c + rows[:, 2:]  # output rows 2i + 1
    sums = torch.stack((above, below), 2).flatten(1, 2)  # (B, 2 h, w) column sums
    cols = torch.cat((sums[..., :1], sums, sums[..., -1:]), -1)
    left = (3 * sums + cols[..., :-2] + 8) >> 4
    right = (3 * sums + cols[..., 2:] + 7) >> 4
    out = torch.stack((left, right), -1).flatten(-2)
    return out[:, :height, :width]


# --------------------------------------------------------------------------------------


def roundtrip(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    """(B, 3, H, W) uint8 images through JPEG at ``quality`` (1..100) and back, on their
    device: libjpeg-turbo's baseline 4:2:0 islow round trip, bit for bit.

    Example:
        >>> x = torch.full((1, 3, 16, 16), 200, dtype=torch.uint8)
        >>> roundtrip(x, 85).unique().tolist()
        [200]
    """
    if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) uint8 images, got {tuple(pixels.shape)} {pixels.dtype}")
    luma_table, chroma_table = quant_tables(quality)
    batch, _, height, width = pixels.shape
    ycc = _to_ycc(pixels.int())
    y = _pad_edges(ycc[:, 0], _round_up(height, 8), _round_up(width, 8))
    chroma = [_downsample(c) for c in ycc[:, 1:].unbind(1)]
    chroma = [_pad_edges(c, _round_up(c.shape[-2], 8), c.shape[-1]) for c in chroma]
    y, cb, cr = _lossy([y, *chroma], [luma_table, chroma_table, chroma_table])
    small = ((height + 1) // 2, (width + 1) // 2)
    cb, cr = (_upsample(c[:, : small[0], : small[1]], height, width) for c in (cb, cr))
    return _to_rgb(y[:, :height, :width], cb, cr).to(torch.uint8)
