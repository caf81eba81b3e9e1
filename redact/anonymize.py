"""Redaction of pixels inside final boxes: ellipses for faces, rectangles for plates; blur, pixelate or fill.

"Blur" here first averages the region down to a coarse grid and then smooths it: a plain Gaussian blur of a
small kernel can be partly inverted, a mosaic of a few cells per face cannot, and the smoothing keeps the
look of a blur. Pixels outside the mask are never touched.

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
CELLS = 6  # mosaic cells across the larger side of a box: too few to recognise a face or read a plate


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


def _kernel_size(h: int, w: int) -> int:
    """The smoothing kernel after the mosaic: a quarter of the box, odd."""
    return max(3, (max(h, w) // 4) | 1)


def redacted_roi(roi: np.ndarray, mode: str, fill_bgr: tuple[int, int, int]) -> np.ndarray:
    """The replacement pixels for a whole box region."""
    if mode == "fill":
        return np.broadcast_to(np.array(fill_bgr, np.uint8), roi.shape)
    mosaic = _mosaic(roi)
    if mode == "pixelate":
        return mosaic
    k = _kernel_size(*roi.shape[:2])
    return cv2.GaussianBlur(mosaic, (k, k), 0)


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


@functools.lru_cache(maxsize=256)
def _gaussian(k: int, device: torch.device) -> torch.Tensor:
    """OpenCV's own kernel for size k with sigma 0, as `GaussianBlur` uses it (fixed tables up to 7 taps), copied
    to the device once per size."""
    import torch

    return torch.from_numpy(cv2.getGaussianKernel(k, 0).ravel().astype(np.float32)).to(device)


def redacted_roi_tensor(roi: torch.Tensor, mode: str, fill_bgr: tuple[int, int, int]) -> torch.Tensor:
    """`redacted_roi` on the device: (h, w, 3) uint8 in, replacement pixels out."""
    import torch.nn.functional as F

    h, w = roi.shape[:2]
    if mode == "fill":
        out = roi.new_empty(roi.shape)
        for c, v in enumerate(fill_bgr):
            out[..., c].fill_(v)
        return out
    cell = _cell(h, w)
    x = roi.permute(2, 0, 1)[None].float()
    x = F.interpolate(F.adaptive_avg_pool2d(x, (-(-h // cell), -(-w // cell))), size=(h, w), mode="nearest")
    if mode == "blur":
        k = _kernel_size(h, w)
        g = _gaussian(k, roi.device)
        x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, k).expand(3, 1, 1, k), groups=3)
        x = F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="replicate"), g.view(1, 1, k, 1).expand(3, 1, k, 1), groups=3)
    return x.round_().clamp_(0, 255).to(roi.dtype)[0].permute(1, 2, 0)


def anonymize_tensor(image: torch.Tensor, dets: Detections, policy: RedactionPolicy) -> torch.Tensor:
    """`anonymize` for a frame on the device ((H, W, 3) uint8), in place: the same boxes, cells and kernel. The
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
