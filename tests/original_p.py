"""The original ImageNet-P / CIFAR-10-P / Tiny-ImageNet-P operations, re-computed with PIL and
OpenCV for the tests (make_*_p.py's torchvision 0.2 ``affine`` on PIL, ``cv2.warpPerspective``,
``Resize`` and ``CenterCrop``); shared by the perturbation tests."""

from __future__ import annotations

import math

import numpy as np


def resize_shorter(image, size: int):
    """torchvision 0.2's ``Resize(size)`` of a PIL image (shorter side, PIL bilinear)."""
    from PIL import Image

    width, height = image.size
    if width <= height:
        return image.resize((size, int(size * height / width)), Image.BILINEAR)
    return image.resize((int(size * width / height), size), Image.BILINEAR)


def center_crop(image, size: int):
    """torchvision's ``CenterCrop(size)`` of a PIL image (Python's round half to even)."""
    width, height = image.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def affine_pil(image, angle=0.0, translate=(0, 0), scale=1.0, shear=0.0, bilinear=True):
    """torchvision 0.2's ``affine`` of a PIL image: its inverse matrix about
    ``(w / 2 + 0.5, h / 2 + 0.5)``, applied by ``Image.transform`` (zeros outside)."""
    from PIL import Image

    cx, cy = image.size[0] * 0.5 + 0.5, image.size[1] * 0.5 + 0.5
    a, sh, inv = math.radians(angle), math.radians(shear), 1.0 / scale
    d = math.cos(a + sh) * math.cos(a) + math.sin(a + sh) * math.sin(a)
    m = [inv / d * v for v in (math.cos(a + sh), math.sin(a + sh), 0, -math.sin(a), math.cos(a), 0)]
    m[2] += m[0] * (-cx - translate[0]) + m[1] * (-cy - translate[1])
    m[5] += m[3] * (-cx - translate[0]) + m[4] * (-cy - translate[1])
    m[2] += cx
    m[5] += cy
    return image.transform(image.size, Image.AFFINE, m, Image.BILINEAR if bilinear else Image.NEAREST)


def tilt_cv2(array: np.ndarray, degrees: float) -> np.ndarray:
    """The original tilt of a (H, W, 3) uint8 array: ``cv2.warpPerspective`` with focal length
    sqrt(w^2 + h^2) of the whole image."""
    import cv2

    h, w = array.shape[:2]
    phi = theta = np.deg2rad(degrees)
    f = np.sqrt(w**2 + h**2)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, np.cos(theta), -np.sin(theta), 0],
                   [0, np.sin(theta), np.cos(theta), 0], [0, 0, 0, 1]])
    ry = np.array([[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0],
                   [np.sin(phi), 0, np.cos(phi), 0], [0, 0, 0, 1]])
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return cv2.warpPerspective(array, p2 @ t @ rx @ ry @ p1, (w, h))


def water_frame(image: np.ndarray, liquid: np.ndarray) -> np.ndarray:
    """The original spatter frame of a float32 (H, W, 3) image from its liquid layer: Canny,
    distance transform, histogram equalization, emboss, the pale turquoise water (uint8)."""
    import cv2

    layer = (liquid * 255).astype(np.uint8)
    dist = cv2.distanceTransform(255 - cv2.Canny(layer, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
    m = layer * cv2.blur(dist, (3, 3)).astype(np.float32)
    color = np.array([175, 238, 238], dtype=np.float32) / 255.0
    with np.errstate(invalid="ignore", divide="ignore"):  # a dry layer: 0 / 0 = NaN, as the original's
        frame = np.clip(image + (m / m.max() * 0.6)[..., None] * color, 0, 1) * 255
    return np.uint8(np.nan_to_num(frame, nan=0.0))  # np.uint8(NaN) is 0 on x86, where it ran


def write_mp4(path, frames: np.ndarray, pix_fmt: str = "yuv444p", options: dict | None = None) -> None:
    """(F, H, W, 3) uint8 frames as H.264, at lossless quality unless told (qp 0, yuv444p);
    RGB -> YUV -> RGB still rounds by a level or two."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.options = options or {"qp": "0", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
