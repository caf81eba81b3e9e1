"""Detectors on real annotated photos; the torch conversion of CenterFace agrees with the ONNX graph."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision

from benchmarks.detector_eval import load_gt, match
from conftest import EVALDATA
from redact.detect import (
    FACE,
    FACE_VETO_SCORE,
    PLATE,
    CenterFaceDetector,
    Detections,
    YoloPlateDetector,
    complete_cut_faces,
    drop_plates_holding_faces,
    fuse,
)
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
    onnx_det = CenterFaceDetector(*centerface, backend="onnxruntime")  # fp32, as torch on the CPU
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


def test_fuse_keeps_one_box_per_object_and_class():
    """Two models boxing the same plate give one box (the more confident); what only one found stays; a face
    and a plate in the same place are different objects."""
    a = Detections([[10, 10, 50, 20], [200, 200, 240, 210]], [0.6, 0.3], [PLATE, PLATE])
    b = Detections([[11, 10, 52, 21], [400, 50, 440, 60], [10, 10, 50, 20]], [0.8, 0.5, 0.9], [PLATE, PLATE, FACE])
    out = fuse([a, b])
    assert sorted(map(tuple, out.xyxy.tolist())) == sorted([(11, 10, 52, 21), (200, 200, 240, 210), (400, 50, 440, 60),
                                                            (10, 10, 50, 20)])
    assert np.isclose(out.score[(out.cls == PLATE) & (out.xyxy[:, 0] == 11)], 0.8).all()
    assert len(fuse([a, Detections()])) == 2 and len(fuse([])) == 0


def test_plate_ensemble_finds_what_either_model_finds(centerface):
    """The default plate ensemble on real photos, as the pipeline runs it (with faces, and without plate boxes
    holding a face): recall at least that of its better member, and boxes both models found are not doubled."""
    gt = load_gt(EVALDATA / "plates")
    names = sorted(gt)[40:100]
    images = [cv2.imread(str(EVALDATA / "plates" / n)) for n in names]
    members = [YoloPlateDetector(*resolve(m, "plates")[:2], threshold=0.2, imgsz=640)
               for m in ("plate-mahdi", "plate-fastanpr")]
    faces = CenterFaceDetector(*centerface, threshold=0.2)
    alone = [[m([image])[0] for image in images] for m in members]
    fused = [fuse([a[i] for a in alone]) for i in range(len(images))]
    kept = [drop_plates_holding_faces(fuse([d, faces([image])[0]])) for d, image in zip(fused, images, strict=True)]

    def recall(found: list[Detections]) -> float:
        return sum(match(gt[n], d.xyxy[d.cls == PLATE], d.score[d.cls == PLATE])
                   for n, d in zip(names, found, strict=True)) / len(names)

    assert recall(kept) == recall(fused) >= max(recall(a) for a in alone) >= 0.85
    assert sum(map(len, fused)) < sum(len(d) for a in alone for d in a)


def test_a_plate_box_holding_a_face_is_dropped():
    """A framed picture of a person that a plate model calls a plate: its box goes, the face's stays; a plate
    beside a face, a face box sticking out of a plate box, or a weak face inside a plate box (a false positive on
    its characters) leaves the plate box alone."""
    dets = Detections([[100, 100, 220, 180],   # "plate" around a photo ...
                       [140, 110, 170, 150],   # ... holding this face
                       [300, 300, 360, 320],   # a plate
                       [350, 280, 380, 330],   # a face overlapping that plate but not inside it
                       [500, 500, 560, 520],   # a plate ...
                       [510, 502, 525, 518]],  # ... holding a face scored below FACE_VETO_SCORE
                      [0.5, 0.9, 0.6, 0.8, 0.7, FACE_VETO_SCORE - 0.01], [PLATE, FACE, PLATE, FACE, PLATE, FACE])
    out = drop_plates_holding_faces(dets)
    assert out.xyxy[:, 0].tolist() == [140, 300, 350, 500, 510]
    assert len(drop_plates_holding_faces(dets[dets.cls == PLATE])) == 3
    # on a frame where only the plate models ran, the faces found last (carried here) decide
    plates, faces = dets[dets.cls == PLATE], dets[dets.cls == FACE]
    assert drop_plates_holding_faces(plates, faces).xyxy[:, 0].tolist() == [300, 500]
    assert len(drop_plates_holding_faces(plates, Detections())) == 3


def test_faces_cut_by_the_frame_border_are_completed_beyond_it():
    dets = Detections([[100, 0, 140, 30],     # face leaving through the top: 40 wide, only 30 visible
                       [0, 200, 20, 250],     # face leaving through the left: 20 of its 40 px visible
                       [300, 300, 340, 350],  # whole face inside: untouched
                       [500, 0, 600, 20]],    # a plate at the top: untouched
                      [0.9] * 4, [FACE, FACE, FACE, PLATE])
    out = complete_cut_faces(dets, 640, 480)
    assert np.allclose(out.xyxy, [[100, -20, 140, 30], [-20, 200, 20, 250], [300, 300, 340, 350], [500, 0, 600, 20]])


MOTION_PLATE = (225, 228, 358, 298)  # the smeared plate of licenseplate_motion.jpg, x1 y1 x2 y2, by eye


def test_a_motion_smeared_plate_is_redacted_in_every_frame(tmp_path, redactor):
    """OpenCV's licenseplate_motion.jpg held for 20 frames (a car pulling away from the camera): at the default
    1280 input the plate models saw nothing in this 600x482 frame (0 tracks); its own size finds the plate."""
    from pathlib import Path

    import av

    from redact.plan import Plan, plan_path

    image = cv2.imread(str(Path(__file__).parent / "data" / "licenseplate_motion.jpg"))
    clip = tmp_path / "pulling-away.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    result = redactor.run(clip, tmp_path / "out")
    x1, y1, x2, y2 = MOTION_PLATE
    covered = []
    with Plan(plan_path(tmp_path / "out", "pulling-away")) as plan:
        boxes = plan.boxes(0, result.frames - 1)
        for t in range(result.frames):
            mask = np.zeros(image.shape[:2], bool)
            for (a, b, c, d), cls in zip(boxes.at(t).xyxy, boxes.at(t).cls, strict=True):
                if cls == PLATE:
                    mask[int(b):int(np.ceil(d)), int(a):int(np.ceil(c))] = True
            covered.append(mask[y1:y2, x1:x2].mean())
    assert result.frames == 20 and np.mean(np.array(covered) >= 0.9) >= 0.95, covered


@pytest.mark.parametrize("model", ["centerface", "plate-mahdi"])
def test_the_cpu_runtimes_find_the_same_objects(model):
    """OpenVINO (bf16 where the CPU has it, as `redact run` picks it there) and onnxruntime (fp32) on real photos:
    the same objects found, in the same places (bf16 moves scores and edges a little)."""
    gt = load_gt(EVALDATA / ("faces" if model == "centerface" else "plates"))
    names = sorted(k for k in gt if not k.startswith("facemask"))[:25]
    path, digest, _ = resolve(model, "faces" if model == "centerface" else "plates")
    make = (lambda rt: CenterFaceDetector(path, digest, threshold=0.2, scale=1.5, backend=rt)) if model == "centerface" \
        else (lambda rt: YoloPlateDetector(path, digest, threshold=0.2, imgsz=1280, backend=rt))
    ov, ort = make("openvino"), make("onnxruntime")
    folder = EVALDATA / ("faces" if model == "centerface" else "plates")
    hits = {"ov": 0, "ort": 0}
    strong = matched = 0
    for name in names:
        image = cv2.imread(str(folder / name))
        a, b = ov([image])[0], ort([image])[0]
        hits["ov"] += match(gt[name], a.xyxy, a.score)
        hits["ort"] += match(gt[name], b.xyxy, b.score)
        size = np.minimum(b.xyxy[:, 2] - b.xyxy[:, 0], b.xyxy[:, 3] - b.xyxy[:, 1])
        confident = b[(b.score >= 0.4) & (size >= 16)]  # clear of the threshold, big enough for IoU to mean "in place"
        strong += len(confident)
        if len(confident) and len(a):
            iou = torchvision.ops.box_iou(torch.from_numpy(confident.xyxy), torch.from_numpy(a.xyxy)).max(dim=1).values
            matched += int((iou >= 0.8).sum())
    assert hits["ov"] == hits["ort"] >= 0.85 * sum(len(gt[n]) for n in names)
    assert strong >= 15 and matched == strong


def test_plate_models_can_take_turns(centerface):
    """With turns, the face detector runs on every request and the two plate models alternate; without, all run."""
    from redact.detect import DetectionQueue

    gt = load_gt(EVALDATA / "plates")
    images = [cv2.imread(str(EVALDATA / "plates" / n)) for n in sorted(gt)[:3]]
    images = [cv2.resize(im, (640, 480)) for im in images]  # one size: one batch
    face = CenterFaceDetector(*centerface, threshold=0.2)
    plates = [YoloPlateDetector(*resolve(m, "plates")[:2], threshold=0.2, imgsz=640) for m in ("plate-mahdi", "plate-fastanpr")]
    alone = [d(images) for d in (face, *plates)]
    queue = DetectionQueue([face, *plates], max_frames=4)
    assert [queue.active(turns={FACE: t, PLATE: t}) for t in range(3)] == [(0, 1), (0, 2), (0, 1)]
    assert queue.active((PLATE,)) == (1, 2) and queue.active((FACE,), {PLATE: 5}) == (0,)
    assert queue.active(turns={FACE: 1}) == (0, 1, 2)  # only classes given a turn take turns
    for turn, member in ((0, 1), (1, 2), (7, 2)):
        got = queue(images, queue.active(turns={PLATE: turn}))
        for i, dets in enumerate(got):
            want = fuse([alone[0][i], alone[member][i]])
            assert np.allclose(np.sort(dets.xyxy, axis=0), np.sort(want.xyxy, axis=0), atol=0.5)
    assert all(len(d) == len(fuse([a[i] for a in alone])) for i, d in enumerate(queue(images)))
    assert all(len(d) == len(fuse([a[i] for a in alone[1:]])) for i, d in enumerate(queue(images, (1, 2))))
    assert sum(len(a[i]) for a in alone[1:] for i in range(3)) > 0  # the photos have plates to find
