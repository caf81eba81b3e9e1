"""Temporal smoothing: gaps between detections of one track are filled, tracks are padded, boxes grow."""

from __future__ import annotations

import math

import cv2
import numpy as np

from media import face_photo
from redact.detect import FACE, PLATE, Detections
from redact.track import CameraPath, Smoother, Tracker, TrackPolicy, scale_boxes, warp_boxes
from redact.video import Frame


def det(box, cls=FACE, tid=1, score=0.9):
    return Detections([box], [score], [cls], [tid])


def test_gap_is_interpolated_and_padded():
    s = Smoother(TrackPolicy(pad_frames=3, max_gap=10, dilate=(1.0, 1.0), grow_per_frame=0.0))
    s.add(10, det([0, 0, 10, 10]))
    s.add(16, det([60, 0, 70, 10]))
    assert np.allclose(s.final(13).xyxy, [[30, 0, 40, 10]])  # halfway between the two detections
    # padded before the first detection and after the last, following the track's motion (10 px/frame)
    assert np.allclose(s.final(7).xyxy, [[-30, 0, -20, 10]])
    assert np.allclose(s.final(19).xyxy, [[90, 0, 100, 10]])
    assert len(s.final(6)) == 0 and len(s.final(20)) == 0
    rec = s.records[1]
    assert (rec.first, rec.last, rec.detections) == (10, 16, 2)


def test_gap_longer_than_max_gap_is_not_bridged():
    s = Smoother(TrackPolicy(pad_frames=2, max_gap=5, dilate=(1.0, 1.0), grow_per_frame=0.0))
    s.add(0, det([0, 0, 10, 10]))
    s.add(20, det([100, 0, 110, 10]))
    assert len(s.final(10)) == 0


def test_single_detection_is_held_in_place():
    s = Smoother(TrackPolicy(pad_frames=3, max_gap=10, dilate=(1.0, 1.0), grow_per_frame=0.0))
    s.add(5, det([0, 0, 10, 10]))
    assert all(np.allclose(s.final(f).xyxy, [[0, 0, 10, 10]]) for f in (2, 5, 8))


def test_a_lone_weak_large_detection_is_not_padded():
    """A picture a plate model fired on once, or texture CenterFace took for a face close to the camera: its box
    only where it was seen. A small, a confident or a repeated detection is padded as usual; for faces, small is
    anything below 150 px, where a real face can be found once at a low score."""
    s = Smoother(TrackPolicy(pad_frames=3, max_gap=10, dilate=(1.0, 1.0), grow_per_frame=0.0))
    s.add(5, det([0, 0, 60, 80], PLATE, tid=1, score=0.3))  # lone: weak and large
    s.add(5, det([100, 0, 130, 30], PLATE, tid=2, score=0.3))  # small
    s.add(5, det([200, 0, 260, 80], PLATE, tid=3, score=0.8))  # confident
    s.add(5, det([300, 0, 360, 80], PLATE, tid=4, score=0.3))  # weak and large, but seen again
    s.add(9, det([300, 0, 360, 80], PLATE, tid=4, score=0.3))
    s.add(5, det([400, 0, 460, 80], PLATE, tid=5, score=0.3))  # seen again nearby, but split from its track
    s.add(7, det([410, 5, 470, 85], PLATE, tid=6, score=0.3))
    s.add(5, det([500, 0, 620, 140], FACE, tid=7, score=0.3))  # a face below 150 px: padded
    s.add(5, det([700, 0, 900, 240], FACE, tid=8, score=0.3))  # lone: a weak face of 200 px
    s.add(5, det([1000, 0, 1200, 240], FACE, tid=9, score=0.6))  # as large, confident
    assert sorted(s.final(5).track_id.tolist()) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert sorted(s.final(4).track_id.tolist()) == sorted(s.final(6).track_id.tolist()) == [2, 3, 4, 5, 6, 7, 9]


def test_each_class_has_its_own_padding():
    s = Smoother(TrackPolicy(pad_frames=(2, 4), max_gap=3, dilate=(1.0, 1.0), grow_per_frame=0.0))
    assert s.policy.lookahead == 4
    s.add(10, det([0, 0, 10, 10], FACE, 1))
    s.add(10, det([100, 100, 140, 110], PLATE, 2))
    assert s.final(12).cls.tolist() == [FACE, PLATE] and s.final(13).cls.tolist() == [PLATE]
    assert s.final(14).cls.tolist() == [PLATE] and len(s.final(15)) == 0


def test_held_boxes_grow_and_classes_dilate_separately():
    s = Smoother(TrackPolicy(pad_frames=4, max_gap=10, dilate=(1.5, 1.2), grow_per_frame=0.1))
    s.add(0, det([0, 0, 10, 10], FACE, 1))
    s.add(0, det([100, 100, 140, 110], PLATE, 2))
    now = s.final(0)
    widths = now.xyxy[:, 2] - now.xyxy[:, 0]
    assert np.allclose(sorted(widths), [15, 48])
    later = s.final(2)  # held two frames: 1.5 * 1.2 for the face
    assert np.isclose((later.xyxy[later.cls == FACE][0, 2] - later.xyxy[later.cls == FACE][0, 0]), 18)


def test_prune_keeps_what_future_frames_need():
    s = Smoother(TrackPolicy(pad_frames=2, max_gap=6, dilate=(1.0, 1.0), grow_per_frame=0.0))
    for f in range(0, 40, 2):
        s.add(f, det([f, 0, f + 10, 10]))
    for f in range(0, 30):
        assert len(s.final(f)) == 1
        s.prune(f)
    assert len(s.obs[1][0]) < 20


def test_tracker_links_moving_box_and_keeps_unconfirmed():
    tracker = Tracker(every=1, max_gap=30)
    ids = []
    image = np.zeros((480, 640, 3), np.uint8)
    for f in range(5):
        out = tracker.update(Detections([[10 + 3 * f, 10, 50 + 3 * f, 50], [300, 300, 340, 340]], [0.9, 0.12],
                                        [FACE, FACE]), f, image)
        assert len(out) == 2 and (out.track_id > 0).all()  # the weak detection is kept, with its own id
        ids.append(int(out.track_id[0]))
    assert len(set(ids)) == 1


def test_a_class_is_tracking_while_found_or_lately_lost():
    """`Tracker.tracking` (the plate models take turns while it is false): a plate found on one look and not on
    the next is lost; it counts for `lost_looks` looks (any while kept, with inf); found again, it is tracked."""
    tracker = Tracker(every=2, max_gap=30)
    image = np.zeros((480, 640, 3), np.uint8)
    plate, nothing = Detections([[100, 100, 160, 130]], [0.9], [PLATE]), Detections()
    seen = []
    for f, dets in enumerate([plate, plate, nothing, nothing, nothing, plate]):
        tracker.update(dets, 2 * f, image, (PLATE,))
        seen.append((tracker.tracking(PLATE), tracker.tracking(PLATE, 2), tracker.tracking(PLATE, math.inf)))
    assert seen == [(True,) * 3, (True,) * 3, (False, True, True), (False, True, True), (False, False, True),
                    (True,) * 3]
    assert tracker.trackers[PLATE].lost_stracks == []  # found again: the lost track took it back
    assert not tracker.tracking(FACE, math.inf)


def test_classes_never_share_a_track():
    tracker = Tracker(every=1, max_gap=30)
    image = np.zeros((480, 640, 3), np.uint8)
    seen: dict[int, set] = {}
    for f in range(4):
        cls = FACE if f % 2 == 0 else PLATE  # the same place alternates between a face and a plate
        out = tracker.update(Detections([[100, 100, 160, 130]], [0.9], [cls]), f, image)
        seen.setdefault(int(out.track_id[0]), set()).add(cls)
    assert all(len(classes) == 1 for classes in seen.values())


def test_scale_boxes_about_centre():
    assert np.allclose(scale_boxes(np.array([[10, 10, 20, 30]], np.float32), 2.0), [[5, 0, 25, 40]])


def shifting_path(steps: list[tuple[float, float]]) -> CameraPath:
    """A camera path that moves the scene by the given (dx, dy) on each frame after the first."""
    path = CameraPath()
    path.add(0, np.eye(2, 3))
    for f, (dx, dy) in enumerate(steps, 1):
        path.add(f, np.array([[1, 0, dx], [0, 1, dy]], float))
    return path


def test_the_last_detections_of_a_class_are_carried_to_a_later_frame_by_the_camera():
    """Faces run on every 3rd frame: a frame where only plates ran still knows where the faces are."""
    tracker = Tracker(every=(3, 2), max_gap=30, path=shifting_path([(10, 0), (10, -4)]))
    image = np.zeros((480, 640, 3), np.uint8)
    assert len(tracker.carried(FACE, 0)) == 0
    tracker.update(Detections([[100, 100, 140, 150], [300, 300, 360, 320]], [0.9, 0.8], [FACE, PLATE]), 0, image)
    tracker.update(Detections(), 2, image, classes=(PLATE,))  # plates looked for again: none; faces not looked for
    faces = tracker.carried(FACE, 2)
    assert np.allclose(faces.xyxy, [[120, 96, 160, 146]]) and faces.score.tolist() == [np.float32(0.9)]
    assert len(tracker.carried(PLATE, 2)) == 0


def test_boxes_between_detections_follow_the_camera():
    # the camera shakes: the scene jumps +20, -30, +10 px; the object is still in the scene, seen at 0 and 3
    path = shifting_path([(20, 0), (-30, 0), (10, 0)])
    s = Smoother(TrackPolicy(pad_frames=2, max_gap=10, dilate=(1.0, 1.0), grow_per_frame=0.0), path)
    s.add(0, det([100, 0, 110, 10]))
    s.add(3, det([100, 0, 110, 10]))
    assert np.allclose(s.final(1).xyxy, [[120, 0, 130, 10]])  # straight-line interpolation would say 100
    assert np.allclose(s.final(2).xyxy, [[90, 0, 100, 10]])
    # padding after the last detection moves with the camera too, and the path forgets old frames
    path.add(4, np.array([[1, 0, 0], [0, 1, -15]], float))
    assert np.allclose(s.final(4).xyxy, [[100, -15, 110, -5]])
    for f in range(5, 46):
        path.add(f, np.eye(2, 3))
    s.prune(40)
    assert min(path.chain) == 40 and max(path.chain) == 45  # the track is gone: nothing older is needed


def test_a_face_the_camera_turned_away_from_is_covered_when_it_comes_back():
    """The wearer turns away (the scene moves 100 px left a frame, for 6 frames) and back. Face 1, last seen at
    frame 0, leaves the view at frame 3 and is back at 10 (its right edge past the border): it is redacted for
    pad_frames frames from there, where the camera path puts it, though no detector found it again. Face 2 is
    still in view when its padding ends (lost, not left behind): not held then, but covered when it returns."""
    path = shifting_path([(-100, 0)] * 6 + [(100, 0)] * 10)
    policy = TrackPolicy(pad_frames=2, max_gap=4, dilate=(1.0, 1.0), grow_per_frame=0.0)
    s = Smoother(policy, path, size=(640, 480))
    s.add(0, Detections.merge([det([200, 100, 240, 150]), det([300, 300, 340, 350], tid=2)]))
    shown = {f: s.final(f) for f in range(17)}
    assert {f: sorted(d.track_id.tolist()) for f, d in shown.items() if len(d)} == {
        0: [1, 2], 1: [1, 2], 2: [1, 2], 9: [2], 10: [1, 2], 11: [1]}
    assert np.allclose(shown[11].xyxy, [[100, 100, 140, 150]])  # the scene is 100 px left of where it was at 0
    still = Smoother(policy, shifting_path([(0, 0)] * 10), size=(640, 480))
    still.add(0, det([200, 100, 240, 150]))
    assert [f for f in range(10) if len(still.final(f))] == [0, 1, 2]  # never left the view: only padded


def test_warp_boxes_covers_rotated_corners():
    angle = np.deg2rad(90)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    assert np.allclose(warp_boxes(np.array([[10, 0, 30, 10]], np.float32), rot), [[-10, 10, 0, 30]], atol=1e-4)


def test_camera_motion_is_measured_on_real_pixels():
    image = face_photo()
    h, w = image.shape[:2]
    moved = cv2.warpAffine(image, np.array([[1, 0, 12], [0, 1, -6]], np.float32), (w, h), borderMode=cv2.BORDER_REFLECT)
    zoomed = cv2.resize(moved, None, fx=2, fy=2)[:h, :w]  # a jump no camera makes in one frame: not trusted
    frames = [Frame(i, i, im) for i, im in enumerate([image, moved, zoomed])]
    path = CameraPath()
    measured = list(path.measure(frames, threads=2))
    assert [f.index for f, _ in measured] == [0, 1, 2]  # in order, though measured in parallel
    for f, motion in measured:
        path.add(f.index, motion)
    assert np.array_equal(measured[0][1], np.eye(2, 3)) and np.array_equal(measured[2][1], np.eye(2, 3))
    assert np.allclose(path.between(0, 1)[:2, 2], [12, -6], atol=1.0)
    assert np.allclose(path.between(1, 0)[:2, 2], [-12, 6], atol=1.0)
