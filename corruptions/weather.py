"""Weather: snow, frost, fog, brightness (benchmark) and spatter (extra)."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading

import torch
import torch.nn.functional as F

from corruptions._ops import (
    device_constant,
    exact_dtype,
    gaussian_blur2d,
    grid_doubles,
    hsv_factors,
    on_grid,
    quiet_torchvision_io,
    rgb_to_gray,
    rgb_to_hsv,
    true_div,
    uint8_levels,
)
from corruptions._registry import PRESET_SIZES, Corruption, Level, presets, register
from corruptions._resample import resize_linear_uint8, zoom_center
from corruptions._rng import ImageRandom
from corruptions.blur import motion_blur, motion_blur_levels

#: (loc, scale, zoom, threshold, motion radius, motion sigma, blend); angle U(-135, -45)
SNOW = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)
#: (image weight, frost weight)
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
#: (amplitude, wibble decay)
FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
#: (loc, scale, sigma, threshold, intensity, mode 0 = water 1 = mud)
SPATTER = (
    (0.65, 0.3, 4, 0.69, 0.6, 0),
    (0.65, 0.3, 3, 0.68, 0.6, 0),
    (0.65, 0.3, 2, 0.68, 0.5, 0),
    (0.65, 0.3, 1, 0.65, 1.5, 1),
    (0.67, 0.4, 1, 0.65, 1.5, 1),
)
# CIFAR-10/100-C (make_cifar_c.py, 32 px) and Tiny-ImageNet-C (make_tinyimagenet_c.py, 64 px)
SNOW_CIFAR = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
SNOW_TINY = tuple((*row[:6], blend) for row, blend in zip(SNOW_CIFAR, (0.8, 0.8, 0.7, 0.65, 0.6)))
FROST_CIFAR = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
FROST_TINY = ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55))
FOG_CIFAR = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))
FOG_TINY = ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75))
BRIGHTNESS_CIFAR, BRIGHTNESS_TINY = (0.05, 0.1, 0.15, 0.2, 0.3), (0.1, 0.2, 0.3, 0.4, 0.5)
SPATTER_CIFAR = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
SPATTER_TINY = (
    (0.62, 0.1, 0.7, 0.7, 0.6, 0),
    (0.65, 0.1, 0.8, 0.7, 0.6, 0),
    (0.65, 0.3, 1, 0.69, 0.6, 0),
    (0.65, 0.1, 0.7, 0.68, 0.6, 1),
    (0.65, 0.1, 0.5, 0.67, 0.6, 1),
)
#: the small presets' frost textures: cv2.resize(frost, fx=fy=factor) (bilinear, no
#: antialiasing, uint8) at their image side; ImageNet-C uses them at native resolution
FROST_RESIZE = {"cifar": 0.2, "tinyimagenet": 0.3}

#: frost textures shipped inside imagecorruptions; the original draws from the first 5
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
FROST_USED = 5


# --------------------------------------------------------------------------------------
# brightness


def _brightness(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    # the original's arithmetic: scikit-image's rgb2hsv, V = clip(V + c, 0, 1), hsv2rgb, in
    # float64 and its order of operations, so that the storage truncation gives what
    # np.uint8 gave (values that land a hair below a level stay below it: on_grid)
    h, s, v = rgb_to_hsv(grid_doubles(x))  # the doubles k / 255 of uint8 input
    return on_grid((v + level.c).clamp_(0, 1) * hsv_factors(h, s), x)


# --------------------------------------------------------------------------------------
# fog


def plasma_fractal(uniforms: torch.Tensor, mapsize: int, wibble_decay: float) -> torch.Tensor:
    """The original's diamond-square plasma fractal, for a batch, from given uniforms.

    Args:
        uniforms: (B, plasma_draws(mapsize)) uniforms in [0, 1), consumed level by level
            (squares, then the two diamond grids), each mapped to U(-wibble, wibble).
        mapsize: a power of two.
        wibble_decay: the wibble is divided by it at each level (starts at 100).

    Returns:
        (B, mapsize, mapsize) map normalized to [0, 1] per image.
    """
    batch = uniforms.shape[0]
    maparray = uniforms.new_zeros(batch, mapsize, mapsize)
    step, wibble, used = mapsize, 100.0, 0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        nonlocal used
        count = total.shape[1] * total.shape[2]
        u = uniforms[:, used : used + count].view_as(total)
        used += count
        return total / 4 + wibble * (u * (2 * wibble) - wibble)

    while step >= 2:
        half = step // 2
        corners = maparray[:, 0::step, 0::step]
        square = corners + torch.roll(corners, -1, dims=1)
        square = square + torch.roll(square, -1, dims=2)
        maparray[:, half::step, half::step] = wibbled_mean(square)
        down_right = maparray[:, half::step, half::step]
        up_left = maparray[:, 0::step, 0::step]
        left = down_right + torch.roll(down_right, 1, dims=1) + up_left + torch.roll(up_left, -1, dims=2)
        top = down_right + torch.roll(down_right, 1, dims=2) + up_left + torch.roll(up_left, -1, dims=1)
        maparray[:, 0::step, half::step] = wibbled_mean(left)
        maparray[:, half::step, 0::step] = wibbled_mean(top)
        step //= 2
        wibble /= wibble_decay
    flat = maparray.flatten(1)  # (batch, -1) cannot be a view of an empty batch
    flat = flat - flat.amin(1, keepdim=True)
    return (flat / flat.amax(1, keepdim=True)).view(batch, mapsize, mapsize)


def plasma_draws(mapsize: int) -> int:
    """Number of uniforms :func:`plasma_fractal` consumes."""
    total, step = 0, mapsize
    while step >= 2:
        total += 3 * (mapsize // step) ** 2
        step //= 2
    return total


def fog_mapsize(height: int, width: int) -> int:
    """Next power of two >= max(H, W) (256 at 224 px, as the original)."""
    return 1 << max(1, math.ceil(math.log2(max(height, width))))


def _fog_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    height, width = images.shape[-2:]
    mapsize = fog_mapsize(height, width)
    uniforms = rng.uniform(plasma_draws(mapsize))
    plasma = plasma_fractal(uniforms, mapsize, level.c[1])
    return {"plasma": plasma[:, :height, :width]}


def _fog(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    amplitude = level.c[0]
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    scale = max_val / (max_val + amplitude)
    fog = params["plasma"].to(x.dtype).unsqueeze(1) * (amplitude * scale)
    return torch.addcmul(fog, x, scale)


# --------------------------------------------------------------------------------------
# frost


def frost_directory() -> str:
    """The ``frost/`` folder of the installed imagecorruptions (located, not imported).

    Raises:
        FileNotFoundError: imagecorruptions is not installed or lacks its textures.
    """
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "frost needs the texture images shipped in the imagecorruptions package; "
            "install it: pip install imagecorruptions"
        )
    for location in spec.submodule_search_locations:
        folder = os.path.join(location, "frost")
        if all(os.path.isfile(os.path.join(folder, f)) for f in FROST_FILES[:FROST_USED]):
            return folder
    raise FileNotFoundError(
        f"imagecorruptions is installed but its frost/ folder ({', '.join(FROST_FILES)}) "
        "is missing; reinstall it: pip install --force-reinstall imagecorruptions"
    )


@functools.lru_cache(maxsize=1)
def _frost_uint8() -> tuple[torch.Tensor, ...]:
    from torchvision.io import ImageReadMode, decode_image, read_file

    folder = frost_directory()
    with quiet_torchvision_io():
        return tuple(
            decode_image(read_file(os.path.join(folder, name)), mode=ImageReadMode.RGB)
            for name in FROST_FILES[:FROST_USED]
        )


_TEXTURES: dict = {}
_TEXTURE_LOCK = threading.Lock()
_STACKS: dict = {}


def frost_scale(height: int, width: int, preset: str = "imagenet") -> float:
    """Texture scale for an image size: 1 at 224 px (native, as ImageNet-C), 0.2 at 32 px
    (CIFAR-10-C), 0.3 at 64 px (Tiny-ImageNet-C); other sizes in proportion."""
    return FROST_RESIZE.get(preset, 1.0) * max(height, width) / PRESET_SIZES[preset]


def frost_textures(height: int, width: int, device: torch.device,
                   preset: str = "imagenet") -> tuple[torch.Tensor, ...]:
    """The 5 textures as float [0, 1] (3, h, w) tensors on ``device``, decoded once.

    ImageNet-C: at 224 px (any image whose larger side is 224) they are used at
    native resolution, as in the original; for other sizes they are resized by
    max(H, W) / 224 (bilinear, antialiased), so the frost covers the same fraction
    of the image. CIFAR-10-C and Tiny-ImageNet-C: resized as their scripts do
    (:func:`frost_scale`; ``cv2.resize``'s fixed-point bilinear on the uint8 texture:
    :func:`~corruptions._resample.resize_linear_uint8`). Enlarged further if a texture would be smaller
    than the image.
    Cached per (preset, scale, device).
    """
    scale = frost_scale(height, width, preset)
    small = preset in FROST_RESIZE
    key = (preset, round(scale, 6), height, width, str(device))
    with _TEXTURE_LOCK:
        textures = _TEXTURES.get(key)
        if textures is None:
            textures = []
            for texture in _frost_uint8():
                th, tw = texture.shape[-2:]
                s = max(scale, (height + 1) / th, (width + 1) / tw)
                as_script = small and s == scale
                if as_script:  # cv2.resize(fx=fy=s), in its integers
                    texture = resize_linear_uint8(texture, s)
                t = true_div(texture.to(device=device, dtype=torch.float32), 255.0)
                if s != 1.0 and not as_script:
                    size = (max(height + 1, round(th * s)), max(width + 1, round(tw * s)))
                    t = F.interpolate(t[None], size=size, mode="bilinear", antialias=s < 1 and not small,
                                      align_corners=False)[0].clamp(0, 1)
                textures.append(t.contiguous())
            textures = tuple(textures)
            if len(_TEXTURES) > 16:
                _TEXTURES.clear()
            _TEXTURES[key] = textures
    return textures


def frost_stack(height: int, width: int, device: torch.device, preset: str = "imagenet") -> torch.Tensor:
    """:func:`frost_textures` in one (5, 3, h, w) tensor, zero-padded to the largest (cached):
    crops are then gathered by index on the device."""
    textures = frost_textures(height, width, device, preset)
    key = (preset, height, width, str(device))  # what the textures depend on
    with _TEXTURE_LOCK:
        stack = _STACKS.get(key)
        if stack is None:
            h = max(t.shape[-2] for t in textures)
            w = max(t.shape[-1] for t in textures)
            stack = torch.stack([F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2])) for t in textures])
            if len(_STACKS) > 16:
                _STACKS.clear()
            _STACKS[key] = stack
    return stack


def frost_crops(stack: torch.Tensor, params: dict, height: int, width: int) -> torch.Tensor:
    """Each image's (3, height, width) crop of texture ``index`` at (``top``, ``left``),
    gathered on the stack's device (the host never reads the draws)."""
    device = stack.device
    rows = params["top"].to(device).view(-1, 1, 1) + torch.arange(height, device=device).view(1, -1, 1)
    cols = params["left"].to(device).view(-1, 1, 1) + torch.arange(width, device=device).view(1, 1, -1)
    return stack[params["index"].to(device).view(-1, 1, 1), :, rows, cols].permute(0, 3, 1, 2)


def _frost_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    height, width = images.shape[-2:]
    textures = frost_textures(height, width, images.device, level.preset)
    index = rng.randint(0, FROST_USED)
    u = rng.uniform(2)
    room = device_constant(tuple((t.shape[-2] - height, t.shape[-1] - width) for t in textures),
                           torch.float32, u.device)[index.to(u.device)]
    # randint(0, th - H) and randint(0, tw - W), high exclusive
    offsets = torch.floor(u * room).to(torch.int64).clamp_min(0)
    return {"index": index, "top": offsets[:, 0], "left": offsets[:, 1]}


def _frost(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    weight_image, weight_frost = level.c
    height, width = x.shape[-2:]
    if x.device.type == "cpu":  # slices are faster here, and the values are already on the host
        textures = frost_textures(height, width, x.device, level.preset)
        where = zip(params["index"].tolist(), params["top"].tolist(), params["left"].tolist())
        crops = [textures[i][:, t : t + height, l : l + width] for i, t, l in where]
        if any(crop.shape[-2:] != (height, width) for crop in crops):  # else torch.stack's "equal size"
            raise ValueError(f"frost: `params` place a crop beyond its texture for these {height}x{width} "
                             f"images: were they drawn for images of another size? Draw them for these "
                             f"images (sample_parameters)")
        frost = torch.stack(crops)
    else:
        frost = frost_crops(frost_stack(height, width, x.device, level.preset), params, height, width)
    # the original's arithmetic: np.clip(c0 x + c1 frost, 0, 255) on the uint8 values, in float64,
    # so that the storage truncation gives what np.uint8 gave (a sum a hair below a level stays
    # below it: in [0, 1], rounding put 0.4 % to 2 % of values a level higher, s2 to s4)
    values = weight_image * uint8_levels(x) + weight_frost * uint8_levels(frost)
    return on_grid(values.clamp_(0, 255), x, peak=255.0)


# --------------------------------------------------------------------------------------
# snow


def _snow_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    loc, scale = level.c[:2]
    height, width = images.shape[-2:]
    return {
        "layer": rng.normal(1, height, width, mean=loc, std=scale),
        "angle": rng.uniform(low=-135.0, high=-45.0),
    }


def snow_layer(layer: torch.Tensor, angle: torch.Tensor, c: tuple) -> torch.Tensor:
    """Zoomed, thresholded, motion-blurred snow layer (B, 1, H, W), on the 1/255 grid, as
    imagecorruptions (the ImageNet preset's reference): the [0, 1] layer blurred, then rounded."""
    _, _, zoom, threshold, radius, sigma, _ = c
    layer = zoom_center(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    layer = motion_blur(layer, radius, sigma, angle)
    return true_div(torch.round(layer * 255).clamp(0, 255), 255.0)


def script_snow_layer(layer: torch.Tensor, angle: torch.Tensor, c: tuple) -> torch.Tensor:
    """The CIFAR and Tiny scripts' snow layer (B, 1, H, W), float64 (MPS: float32) on the 1/255 grid.

    The scripts hand the layer to ImageMagick as a PNG: ``(clip(layer) * 255).astype(np.uint8)``
    truncates it before the blur, and the blurred PNG is 8-bit again (rounded). Blurring the
    [0, 1] layer as imagecorruptions does put 0.6 % (CIFAR s1) to 4.5 % (s5) of the uint8 values
    a level or two up. The normals are zoomed in float64, as the scripts' scipy zoom."""
    _, _, zoom, threshold, radius, sigma, _ = c
    layer = zoom_center(layer.to(exact_dtype(layer.device)), zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    png = true_div(torch.floor(layer.clamp(0, 1) * 255), 255.0)
    blurred = motion_blur_levels(png, radius, sigma, angle)
    return true_div(torch.round(blurred).clamp_(0, 255), 255.0)


def _snow(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    blend = level.c[6]
    if level.preset != "imagenet":
        return _script_snow(x, level, params)
    layer = snow_layer(params["layer"].to(x.dtype), params["angle"], level.c)
    x = blend * x + (1 - blend) * torch.maximum(x, rgb_to_gray(x) * 1.5 + 0.5)
    return x + layer + layer.flip(-1, -2)


def _script_snow(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    """The scripts' arithmetic: the whitened image in float32 (uint8 / 255 in float32, OpenCV's
    float32 grey), plus the float64 layer and its rotation, kept below a level where the sum
    lands a hair below it (np.uint8 of the scripts' result)."""
    blend = level.c[6]
    layer = script_snow_layer(params["layer"], params["angle"], level.c)
    x32 = true_div(uint8_levels(x).float(), 255.0)
    x32 = blend * x32 + (1 - blend) * torch.maximum(x32, rgb_to_gray(x32) * 1.5 + 0.5)
    values = x32.to(layer.dtype) + layer + layer.flip(-1, -2)
    return on_grid(values.clamp_(0, 1), x)


# --------------------------------------------------------------------------------------
# spatter


def _spatter_sample(rng: ImageRandom, images: torch.Tensor, level: Level) -> dict:
    loc, scale = level.c[:2]
    height, width = images.shape[-2:]
    return {"liquid": rng.normal(1, height, width, mean=loc, std=scale)}


def _pad_mirror(x: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Reflect-101 borders (OpenCV's default), also of a side of ``pad`` pixels or fewer, which
    torch's reflect refuses (OpenCV repeats a 1-pixel side: an ImageNet-P crop of 1 px)."""
    if min(x.shape[-2:]) > pad:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows, cols = (_reflect_101(side, pad, x.device) for side in x.shape[-2:])
    return x.index_select(-2, rows).index_select(-1, cols)


def _reflect_101(side: int, pad: int, device: torch.device) -> torch.Tensor:
    """The source index of each of ``side + 2 pad`` positions under reflect-101 borders."""
    index = torch.arange(-pad, side + pad, device=device)
    if side == 1:
        return torch.zeros_like(index)
    period = 2 * (side - 1)
    index = index.remainder(period)
    return torch.where(index >= side, period - index, index)


def _box3_sum(x: torch.Tensor) -> torch.Tensor:
    """3x3 sums with reflect-101 borders (OpenCV's default border)."""
    p = _pad_mirror(x)
    rows = p[..., :-2, :] + p[..., 1:-1, :]
    rows += p[..., 2:, :]
    out = rows[..., :-2] + rows[..., 1:-1]
    out += rows[..., 2:]
    return out


def _dilate3(mask: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a (B, 1, H, W) uint8 0/1 mask (zeros outside)."""
    p = F.pad(mask, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def canny(image: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """OpenCV's ``cv2.Canny(image, low, high)`` (aperture 3, L1 gradient) on uint8 values.

    Sobel derivatives with replicated borders, non-maximum suppression in four
    directions with OpenCV's integer tan(22.5) test and tie rules, then hysteresis:
    candidates above ``low`` connected (8-neighbourhood) to a pixel above ``high``.

    Args:
        image: (B, 1, H, W) float tensor holding integers 0..255.

    Returns:
        (B, 1, H, W) bool edge map.
    """
    height, width = image.shape[-2:]
    p = F.pad(image, (1, 1, 1, 1), mode="replicate")
    smooth_v = p[..., :-2, :] + p[..., 2:, :]
    smooth_v.add_(p[..., 1:-1, :], alpha=2)
    smooth_h = p[..., :-2] + p[..., 2:]
    smooth_h.add_(p[..., 1:-1], alpha=2)
    dx = (smooth_v[..., 2:] - smooth_v[..., :-2]).to(torch.int32)
    dy = (smooth_h[..., 2:, :] - smooth_h[..., :-2, :]).to(torch.int32)
    ax, ay = dx.abs(), dy.abs()
    mag = ax + ay
    m = F.pad(mag, (1, 1, 1, 1))  # magnitudes outside the image are 0

    def at(dr: int, dc: int) -> torch.Tensor:
        return m[..., 1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]

    # OpenCV: y << 15 < x * TG22 (horizontal), y << 15 > x * TG22 + x << 16 (vertical)
    tg22x = ax * 13573
    ay = ay << 15
    horizontal = ay < tg22x
    vertical = ay > tg22x.add_(ax << 16)
    keep = torch.where(
        horizontal,
        (mag > at(0, -1)) & (mag >= at(0, 1)),
        torch.where(
            vertical,
            (mag > at(-1, 0)) & (mag >= at(1, 0)),
            torch.where(
                (dx ^ dy) >= 0,
                (mag > at(-1, -1)) & (mag > at(1, 1)),
                (mag > at(-1, 1)) & (mag > at(1, -1)),
            ),
        ),
    )
    candidate = keep & (mag > int(math.floor(low)))
    grown = (candidate & (mag > int(math.floor(high)))).to(torch.uint8)
    candidate = candidate.to(torch.uint8)
    # hysteresis: grow the strong edges through 8-connected candidates
    for iteration in range(height * width):
        nxt = _dilate3(grown) * candidate
        if iteration % 4 == 3 and torch.equal(nxt, grown):
            break
        grown = nxt
    return grown > 0


#: OpenCV's DIST_L2 5x5 chamfer weights in Q16 fixed point (1, 1.4, 2.1969)
_CHAMFER = (65536, 91750, 143976)


def chamfer_distance(zero: torch.Tensor, limit: int = 20, chunk: int = 32) -> torch.Tensor:
    """``min(cv2.distanceTransform(src, cv2.DIST_L2, 5), limit)``: distance to the nearest zero.

    OpenCV's two raster passes over the 5x5 chamfer mask (weights 1, 1.4, 2.1969
    in Q16 fixed point, as OpenCV 3/4; OpenCV 5 sums float32 weights, a difference
    below 1e-5), row by row; the in-row dependency of each pass is a running minimum.
    Distances are only needed up to ``limit``, so the rows are cut in chunks of
    ``chunk`` rows with ``limit + 1`` rows of context on each side, processed side
    by side: a distance <= limit comes from a zero pixel at most ``limit`` rows away,
    along a path inside the bounding box of the two pixels, so it is exact.

    Args:
        zero: (B, H, W) bool, True where the source pixel is 0.

    Returns:
        (B, H, W) float32 distances, at most ``limit``.
    """
    hv, diag, knight = _CHAMFER
    batch, height, width = zero.shape
    windows = len(range(0, height, chunk))
    # the passes are ~15 small operations per row: keep each one below ATen's parallel
    # grain (32768 elements), where a thread barrier would cost more than the work
    group = max(1, 32768 // (windows * (width + 4)))
    if zero.device.type == "cpu" and batch > group:
        return torch.cat([chamfer_distance(zero[i : i + group], limit, chunk)
                          for i in range(0, batch, group)])
    big = 1 << 28
    halo = limit + 1
    starts = list(range(0, height, chunk))
    rows = min(height, chunk + 2 * halo)
    # (chunks * B, rows, W): row windows [start - halo, start + chunk + halo) clipped to the image
    windows = []
    for start in starts:
        top = max(0, min(start - halo, height - rows))
        windows.append((top, start))
    dist = torch.stack([zero[:, top : top + rows] for top, _ in windows], dim=0)
    dist = torch.where(dist.flatten(0, 1), 0, big).to(torch.int32)
    n = dist.shape[0]
    col = torch.arange(width, device=zero.device, dtype=torch.int32) * hv
    pad = torch.full((n, 2), big, dtype=torch.int32, device=zero.device)

    def padded(row: torch.Tensor) -> torch.Tensor:
        return torch.cat([pad, row, pad], dim=1)

    for forward in (True, False):
        order = range(rows) if forward else range(rows - 1, -1, -1)
        step = -1 if forward else 1  # the mask looks at rows i + step, i + 2 step
        for i in order:
            best = dist[:, i]
            if 0 <= i + step < rows:
                near = padded(dist[:, i + step])
                best = torch.minimum(best, torch.minimum(near[:, 1 : width + 1],
                                                         near[:, 3 : width + 3]) + diag)
                best = torch.minimum(best, near[:, 2 : width + 2] + hv)
                knights = torch.minimum(near[:, 0:width], near[:, 4 : width + 4])
                if 0 <= i + 2 * step < rows:
                    far = padded(dist[:, i + 2 * step])
                    knights = torch.minimum(knights, torch.minimum(far[:, 1 : width + 1],
                                                                   far[:, 3 : width + 3]))
                best = torch.minimum(best, knights + knight)
            if forward:  # d[j] = min(best[j], d[j - 1] + hv) = j hv + cummin(best - j hv)
                dist[:, i] = torch.cummin(best - col, dim=1).values + col
            else:  # d[j] = min(best[j], d[j + 1] + hv)
                dist[:, i] = torch.cummin((best + col).flip(1), dim=1).values.flip(1) - col
    dist = dist.view(len(windows), batch, rows, width)
    out = torch.empty(batch, height, width, dtype=torch.int32, device=zero.device)
    for k, (top, start) in enumerate(windows):
        stop = min(height, start + chunk)
        out[:, start:stop] = dist[k, :, start - top : stop - top]
    return out.clamp_max(limit * hv).to(torch.float32) * (1.0 / hv)


def equalize_hist(image: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` per image on (B, H, W) float tensors of integers 0..255."""
    batch = image.shape[0]
    values = image.to(torch.int64).reshape(batch, -1)
    total = values.shape[1]
    hist = torch.zeros(batch, 256, dtype=torch.int64, device=image.device)
    hist.scatter_add_(1, values, torch.ones_like(values))
    first = (hist > 0).to(torch.int64).argmax(1, keepdim=True)
    first_count = hist.gather(1, first)
    cumulative = hist.cumsum(1) - first_count
    denominator = (total - first_count).clamp_min(1).to(torch.float32)
    scale = torch.full_like(denominator, 255.0) / denominator
    lut = torch.round(cumulative.to(torch.float32) * scale).clamp(0, 255)
    levels = torch.arange(256, device=image.device)
    lut = torch.where(levels < first, torch.zeros_like(lut), lut)
    lut = torch.where(first_count == total, first.to(torch.float32).expand_as(lut), lut)
    return lut.gather(1, values).view(image.shape)


def water_mask(liquid: torch.Tensor) -> torch.Tensor:
    """The water weights of spatter (severities 1-3) from the thresholded liquid layer.

    The original's OpenCV pipeline, on (B, 1, H, W) float: uint8 layer, Canny(50, 150),
    chamfer distance to the edges truncated at 20, 3x3 box blur, uint8, histogram
    equalization, 3x3 emboss (uint8 saturation), 3x3 box blur (uint8), times the
    layer, normalized by its maximum.
    """
    layer = torch.floor(liquid * 255).clamp_(min=0).remainder_(256)  # astype(np.uint8) wraps
    edges = canny(layer, 50, 150)
    dist = chamfer_distance(edges[:, 0], limit=20).unsqueeze(1)
    # cv2.blur on float32 (float64 sums scaled by 1/9, stored as float32), then astype(uint8):
    # the sums of these Q16 values are exact in float32 and S / 9 rounds alike
    dist = _box3_sum(dist).div_(9).floor_()
    dist = equalize_hist(dist[:, 0]).unsqueeze(1)
    # cv2.filter2D(dist, CV_8U, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]) (reflect-101, saturated)
    p = _pad_mirror(dist)
    height, width = dist.shape[-2:]

    def tap(a: int, b: int) -> torch.Tensor:
        return p[..., a : a + height, b : b + width]

    embossed = tap(1, 1) + tap(1, 2)
    embossed += tap(2, 1)
    embossed -= tap(0, 1)
    embossed -= tap(1, 0)
    embossed.add_(tap(2, 2), alpha=2).sub_(tap(0, 0), alpha=2).clamp_(0, 255)
    dist = _box3_sum(embossed).div_(9).add_(0.5).floor_()  # cv2.blur on uint8 rounds
    m = layer * dist
    # m / max(m), as the original: a dry layer (no water left: CIFAR-10-P's drift carries it out of
    # 32 px frames) gives 0 / 0 = NaN, and its image np.uint8(NaN), 0 on x86: black (spatter_frame)
    return m / m.amax(dim=(1, 2, 3), keepdim=True)


def spatter_frame(image: torch.Tensor, mask: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """``image + mask * color``, black where the mask is a dry layer's NaN (:func:`water_mask`: the
    original's NaN image, which np.uint8 makes 0; the port returned the clean image there)."""
    return torch.nan_to_num(image + mask * color, nan=0.0)


def _spatter(x: torch.Tensor, level: Level, params: dict) -> torch.Tensor:
    _, _, sigma, threshold, intensity, mode = level.c
    liquid = gaussian_blur2d(params["liquid"].to(x.dtype), sigma, mode="nearest")
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mode == 0:
        m = (water_mask(liquid) * intensity).to(x.dtype)
        color = device_constant((175 / 255, 238 / 255, 238 / 255), x.dtype, x.device)
        return spatter_frame(x, m, color.view(1, 3, 1, 1))
    m = gaussian_blur2d((liquid > threshold).to(torch.float32), intensity, mode="nearest")
    m = torch.where(m < 0.8, torch.zeros_like(m), m).to(x.dtype)
    color = device_constant((63 / 255, 42 / 255, 20 / 255), x.dtype, x.device)
    return x * (1 - m) + color.view(1, 3, 1, 1) * m


register(Corruption(
    "snow", "weather", presets(SNOW, SNOW_CIFAR, SNOW_TINY), _snow, _snow_sample,
    doc="zoomed thresholded Gaussian snow layer, motion-blurred, added with its 180-degree "
        "rotation to a whitened image.",
    revision=3,  # 0.7.30: OpenCV's float32 grey bit for bit (0.7.14: the small presets' layer
    # truncated to uint8 before the blur, as their scripts)
))
register(Corruption(
    "frost", "weather", presets(FROST, FROST_CIFAR, FROST_TINY), _frost, _frost_sample,
    doc="blend with a random crop of one of imagecorruptions' first 5 frost textures.",
    # 0.7.5: the original's float64 arithmetic on uint8 values and truncation side; 0.7.14: the small
    # presets' textures resized in cv2.resize's fixed-point integers (torch's bilinear: a level off)
    revision=3,
))
register(Corruption(
    "fog", "weather", presets(FOG, FOG_CIFAR, FOG_TINY), _fog, _fog_sample,
    doc="add a diamond-square plasma fractal, rescale by max / (max + amplitude).",
))
register(Corruption(
    "brightness", "weather", presets(BRIGHTNESS, BRIGHTNESS_CIFAR, BRIGHTNESS_TINY), _brightness,
    doc="HSV value + c (scikit-image's HSV).",
    revision=2,  # 0.7.1: the original's float64 arithmetic and truncation side
))
#: what spatter's Canny reads of the values on the host (the corruption's and the perturbation's)
SPATTER_HOST_READ = "whether the Canny hysteresis stopped growing its edges"
register(Corruption(
    "spatter", "weather", presets(SPATTER, SPATTER_CIFAR, SPATTER_TINY), _spatter, _spatter_sample,
    doc="water (Canny, distance transform, emboss) or mud blobs from a blurred "
        "thresholded Gaussian layer.",
    cpu_chunk=None,
    host_read=SPATTER_HOST_READ,
))
