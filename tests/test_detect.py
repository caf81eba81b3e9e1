"""Detectors on real annotated photos; the torch conversion of CenterFace agrees with the ONNX graph."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision

from benchmarks.detector_eval import load_gt, match
from conftest import EVALDATA
from redact.detect import FACE, PLATE, CenterFaceDetector, Detections, YoloPlateDetector, complete_cut_faces
from redact.models import resolve


@pytest.fixture(scope="module")
def centerface():
    path, digest, _ = resolve("centerface", "faces")
    return path, digest


def test_detections_struct_filters_like_arrays():
    d = Detections([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.3], [FACE, PLATE])
    assert len(d) == 2 and d.track_id.tolist() == [-1, -1]
    strong = d[d.score > 0.5]
    assert len(strong) == 1 and strong.cls.tolist() == [FACE]
    assert len(Detections.merge([d, Detections(), strong])) == 3


def test_centerface_finds_small_faces_at_native_resolution(centerface):
    gt = load_gt(EVALDATA / "faces")
    detector = CenterFaceDetector(*centerface)
    images = [k for k in gt if k.startswith("dlib_pascal")]
    hits = total = 0
    for name in images:
        dets = detector([cv2.imread(str(EVALDATA / "faces" / name))])[0]
        hits += match(gt[name], dets.xyxy, dets.score)
        total += len(gt[name])
    assert total == 43 and hits / total >= 0.9  # group photos with faces of 30-45 px


def test_torch_conversion_matches_onnx(centerface):
    image = cv2.imread(str(EVALDATA / "faces/dlib_pascal/images/2007_007763.jpg"))
    onnx_det = CenterFaceDetector(*centerface)
    torch_det = CenterFaceDetector(*centerface, backend="torch")
    blob, _, _ = onnx_det._blob([image])
    for a, b in zip(onnx_det.forward(blob), torch_det.forward(blob), strict=True):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)
    a, b = onnx_det([image])[0], torch_det([image])[0]
    assert len(a) == len(b) >= 5
    iou = torchvision.ops.box_iou(torch.from_numpy(a.xyxy), torch.from_numpy(b.xyxy)).max(dim=1).values
    assert float(iou.min()) > 0.99


def test_batch_equals_single(centerface):
    detector = CenterFaceDetector(*centerface)
    image = cv2.imread(str(EVALDATA / "faces/dlib_pascal/images/2007_007763.jpg"))
    flipped = np.ascontiguousarray(image[:, ::-1])
    single = [detector([image])[0], detector([flipped])[0]]
    batch = detector([image, flipped])
    for s, b in zip(single, batch, strict=True):
        assert np.allclose(s.xyxy, b.xyxy, atol=0.5)


def test_plate_detector_on_real_plates():
    gt = load_gt(EVALDATA / "plates")
    path, digest, _ = resolve("plate-mahdi", "plates")
    detector = YoloPlateDetector(path, digest)
    names = sorted(gt)[:40]
    hits = sum(match(gt[n], *(lambda d: (d.xyxy, d.score))(detector([cv2.imread(str(EVALDATA / "plates" / n))])[0]))
               for n in names)
    assert hits / len(names) >= 0.85


def test_faces_cut_by_the_frame_border_are_completed_beyond_it():
    dets = Detections([[100, 0, 140, 30],     # face leaving through the top: 40 wide, only 30 visible
                       [0, 200, 20, 250],     # face leaving through the left: 20 of its 40 px visible
                       [300, 300, 340, 350],  # whole face inside: untouched
                       [500, 0, 600, 20]],    # a plate at the top: untouched
                      [0.9] * 4, [FACE, FACE, FACE, PLATE])
    out = complete_cut_faces(dets, 640, 480)
    assert np.allclose(out.xyxy, [[100, -20, 140, 30], [-20, 200, 20, 250], [300, 300, 340, 350], [500, 0, 600, 20]])
