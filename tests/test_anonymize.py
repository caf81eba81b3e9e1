"""Redaction touches only pixels inside the mask, and leaves too little to recover the content."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from media import face_photo
from redact.anonymize import RedactionPolicy, anonymize
from redact.detect import FACE, PLATE, Detections


@pytest.mark.parametrize("mode", ["blur", "pixelate", "fill"])
def test_only_inside_the_mask(mode):
    image = face_photo()
    before = image.copy()
    dets = Detections([[100, 80, 180, 180], [300, 200, 380, 230]], [1, 1], [FACE, PLATE])
    out = anonymize(image, dets, RedactionPolicy(modes=(mode, mode)))
    changed = np.any(out != before, axis=2)
    outside = np.ones_like(changed)
    outside[80:180, 100:180] = outside[200:230, 300:380] = False
    assert not changed[outside].any()
    assert changed[120:140, 130:150].all() or mode != "fill"
    # face: ellipse, so the box corners are untouched; plate: rectangle, corners changed
    assert not changed[80:84, 100:104].any()
    if mode == "fill":
        assert (out[200:230, 300:380] == 0).all()


def test_blur_destroys_detail():
    """After redaction the face region keeps almost no high-frequency content of the original."""
    image = face_photo()
    roi = (slice(80, 200), slice(150, 270))
    original = cv2.Laplacian(cv2.cvtColor(image[roi], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
    out = anonymize(image.copy(), Detections([[150, 80, 270, 200]], [1], [PLATE]), RedactionPolicy())
    after = cv2.Laplacian(cv2.cvtColor(out[roi], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
    assert after < 0.02 * original


def test_boxes_outside_or_across_the_frame_edge():
    image = np.full((50, 60, 3), 200, np.uint8)
    dets = Detections([[-20, -20, 10, 10], [55, 40, 90, 80], [100, 100, 120, 120]], [1, 1, 1], [FACE, FACE, PLATE])
    out = anonymize(image, dets, RedactionPolicy(modes=("fill", "fill")))
    assert out[0, 0].tolist() == [0, 0, 0] and out[49, 59].tolist() == [0, 0, 0]
    assert out[25, 30].tolist() == [200, 200, 200]
