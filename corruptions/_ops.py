"""Building blocks: separable filters as banded matrices, FFT convolution, resampling.

Separable linear filters along one axis (Gaussian blur with any border mode,
PIL's BOX resampling, the smoothing of elastic_transform's displacement field)
are (n_out, n_in) matrices applied with a banded matrix product: exact for
every border mode and kernel size, and fast on CPU (BLAS) and GPU alike, where
small-channel ``conv2d`` is slow.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------
# the entry points' input and output (corrupt, sample_parameters, perturbation_sequence)


def work_images(images: torch.Tensor) -> torch.Tensor:
    """The images as the corruptions compute on them: detached, float32 (float64 stays
    float64) and contiguous (B, 3, H, W).

    Normalizing the layout once here makes channels-last, permuted, sliced and expanded
    inputs give exactly the numbers of the same images stored contiguously (the
    reductions and kernels then run in one order). Returns ``images`` itself when it is
    already all of these: callers never write into the result.
    """
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    # (not ``.to(dtype, memory_format=torch.contiguous_format)``: with the dtype unchanged,
    # torch returns a sliced tensor such as x[..., ::2, ::2] as it is)
    return images.detach().to(dtype).contiguous()


def new_output(out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``out`` as a contiguous tensor that shares no memory with ``images`` (copied if not),
    so that callers may clip it in place and never hand back (a view of) the input."""
    if out.is_contiguous() and out.untyped_storage().data_ptr() != images.untyped_storage().data_ptr():
        return out
    return out.clone(memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------------------
# kernels and border handling


_CONSTANTS: OrderedDict = OrderedDict()
_KEPT_CONSTANTS = 256


def device_constant(values, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype, device=device)``, copied to the device once and kept:
    on CUDA a blocking host-to-device copy waits for everything queued before it. ``values``
    is a (nested) tuple of numbers. The 256 most recently used constants are kept."""
    key = (values, dtype, str(device))
    constant = _CONSTANTS.get(key)
    if constant is None:
        constant = torch.tensor(values, dtype=dtype, device=device)
        _CONSTANTS[key] = constant
        if len(_CONSTANTS) > _KEPT_CONSTANTS:
            _CONSTANTS.popitem(last=False)
    else:
        with contextlib.suppress(KeyError):  # another thread may have dropped it meanwhile
            _CONSTANTS.move_to_end(key)
    return constant


def host_to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The CPU tensor ``t`` on ``device``, copied without waiting for the work queued there.

    A plain ``t.to("cuda")`` waits for everything queued on the stream before it copies;
    here the values are pinned (a copy of ``t``: the caller may change ``t`` at once) and
    the copy is queued behind that work. For the values computed per chunk (frame
    matrices, blur taps), which :func:`device_constant` would not keep for long."""
    device = torch.device(device)
    if t.device.type != "cpu" or device.type not in ("cuda", "meta"):  # meta: the tests' device
        return t.to(device)
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def float64_device(device: torch.device) -> torch.device:
    """Where float64 work on tensors of ``device`` runs: there, but on the CPU for MPS (it has
    no float64)."""
    return device if device.type != "mps" else torch.device("cpu")


def exact_dtype(device: torch.device) -> torch.dtype:
    """float64, the type of the original's NumPy / PIL arithmetic, on ``device`` (float32 on
    MPS, which has no float64: a few truncations may then differ by a level)."""
    return torch.float32 if device.type == "mps" else torch.float64


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's Gaussian kernel: radius ``int(truncate * sigma + 0.5)``, normalized.

    ``sigma`` 0 (CIFAR-10-C's elastic_transform at severity 1) is the identity, as scipy,
    which leaves an axis with sigma <= 1e-15 unfiltered.
    """
    return torch.tensor(gaussian_weights(float(sigma), float(truncate)), dtype=torch.float64)


@functools.lru_cache(maxsize=128)
def gaussian_weights(sigma: float, truncate: float = 4.0) -> tuple[float, ...]:
    """scipy.ndimage's Gaussian weights bit for bit: its expression, NumPy's ``exp`` and its
    pairwise ``sum`` (torch's differ in the last bit for most sigmas)."""
    import numpy as np

    if sigma <= 1e-15:
        return (1.0,)
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return tuple((phi / phi.sum()).tolist())


def border_index(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source index of each position of a padded axis (positions ``-before .. n-1+after``).

    Modes (names of scipy.ndimage; pads may be longer than the axis):
        ``nearest``: repeat the edge (OpenCV BORDER_REPLICATE);
        ``reflect``: half-sample symmetric, ``d c b a | a b c d`` (OpenCV BORDER_REFLECT);
        ``mirror``: whole-sample symmetric, ``d c b | a b c d`` (OpenCV BORDER_REFLECT_101,
        torch's ``reflect`` padding).
    """
    i = torch.arange(-before, n + after, dtype=torch.int64)
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "reflect":
        m = i.remainder(2 * n)
        return torch.where(m >= n, 2 * n - 1 - m, m)
    if mode == "mirror":
        if n == 1:
            return torch.zeros_like(i)
        m = i.remainder(2 * n - 2)
        return torch.where(m >= n, 2 * n - 2 - m, m)
    raise ValueError(f"`mode` should be nearest, reflect or mirror. Got {mode!r}")


def filter_matrix(n: int, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """(n, n) float64 matrix of a centred 1-D correlation with ``kernel`` and a border mode."""
    size = kernel.numel()
    radius = size // 2
    index = border_index(n, radius, size - 1 - radius, mode)
    rows = torch.arange(n).repeat_interleave(size)
    cols = index.unfold(0, size, 1).reshape(-1)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.index_put_((rows, cols), kernel.to(torch.float64).repeat(n), accumulate=True)
    return matrix


@functools.lru_cache(maxsize=256)
def gaussian_matrix(n: int, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """(n, n) float64 matrix of scipy's ``gaussian_filter1d(sigma, mode, truncate)``."""
    return filter_matrix(n, gaussian_kernel1d(sigma, truncate), mode)


# --------------------------------------------------------------------------------------
# banded matrix products along an axis


#: held while :func:`ieee_matmul` has changed the process-wide setting (threads share it)
_MATMUL_LOCK = threading.RLock()


@contextlib.contextmanager
def ieee_matmul(x: torch.Tensor):
    """Float32 matrix products of CUDA tensors in IEEE float32 inside, whatever the caller set
    (``torch.set_float32_matmul_precision("high")``'s TF32 put spatter's values up to 89 levels,
    elastic_transform's one, from the CPU's); the caller's setting is back on exit. The setting is
    the process's: while it is changed, a lock keeps another thread from reading or restoring it."""
    matmul = torch.backends.cuda.matmul
    name, off = ("fp32_precision", "ieee") if hasattr(matmul, "fp32_precision") else ("allow_tf32", False)
    if x.is_cuda and x.dtype == torch.float32:
        with _MATMUL_LOCK:
            saved = getattr(matmul, name)
            if saved != off:
                setattr(matmul, name, off)
                try:
                    yield
                finally:
                    setattr(matmul, name, saved)
                return
    yield  # nothing to change: no lock held (other threads' products run meanwhile)


def without_autocast(function):
    """``function(images, ...)`` (or a method's ``(self, images, ...)``) with autocast off on the
    images' device: under a caller's ``torch.autocast`` the corruptions' float32 matrix products
    and convolutions ran in bfloat16 or float16 (spatter up to 189 levels off, pixelate and
    elastic_transform a few), with float32 results that did not show it."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        images = next((a for a in args if isinstance(a, torch.Tensor)), None)  # after a method's self
        kind = images.device.type if images is not None else None
        if kind is None or not torch.amp.is_autocast_available(kind) or not torch.is_autocast_enabled(kind):
            return function(*args, **kwargs)
        with torch.autocast(kind, enabled=False):
            return function(*args, **kwargs)

    return wrapper


class AxisMatrix:
    """A matrix applied along the H or W axis, split in row blocks to skip zeros.

    Block ``k`` holds output rows ``o0:o1`` and only the input columns
    ``i0:i1`` where that block has non-zeros, so a Gaussian of radius r costs
    about ``(block + 2r) / n_in`` of a dense product.
    """

    BLOCK = 32

    def __init__(self, matrix: torch.Tensor, dtype: torch.dtype, device: torch.device):
        self.shape = tuple(matrix.shape)
        n_out, n_in = self.shape
        blocks = []
        nonzero = matrix != 0
        width = 0
        for o0 in range(0, n_out, self.BLOCK):
            o1 = min(n_out, o0 + self.BLOCK)
            cols = nonzero[o0:o1].any(0).nonzero().flatten()
            if cols.numel() == 0:
                i0, i1 = 0, 1
            else:
                i0, i1 = int(cols.min()), int(cols.max()) + 1
            blocks.append((o0, o1, i0, i1))
            width += (o1 - o0) * (i1 - i0)
        self.dense = width > 0.6 * n_out * n_in or len(blocks) == 1
        self.matrix = matrix.to(device=device, dtype=dtype)
        self.matrix_t = self.matrix.t().contiguous()
        self.blocks = [
            (o0, o1, i0, i1, self.matrix[o0:o1, i0:i1].contiguous(),
             self.matrix_t[i0:i1, o0:o1].contiguous())
            for o0, o1, i0, i1 in blocks
        ]

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """``M @ x`` along dim -2: (..., n_in, W) -> (..., n_out, W)."""
        with ieee_matmul(x):
            if self.dense:
                return torch.matmul(self.matrix, x)
            out = x.new_empty((*x.shape[:-2], self.shape[0], x.shape[-1]))
            for o0, o1, i0, i1, block, _ in self.blocks:
                torch.matmul(block, x[..., i0:i1, :], out=out[..., o0:o1, :])
            return out

    def cols(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ M.T`` along dim -1: (..., H, n_in) -> (..., H, n_out)."""
        with ieee_matmul(x):
            if self.dense:
                return torch.matmul(x, self.matrix_t)
            out = x.new_empty((*x.shape[:-1], self.shape[0]))
            for o0, o1, i0, i1, _, block_t in self.blocks:
                out[..., o0:o1] = torch.matmul(x[..., i0:i1], block_t)
            return out


_AXIS_CACHE: dict = {}


def axis_matrix(key: tuple, build, dtype: torch.dtype, device: torch.device) -> AxisMatrix:
    """Cached :class:`AxisMatrix` for ``build()`` (a float64 CPU matrix) on a dtype/device."""
    full_key = (key, dtype, str(device))
    op = _AXIS_CACHE.get(full_key)
    if op is None:
        if len(_AXIS_CACHE) > 512:
            _AXIS_CACHE.clear()
        op = AxisMatrix(build(), dtype, device)
        _AXIS_CACHE[full_key] = op
    return op


def gaussian_blur2d(
    x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0
) -> torch.Tensor:
    """scipy/skimage Gaussian filter over the last two axes (not across channels).

    Args:
        x: (..., H, W) float tensor.
        sigma: standard deviation in pixels (both axes).
        mode: border mode, see :func:`border_index`.
        truncate: kernel radius in sigmas.
    """
    height, width = x.shape[-2:]
    op_h = axis_matrix(("gauss", height, float(sigma), mode, truncate),
                       lambda: gaussian_matrix(height, float(sigma), mode, truncate),
                       x.dtype, x.device)
    op_w = op_h if width == height else axis_matrix(
        ("gauss", width, float(sigma), mode, truncate),
        lambda: gaussian_matrix(width, float(sigma), mode, truncate), x.dtype, x.device)
    return op_w.cols(op_h.rows(x))


def gaussian_filter_exact(x: torch.Tensor, sigma: float, mode: str = "nearest",
                          truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's ``gaussian_filter`` over the last two axes, H then W, with scipy's
    operations in scipy's order, so that float64 input gives scipy's doubles: its symmetric
    correlation sets ``x[i] w_0`` and then adds ``(x[i - j] + x[i + j]) w_j`` for j = r .. 1.

    :func:`gaussian_blur2d`'s banded products sum in another order, which puts values that
    the original computes a hair below a level on it (0.1 % to 0.5 % of the uint8 values a
    level up); this costs 2r + 1 passes over the image per axis.
    """
    weights = gaussian_weights(float(sigma), float(truncate))
    for axis in (-2, -1):
        x = symmetric_correlate(x, weights, axis, mode, outside_in=True)
    return x


def symmetric_correlate(x: torch.Tensor, weights: Sequence[float], axis: int, mode: str, *,
                        outside_in: bool) -> torch.Tensor:
    """A centred correlation along ``axis`` with a symmetric kernel (odd length), one rounding per
    operation in ``x``'s dtype and in a reference's order: ``x[i] w_0``, then ``(x[i - j] + x[i + j])
    w_j`` added for j = r .. 1 (scipy's ``correlate1d``, ``outside_in``) or j = 1 .. r (OpenCV's
    small symmetric filters). Borders as :func:`border_index`'s ``mode``."""
    radius = len(weights) // 2
    n = x.shape[axis]
    index = device_constant(tuple(border_index(n, radius, radius, mode).tolist()), torch.int64, x.device)
    padded = x.index_select(axis, index)
    out = padded.narrow(axis, radius, n) * weights[radius]
    pair = torch.empty_like(out)
    for j in (range(radius, 0, -1) if outside_in else range(1, radius + 1)):
        torch.add(padded.narrow(axis, radius - j, n), padded.narrow(axis, radius + j, n), out=pair)
        out += pair.mul_(weights[radius - j])
    return out


# --------------------------------------------------------------------------------------
# FFT convolution


def fft_size(n: int) -> int:
    """A fast FFT length >= n: the next power of two, unless a 2^a 3^b 5^c length is
    more than 20 % shorter (pocketfft and cuFFT are fastest on powers of two)."""
    power = 1 << math.ceil(math.log2(max(n, 1)))
    smooth = power
    p2 = 1
    while p2 < 2 * n:
        p3 = p2
        while p3 < 2 * n:
            p5 = p3
            while p5 < n:
                p5 *= 5
            smooth = min(smooth, p5)
            p3 *= 3
        p2 *= 2
    return power if power <= 1.2 * smooth else smooth


def _pad(x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Pad the last two axes by ``pad`` with a border mode (see :func:`border_index`)."""
    height, width = x.shape[-2:]
    if mode in ("nearest", "mirror") and pad < min(height, width) and x.ndim == 4:
        return F.pad(x, (pad, pad, pad, pad), mode="replicate" if mode == "nearest" else "reflect")
    index_h = border_index(height, pad, pad, mode).to(x.device)
    index_w = border_index(width, pad, pad, mode).to(x.device)
    return x.index_select(-2, index_h).index_select(-1, index_w)


def shift_add(
    x: torch.Tensor, taps: torch.Tensor, offsets: torch.Tensor, pad: int, mode: str
) -> torch.Tensor:
    """Per image, ``out[y, x] = sum_i w_i * x[y + a_i, x + b_i]`` by shifted slices.

    The direct counterpart of :func:`fft_correlate` (same arguments), faster on CPU for
    a few dozen taps: each image is padded once and its taps are added in place.
    """
    batch, _, height, width = x.shape
    padded = _pad(x, pad, mode)
    out = torch.empty_like(x)
    taps_list = taps.tolist()
    offsets_list = offsets.tolist()

    def one(b: int) -> None:
        merged: dict = {}
        for w, (a, c) in zip(taps_list[b], offsets_list[b]):
            if w != 0.0:
                merged[(a, c)] = merged.get((a, c), 0.0) + w
        target = out[b]
        if not merged:
            target.zero_()
            return
        for k, ((a, c), w) in enumerate(merged.items()):
            view = padded[b, :, pad + a : pad + a + height, pad + c : pad + c + width]
            if k == 0:
                torch.mul(view, w, out=target)
            else:
                target.add_(view, alpha=w)

    for b in range(batch):  # each addition is a parallel ATen op already
        one(b)
    return out


def shift_add_in_order(
    x: torch.Tensor, taps: torch.Tensor, offsets: torch.Tensor, pad: int, mode: str
) -> torch.Tensor:
    """:func:`shift_add` as NumPy sums it: ``out = w_0 x_0``, then ``out = out + w_i x_i`` for each
    tap in turn, in ``x``'s dtype, a tap repeated at the same offset added again, no fused
    multiply-add. A tap of weight 0 is skipped (the original's loop had stopped before it)."""
    batch, _, height, width = x.shape
    if taps.shape[0] != batch or offsets.shape[0] != batch:  # zip would leave the others black
        raise ValueError(f"taps for {taps.shape[0]} and offsets for {offsets.shape[0]} images, for a batch "
                         f"of {batch}")
    padded = _pad(x, pad, mode)
    out = torch.zeros_like(x)
    product = torch.empty_like(x[0])
    for b, (weights, shifts) in enumerate(zip(taps.tolist(), offsets.tolist())):
        first = True
        for w, (a, c) in zip(weights, shifts):
            if w == 0.0:
                continue
            view = padded[b, :, pad + a : pad + a + height, pad + c : pad + c + width]
            if first:
                torch.mul(view, w, out=out[b])
                first = False
            else:
                out[b].add_(torch.mul(view, w, out=product))
    return out


def fft_correlate(
    x: torch.Tensor, taps: torch.Tensor, offsets: torch.Tensor, pad: int, mode: str
) -> torch.Tensor:
    """Sum of shifted copies, per image, by FFT: ``out[y, x] = sum_i w_i * x[y + a_i, x + b_i]``.

    Args:
        x: (B, C, H, W) float images.
        taps: (B, T) weights w_i (zero weights are ignored).
        offsets: (B, T, 2) integer offsets (a_i, b_i) (rows, columns), |a|, |b| <= pad.
        pad: border width; reads beyond the image follow ``mode``.
        mode: ``nearest`` (replicate) or ``mirror`` (reflect-101).
    """
    batch, channels, height, width = x.shape
    size_h, size_w = fft_size(height + 2 * pad), fft_size(width + 2 * pad)
    real = torch.float64 if x.dtype == torch.float64 else torch.float32
    padded = _pad(x.to(real), pad, mode)
    # circular kernel: K[(-a) mod N, (-b) mod N] += w  =>  (padded * K)[n] = sum w padded[n + a]
    kernel = torch.zeros(batch, size_h * size_w, dtype=real, device=x.device)
    flat = (-offsets[..., 0]).remainder(size_h) * size_w + (-offsets[..., 1]).remainder(size_w)
    kernel.scatter_add_(1, flat, taps.to(real))
    spectrum = torch.fft.rfft2(padded, s=(size_h, size_w))
    spectrum *= torch.fft.rfft2(kernel.view(batch, 1, size_h, size_w))
    out = torch.fft.irfft2(spectrum, s=(size_h, size_w))
    return out[..., pad : pad + height, pad : pad + width].to(x.dtype)


def fft_filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlation of every channel with one odd-sized 2-D kernel, by FFT.

    Args:
        x: (B, C, H, W).
        kernel: (kh, kw) with odd sides.
        mode: border mode (see :func:`border_index`).
    """
    batch, channels, height, width = x.shape
    kh, kw = kernel.shape
    rh, rw = kh // 2, kw // 2
    real = torch.float64 if x.dtype == torch.float64 else torch.float32
    size_h, size_w = fft_size(height + 2 * rh), fft_size(width + 2 * rw)
    if rh == rw:
        padded = _pad(x.to(real), rh, mode)
    else:
        index_h = border_index(height, rh, rh, mode).to(x.device)
        index_w = border_index(width, rw, rw, mode).to(x.device)
        padded = x.to(real).index_select(-2, index_h).index_select(-1, index_w)
    spectrum = torch.fft.rfft2(padded, s=(size_h, size_w))
    spectrum *= _kernel_spectrum(kernel, size_h, size_w, real, x.device)
    out = torch.fft.irfft2(spectrum, s=(size_h, size_w))
    return out[..., 2 * rh : 2 * rh + height, 2 * rw : 2 * rw + width].to(x.dtype)


_SPECTRUM_CACHE: dict = {}


def _kernel_spectrum(kernel, size_h, size_w, dtype, device):
    key = (kernel.numpy().tobytes(), tuple(kernel.shape), size_h, size_w, dtype, str(device))
    spectrum = _SPECTRUM_CACHE.get(key)
    if spectrum is None:
        # flipped so that the circular convolution computes a correlation
        flipped = kernel.flip(0, 1).to(device=device, dtype=dtype)
        spectrum = torch.fft.rfft2(flipped, s=(size_h, size_w))
        if len(_SPECTRUM_CACHE) > 64:
            _SPECTRUM_CACHE.clear()
        _SPECTRUM_CACHE[key] = spectrum
    return spectrum


# --------------------------------------------------------------------------------------
# colour


def true_div(x: torch.Tensor, divisor: float) -> torch.Tensor:
    """``x / divisor`` rounded as NumPy's division: on CUDA, dividing by a Python number multiplies
    by its reciprocal (one more rounding), so divide by a tensor on the device instead."""
    return x / _exact_divisor(x, divisor)


def true_div_(x: torch.Tensor, divisor: float) -> torch.Tensor:
    """:func:`true_div` in place (``x`` is a tensor the caller made and may overwrite)."""
    return x.div_(_exact_divisor(x, divisor))


def _exact_divisor(x: torch.Tensor, divisor: float) -> float | torch.Tensor:
    return divisor if x.device.type == "cpu" else device_constant(float(divisor), x.dtype, x.device)


def uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """``x * 255`` in float64 (MPS: float32): the uint8 values of images on the k / 255 grid
    exactly, others as they are (float32's k / 255 times 255 rounds to k; float64's may be a hair
    off it, 126.99999999999999: snapped to the level within 1e-4)."""
    if x.dtype != torch.float64:
        return (x * 255).to(exact_dtype(x.device))
    scaled = x * 255
    nearest = scaled.round()
    return torch.where((scaled - nearest).abs() < 1e-4, nearest, scaled)


def grid_doubles(x: torch.Tensor) -> torch.Tensor:
    """Images on the k/255 grid as the original's ``uint8 / 255.`` doubles: ``uint8_levels(x) / 255``
    with NumPy's rounding on CPU and CUDA (on MPS, float32 and its own division)."""
    return true_div(uint8_levels(x), 255.0)


def rgb_to_hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-image's ``rgb2hsv`` with its operations in its order, so that float64 input gives
    the same doubles: (B, 3, H, W) -> hue, saturation, value, each (B, 1, H, W)."""
    r, g, b = rgb.unbind(1)
    v = rgb.amax(1)
    delta = v - rgb.amin(1)
    flat = delta == 0
    safe = torch.where(flat, torch.ones_like(delta), delta)
    s = torch.where(flat, torch.zeros_like(v), delta / torch.where(v > 0, v, torch.ones_like(v)))
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe, h)  # later maxima overwrite earlier ones
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.where(flat, torch.zeros_like(h), torch.remainder(true_div(h, 6.0), 1.0))
    return h.unsqueeze(1), s.unsqueeze(1), v.unsqueeze(1)


def hsv_factors(h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The channel factors of scikit-image's ``hsv2rgb``: it makes each channel one of v,
    p = v (1 - s), q = v (1 - f s) or t = v (1 - (1 - f) s), with f and the choice depending
    on the hue only, so ``hsv2rgb(h, s, v) = v * hsv_factors(h, s)``, the same doubles as
    scikit-image's for float64 input. (B, 1, H, W) each -> (B, 3, H, W).

    By hue sector 0..5 the channels are (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v),
    (v, p, q).
    """
    h6 = h * 6
    hi = torch.floor(h6)
    f = h6 - hi
    one = torch.ones_like(s)
    p, q, t = 1 - s, 1 - f * s, 1 - (1 - f) * s
    sector = hi.to(torch.uint8).remainder(6)
    red = torch.where((sector == 0) | (sector == 5), one,
                      torch.where(sector == 1, q, torch.where(sector == 4, t, p)))
    green = torch.where((sector == 1) | (sector == 2), one,
                        torch.where(sector == 0, t, torch.where(sector == 3, q, p)))
    blue = torch.where((sector == 3) | (sector == 4), one,
                       torch.where(sector == 2, t, torch.where(sector == 5, q, p)))
    return torch.cat((red, green, blue), 1)


def on_grid(values: torch.Tensor, like: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Float64 results of the original's arithmetic (in [0, ``peak``]) as ``like``'s dtype in
    [0, 1], so that the storage truncation (``floor(255 x + 1e-4)``,
    :func:`corruptions.storage.truncate_to_uint8`) gives what ``np.uint8`` gave the original: a
    value a hair below a level (the original's float error, e.g. 254.99999999999997) is kept
    below it, by at most 1e-3 / 255."""
    scaled = values * (255 / peak)
    level = torch.floor(scaled)
    return true_div(level + (scaled - level).clamp_(max=1 - 1e-3), 255.0).to(like.dtype)


#: OpenCV's RGB2GRAY weights, as the float32 numbers it multiplies by
_GREY_R, _GREY_G, _GREY_B = (float(torch.tensor(w, dtype=torch.float32)) for w in (0.299, 0.587, 0.114))


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's RGB2GRAY on floats: 0.299 R + 0.587 G + 0.114 B; (B, 3, H, W) -> (B, 1, H, W).

    float32 images get OpenCV's own float32 arithmetic (4.x / 5.x, its vector loop):
    ``fma(B, 0.114f, fma(R, 0.299f, G * 0.587f))``, each fused multiply-add rounded once (here in
    float64, which holds the product of two float32 numbers exactly), bit for bit what
    ``cv2.cvtColor(x, COLOR_RGB2GRAY)`` gives rows of a multiple of 8 pixels (the presets' 32,
    64 and 224; other widths: an ulp off at a few columns, OpenCV's remainder loop). Summed in
    float32 in R, G, B order it was an ulp off at 34 of 256 grey levels, where ``1.5 grey +
    0.5`` landed on the other side of a level: snow's uint8 values a level off on grey images."""
    r, g, b = x.unbind(1)
    if x.dtype != torch.float32:
        return (_GREY_R * r + _GREY_G * g + _GREY_B * b).unsqueeze(1)
    wide = exact_dtype(x.device)
    inner = (r.to(wide) * _GREY_R + (g * _GREY_G).to(wide)).to(torch.float32)
    return (b.to(wide) * _GREY_B + inner.to(wide)).to(torch.float32).unsqueeze(1)


# --------------------------------------------------------------------------------------
# threads for per-image CPU work that torch runs serially (generator draws, JPEG)

_POOL: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    """A forked child has none of the pool's threads, though the pool counts them as idle: the
    child's jobs would wait for them for ever (``multiprocessing`` fork pools); it makes its own."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pool)


def thread_map(fn, items: list) -> list:
    """``[fn(i) for i in items]`` on a small thread pool (ops that release the GIL), each item
    under the caller's inference and grad modes."""
    global _POOL
    workers = max(1, min(torch.get_num_threads(), 8))
    if workers == 1 or len(items) < 2:
        return [fn(item) for item in items]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="corruptions")
    # torch's modes are per thread: the workers take the caller's (an inference tensor made here
    # could not be written in a worker outside inference mode)
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def run(item):
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return fn(item)

    return list(_POOL.map(run, items))


@contextlib.contextmanager
def quiet_torchvision_io():
    """Silence torchvision 0.29's deprecation warning of its image codecs.

    torchvision warns on every encode/decode call that TorchCodec supersedes its
    codecs; the codecs (libjpeg, libpng, nvJPEG) are unchanged.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="The image decoding and encoding capabilities of TorchVision are deprecated",
            category=DeprecationWarning,
        )
        yield
