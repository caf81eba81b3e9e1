"""Redaction of pixels inside final boxes: ellipses for faces, rectangles for plates; blur, pixelate or fill.

"Blur" here first averages the region down to a coarse grid and then smooths it: a plain Gaussian blur of a
small kernel can be partly inverted, a mosaic of a few cells per face cannot, and the smoothing keeps the
look of a blur. Pixels outside the mask are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from redact.detect import Detections

MODES = ("blur", "pixelate", "fill")
CELLS = 6  # mosaic cells across the larger side of a box: too few to recognise a face or read a plate


@dataclass(frozen=True)
class RedactionPolicy:
    modes: tuple[str, ...] = ("blur", "blur")  # per class (face, plate)
    ellipse: tuple[bool, ...] = (True, False)
    fill_bgr: tuple[int, int, int] = (0, 0, 0)


def _mosaic(roi: np.ndarray) -> np.ndarray:
    h, w = roi.shape[:2]
    cell = max(2, -(-max(h, w) // CELLS))
    small = cv2.resize(roi, (max(1, -(-w // cell)), max(1, -(-h // cell))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def redacted_roi(roi: np.ndarray, mode: str, fill_bgr: tuple[int, int, int]) -> np.ndarray:
    """The replacement pixels for a whole box region."""
    if mode == "fill":
        return np.broadcast_to(np.array(fill_bgr, np.uint8), roi.shape)
    mosaic = _mosaic(roi)
    if mode == "pixelate":
        return mosaic
    k = max(3, (max(roi.shape[:2]) // 4) | 1)
    return cv2.GaussianBlur(mosaic, (k, k), 0)


def box_mask(h: int, w: int, ellipse: bool) -> np.ndarray:
    """Boolean mask of a box of size h x w: the inscribed ellipse, or all of it."""
    if not ellipse:
        return np.ones((h, w), bool)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (max(1, w // 2), max(1, h // 2)), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def anonymize(image: np.ndarray, dets: Detections, policy: RedactionPolicy) -> np.ndarray:
    """Redact `image` in place inside every box of `dets` and return it."""
    h, w = image.shape[:2]
    for (x1, y1, x2, y2), cls in zip(dets.xyxy, dets.cls, strict=True):
        ix1, iy1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        ix2, iy2 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
        if ix2 <= ix1 or iy2 <= iy1:
            continue
        roi = image[iy1:iy2, ix1:ix2]
        replacement = redacted_roi(roi, policy.modes[cls], policy.fill_bgr)
        if policy.ellipse[cls]:
            # the ellipse is drawn for the whole (unclipped) box, then cut to the part inside the frame
            full = box_mask(int(np.ceil(y2)) - int(np.floor(y1)), int(np.ceil(x2)) - int(np.floor(x1)), True)
            oy, ox = iy1 - int(np.floor(y1)), ix1 - int(np.floor(x1))
            mask = full[oy : oy + roi.shape[0], ox : ox + roi.shape[1]]
            roi[mask] = replacement[mask]
        else:
            roi[...] = replacement
    return image
