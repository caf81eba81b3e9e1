"""Redaction of pixels inside final boxes: ellipses for faces, rectangles for plates; blur, pixelate or fill.

"Blur" replaces the region with its own low frequencies only: the mean colours of an 8 x 8 grid of cells,
smoothed by a Gaussian of a third of the box (per axis) and interpolated back to the box's size. What is left is a
soft colour blob (skin, hair, light) whose detail does not grow with the face: a blur of a fixed small kernel, or
a mosaic of 6 cells smoothed by a quarter-box kernel (the blur before this one), keeps enough of a face for a
face recogniser to match it to its person, and barely changes a face already smeared by camera motion
(`benchmarks/reid_bench.py`). The operator is linear and separable, two small matrices per box size, so the
device path (`redacted_roi_tensor`) applies the very same matrices. Pixels outside the mask are never touched.

`anonymize_tensor` does the same to a frame on the GPU (the torch stage), so a frame goes there once and only
the finished frame comes back.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from redact.detect import Detections

if TYPE_CHECKING:
    import torch

MODES = ("blur", "pixelate", "fill")
CELLS = 6  # pixelate: mosaic cells across the larger side of a box
BLUR_GRID = 8  # blur: cells per axis whose mean colours are all that is kept of a box
BLUR_SIGMA = 1 / 3  # blur: Gaussian sigma as a fraction of the box's side (per axis)


@dataclass(frozen=True)
class RedactionPolicy:
    modes: tuple[str, ...] = ("blur", "blur")  # per class (face, plate)
    ellipse: tuple[bool, ...] = (True, False)
    fill_bgr: tuple[int, int, int] = (0, 0, 0)


def _mosaic(roi: np.ndarray) -> np.ndarray:
    h, w = roi.shape[:2]
    cell = _cell(h, w)
    small = cv2.resize(roi, (max(1, -(-w // cell)), max(1, -(-h // cell))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def _cell(h: int, w: int) -> int:
    return max(2, -(-max(h, w) // CELLS))


@functools.lru_cache(maxsize=1024)
def blur_operator(n: int, sigma: float = BLUR_SIGMA, grid: int = BLUR_GRID) -> tuple[np.ndarray, np.ndarray]:
    """The blur along one axis of n pixels, as two float32 matrices: `down` (g, n) averages the pixels into g
    cells (torch's adaptive average pooling bins) and smooths the cell means with a Gaussian of sigma * n pixels
    (sigma * g cells; truncated at the box and renormalised, so the box's edge is not darkened or mirrored); `up`
    (n, g) interpolates the g values back to n pixels (bilinear, pixel centres as OpenCV and torch align them)."""
    g = max(1, min(grid, n))
    average = np.zeros((g, n), np.float64)
    for i in range(g):
        a, b = (i * n) // g, -(-((i + 1) * n) // g)
        average[i, a:b] = 1 / (b - a)
    d = np.arange(g)[:, None] - np.arange(g)[None]
    smooth = np.exp(-0.5 * (d / max(1e-6, sigma * g)) ** 2)
    smooth /= smooth.sum(axis=1, keepdims=True)
    src = np.clip((np.arange(n) + 0.5) * g / n - 0.5, 0, g - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, g - 1)
    up = np.zeros((n, g), np.float64)
    np.add.at(up, (np.arange(n), lo), 1 - (src - lo))
    np.add.at(up, (np.arange(n), hi), src - lo)
    return (smooth @ average).astype(np.float32), up.astype(np.float32)


def lowpass(roi: np.ndarray, sigma: float = BLUR_SIGMA, grid: int = BLUR_GRID) -> np.ndarray:
    """The blur of a whole box region (h, w, 3) uint8: its cell means, smoothed, interpolated back."""
    h, w = roi.shape[:2]
    down_y, up_y = blur_operator(h, sigma, grid)
    down_x, up_x = blur_operator(w, sigma, grid)
    x = roi.astype(np.float32)
    small = np.einsum("yh,hwc,xw->yxc", down_y, x, down_x, optimize=True)
    out = np.einsum("hy,yxc,wx->hwc", up_y, small, up_x, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def redacted_roi(roi: np.ndarray, mode: str, fill_bgr: tuple[int, int, int]) -> np.ndarray:
    """The replacement pixels for a whole box region."""
    if mode == "fill":
        return np.broadcast_to(np.array(fill_bgr, np.uint8), roi.shape)
    if mode == "pixelate":
        return _mosaic(roi)
    return lowpass(roi)


def box_mask(h: int, w: int, ellipse: bool) -> np.ndarray:
    """Boolean mask of a box of size h x w: the inscribed ellipse, or all of it."""
    if not ellipse:
        return np.ones((h, w), bool)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (max(1, w // 2), max(1, h // 2)), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def pixel_boxes(dets: Detections, w: int, h: int) -> list[tuple[int, tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Per box inside the frame: its class, its pixels inside the frame (x0, y0, x1, y1) and the whole box's
    pixels (which may reach past the border: an ellipse is drawn for the whole box, then cut to the frame)."""
    out = []
    for (x1, y1, x2, y2), cls in zip(dets.xyxy, dets.cls, strict=True):
        whole = (math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2))
        inside = (max(0, whole[0]), max(0, whole[1]), min(w, whole[2]), min(h, whole[3]))
        if inside[2] > inside[0] and inside[3] > inside[1]:
            out.append((int(cls), inside, whole))
    return out


def anonymize(image: np.ndarray, dets: Detections, policy: RedactionPolicy) -> np.ndarray:
    """Redact `image` in place inside every box of `dets` and return it."""
    for cls, (ix1, iy1, ix2, iy2), (wx1, wy1, wx2, wy2) in pixel_boxes(dets, image.shape[1], image.shape[0]):
        roi = image[iy1:iy2, ix1:ix2]
        replacement = redacted_roi(roi, policy.modes[cls], policy.fill_bgr)
        if policy.ellipse[cls]:
            mask = box_mask(wy2 - wy1, wx2 - wx1, True)[iy1 - wy1 : iy2 - wy1, ix1 - wx1 : ix2 - wx1]
            roi[mask] = replacement[mask]
        else:
            roi[...] = replacement
    return image


@functools.lru_cache(maxsize=1024)
def _blur_operator_on(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`blur_operator(n)`, copied to the device once per size."""
    import torch

    return tuple(torch.from_numpy(m).to(device) for m in blur_operator(n))


def redacted_roi_tensor(roi: torch.Tensor, mode: str, fill_bgr: tuple[int, int, int]) -> torch.Tensor:
    """`redacted_roi` on the device: (h, w, 3) uint8 in, replacement pixels out."""
    import torch.nn.functional as F

    h, w = roi.shape[:2]
    if mode == "fill":
        out = roi.new_empty(roi.shape)
        for c, v in enumerate(fill_bgr):
            out[..., c].fill_(v)
        return out
    if mode == "pixelate":
        cell = _cell(h, w)
        x = roi.permute(2, 0, 1)[None].float()
        x = F.interpolate(F.adaptive_avg_pool2d(x, (-(-h // cell), -(-w // cell))), size=(h, w), mode="nearest")
        return x.round_().clamp_(0, 255).to(roi.dtype)[0].permute(1, 2, 0)
    down_y, up_y = _blur_operator_on(h, roi.device)
    down_x, up_x = _blur_operator_on(w, roi.device)
    x = roi.permute(2, 0, 1).float()  # (3, h, w)
    out = up_y @ (down_y @ x @ down_x.T) @ up_x.T
    return out.round_().clamp_(0, 255).to(roi.dtype).permute(1, 2, 0)


def anonymize_tensor(image: torch.Tensor, dets: Detections, policy: RedactionPolicy) -> torch.Tensor:
    """`anonymize` for a frame on the device ((H, W, 3) uint8), in place: the same boxes, cells and matrices. The
    ellipse is computed, not drawn (it can differ from OpenCV's by a pixel along its edge)."""
    import torch

    for cls, (ix1, iy1, ix2, iy2), (wx1, wy1, wx2, wy2) in pixel_boxes(dets, image.shape[1], image.shape[0]):
        roi = image[iy1:iy2, ix1:ix2]
        replacement = redacted_roi_tensor(roi, policy.modes[cls], policy.fill_bgr)
        if policy.ellipse[cls]:
            ry, rx = (wy2 - wy1) / 2, (wx2 - wx1) / 2
            ys = (torch.arange(iy1, iy2, device=image.device) + 0.5 - wy1 - ry) / ry
            xs = (torch.arange(ix1, ix2, device=image.device) + 0.5 - wx1 - rx) / rx
            replacement = torch.where((ys[:, None] ** 2 + xs[None] ** 2 <= 1)[..., None], replacement, roi)
        roi.copy_(replacement)
    return image
