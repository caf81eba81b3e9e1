"""Tracking and temporal smoothing: turn per-frame detections into boxes that leave no frame uncovered.

Detectors miss objects for a frame or two (blur, turn of the head, a skipped frame). A body camera moves
with its wearer, so between two detections an object's box does not move in a straight line: it shakes with
the camera. `CameraPath` records the camera's motion on every frame (sparse optical flow, as ultralytics' GMC);
BoT-SORT (ultralytics) links detections of the same object through that motion; the `Smoother` then fills
every gap between two detections of a track by interpolating in camera-stabilised coordinates, keeps each
track redacted `pad_frames` before its first and after its last detection (moving on with the camera and at
the track's own velocity), and grows held boxes with distance from their detection to absorb what the motion
model misses. A track the camera turned away from is redacted again for `pad_frames` frames when the camera
path brings it back into view, before the detector finds the face cut by the border. A lone track (one weak,
large detection, nothing else near it) is not padded: that is how pictures, signs and texture look. It answers for
frame t only once detections up to t + lookahead are known, so a detection in the future covers a miss now.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace

import cv2
import numpy as np

from redact.detect import CLASS_NAMES, Detections
from redact.video import Frame

IDENTITY = np.eye(3)
ANALYSIS_WIDTH = 640  # px: camera motion to a fraction of a pixel, at a few ms a frame
CORNERS = {"maxCorners": 200, "qualityLevel": 0.01, "minDistance": 8, "blockSize": 3}
MIN_INLIERS = 0.5  # share of tracked corners the fitted motion must explain
MAX_STEP = 0.25  # a frame-to-frame zoom or shift beyond this share of the frame is a scene cut or a bad fit


@dataclass(frozen=True)
class TrackPolicy:
    """How tracks are held and grown. pad_frames, max_gap and dilate have no defaults here: they are
    RedactOptions' (pad_frames, max_gap, face_dilate and plate_dilate), which the pipeline passes."""

    pad_frames: int | tuple[int, ...]  # one for all classes, or one per class (face, plate)
    max_gap: int  # frames between two detections of one track that are filled by interpolation
    dilate: tuple[float, ...]  # box scale per class (face, plate)
    grow_per_frame: float = 0.02  # extra scale per frame a box is held away from a detection; with the camera's
    # motion compensated, 0.03 leaked no less on the leak bench and blanked 0.2-0.5% more background
    lone_pad: int = 0  # padding of a *lone* track (`Smoother._lone`): detected once, weakly (score below
    lone_score: float = 0.5  # lone_score), large (box at least lone_size px on its short side, per class), and
    lone_size: tuple[float, ...] = (150.0, 40.0)  # no other detection of its class near it within its padding.
    # A plate that large is readable and found again at the next look; one seen once at a low score is a plate
    # model firing on a picture or a sign (of a person, often). Leak bench, replayed at the defaults: background
    # blanked on the face clips 3.99% -> 2.62% (held-out seeds 2, 3: 2.37% -> 2.06%), on the plate clips 1.81% ->
    # 1.68% (3.11% -> 2.80%); the same plates and faces >= 20 px leaked, 4 more faces < 20 px (of 2,572) that such
    # a box had covered by chance. A face that large fills a fifth of a 720p frame, and CenterFace finds a real
    # one again within its padding; one found once at a low score was texture. Face clips, replayed: background
    # 2.17% -> 1.83% (seeds 0, 1), the same faces leaked in every size bucket, on seeds 2, 3 and at 1080p as well;
    # the same from 80 to 200 px, while 60 px left 3 more face box-frames >= 20 px uncovered.

    def pad(self, cls: int) -> int:
        return self.pad_frames if isinstance(self.pad_frames, int) else self.pad_frames[cls]

    @property
    def lookahead(self) -> int:
        return max(*(self.pad(c) for c in range(len(self.dilate))), self.max_gap)


def scale_boxes(xyxy: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
    """Scale boxes about their centres."""
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    half = (xyxy[:, 2:] - xyxy[:, :2]) / 2 * np.asarray(factor, np.float32).reshape(-1, 1)
    return np.concatenate([centre - half, centre + half], axis=1)


def overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two xyxy boxes share any area."""
    return bool(min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]))


def warp_boxes(xyxy: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Boxes carried by a 3x3 affine `transform`: the axis-aligned hull of the moved corners (a rolled box is
    covered whole, never clipped)."""
    if transform is IDENTITY or not len(xyxy):
        return xyxy
    x0, y0, x1, y1 = np.asarray(xyxy, np.float64).T
    corners = np.stack([np.stack([x, y], -1) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], 1)  # n,4,2
    moved = corners @ transform[:2, :2].T + transform[:2, 2]
    return np.concatenate([moved.min(1), moved.max(1)], axis=1).astype(np.float32)


def shrink(image: np.ndarray) -> tuple[np.ndarray, int]:
    """The grey image camera motion is measured on (about ANALYSIS_WIDTH wide), and the factor it was reduced by."""
    factor = max(1, round(image.shape[1] / ANALYSIS_WIDTH))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return (grey if factor == 1 else cv2.resize(grey, (image.shape[1] // factor, image.shape[0] // factor),
                                                interpolation=cv2.INTER_AREA)), factor


def frame_motion(before: tuple[np.ndarray, int], after: tuple[np.ndarray, int]) -> np.ndarray:
    """The camera's motion between two `shrink`-ed frames as a 2x3 similarity in full-frame pixels: ultralytics'
    sparse optical-flow GMC (corners, Lucas-Kanade, RANSAC), as a function of the pair instead of a stateful
    object, so consecutive pairs can be measured in parallel; fewer, spread-out corners (its 1000 at 1 px apart
    cost three times as much for the same estimate). Identity where it cannot be measured or is implausible:
    a fit most corners disagree with, or a frame-to-frame zoom or shift beyond MAX_STEP of the frame, is a
    scene cut or a bad fit."""
    (a, factor), (b, _) = before, after
    identity = np.eye(2, 3)
    corners = cv2.goodFeaturesToTrack(a, mask=None, **CORNERS)
    if corners is None or len(corners) < 5:
        return identity
    moved, status, _ = cv2.calcOpticalFlowPyrLK(a, b, corners, None)
    good = status.ravel().astype(bool)
    if good.sum() < 5:
        return identity
    motion, inliers = cv2.estimateAffinePartial2D(corners[good], moved[good], method=cv2.RANSAC)
    if motion is None or not np.isfinite(motion).all() or inliers.sum() < MIN_INLIERS * good.sum():
        return identity  # most tracked corners disagree with the fit: no one motion of the camera explains them
    motion[:, 2] *= factor
    scale = np.sqrt(abs(np.linalg.det(motion[:, :2])))
    if abs(scale - 1) > MAX_STEP or np.abs(motion[:, 2]).max() > MAX_STEP * max(a.shape) * factor:
        return identity
    return motion


class CameraPath:
    """The camera's motion per frame, so that a box seen in frame a can be placed in frame t.

    Each frame's motion against the one before is measured by `frame_motion` (`measure` runs several pairs at
    once). Motions are chained into transforms from a recent anchor frame, re-anchored as old frames are
    forgotten, so precision holds over hours.
    """

    def __init__(self) -> None:
        self.chain: dict[int, np.ndarray] = {}  # frame -> transform from the anchor frame to it

    @staticmethod
    def measure(frames: Iterable[Frame], threads: int = 2) -> Iterator[tuple[Frame, np.ndarray]]:
        """Each frame, in order, with its motion from the frame before (identity for the first), measured by
        `threads` threads at once: OpenCV releases the GIL, and one 1080p stream needs several cores to keep
        pace with a GPU."""
        with ThreadPoolExecutor(threads, thread_name_prefix="redact-motion") as pool:
            pending: deque[tuple[Frame, Future | None]] = deque()
            before: Future | None = None
            for frame in frames:
                # FIFO: each pair's task is queued after both its shrink tasks, so waiting on them cannot deadlock
                after = pool.submit(shrink, frame.image)
                step = None if before is None else pool.submit(lambda a, b: frame_motion(a.result(), b.result()),
                                                               before, after)
                pending.append((frame, step))
                before = after
                while len(pending) > 2 * threads:
                    done, step = pending.popleft()
                    yield done, np.eye(2, 3) if step is None else step.result()
            for done, step in pending:
                yield done, np.eye(2, 3) if step is None else step.result()

    def add(self, frame: int, motion: np.ndarray) -> None:
        """Record `motion` (2x3, from frame - 1 to `frame`); frames arrive in order."""
        before = self.chain.get(frame - 1)
        step = np.vstack([motion, [0.0, 0.0, 1.0]])
        self.chain[frame] = IDENTITY.copy() if before is None else step @ before

    def between(self, a: int, t: int) -> np.ndarray:
        """Transform from frame `a` to frame `t`; identity where the path does not know both."""
        if a == t or a not in self.chain or t not in self.chain:
            return IDENTITY
        return self.chain[t] @ np.linalg.inv(self.chain[a])

    def forget(self, before: int) -> None:
        """Drop frames before `before` and re-anchor on the oldest one kept."""
        for f in [f for f in self.chain if f < before]:
            del self.chain[f]
        if self.chain:
            rebase = np.linalg.inv(self.chain[min(self.chain)])
            self.chain = {f: m @ rebase for f, m in self.chain.items()}


class _GivenMotion:
    """Stands in for BoT-SORT's own GMC: the tracker gets the motion the `CameraPath` already measured, so it
    is estimated once per frame for all classes and also across frames the detectors skip."""

    method = "camera-path"

    def __init__(self) -> None:
        self.motion = np.eye(2, 3)

    def apply(self, image: np.ndarray, detections: np.ndarray | None = None) -> np.ndarray:
        return self.motion

    def reset_params(self) -> None:
        self.motion = np.eye(2, 3)


ASSOCIATION_SCALE = 2.0  # boxes are matched by IoU at twice their size: small faces move more than their width


class _TrackerInput:
    """The Results-like view ultralytics' trackers read: xywh (centre), xyxy, conf, cls, boolean indexing.

    The tracker sees each box scaled by ASSOCIATION_SCALE: a 20 px face on a shaking body camera moves more
    than its own width between detections, and plain IoU would start a new track every time. Only the
    association uses these boxes; the smoother keeps the detector's own.
    """

    def __init__(self, dets: Detections):
        self.dets = dets
        centre, size = (dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2, (dets.xyxy[:, 2:] - dets.xyxy[:, :2]) * ASSOCIATION_SCALE
        self.xywh = np.concatenate([centre, size], axis=1)
        self.xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        self.conf, self.cls = dets.score, dets.cls.astype(np.float32)

    def __len__(self) -> int:
        return len(self.dets)

    def __getitem__(self, index: np.ndarray) -> _TrackerInput:
        return _TrackerInput(self.dets[index])


class Tracker:
    """BoT-SORT (ultralytics) with camera-motion compensation, one per class; every detection leaves with an id.

    A body camera moves with its wearer, so boxes jump between frames: the tracker predicts tracks through
    the camera motion of the `CameraPath` since the last detected frame (no ReID model). One tracker per
    class, because ultralytics matches boxes regardless of class and a face must never continue a plate's
    track. Detections the tracker does not confirm are kept as one-detection tracks rather than dropped: a
    redaction tool must never discard a detection because a tracker was not yet sure of it.
    """

    def __init__(self, every: int | tuple[int, ...], max_gap: int, thresholds: tuple[float, ...] = (0.2, 0.2),
                 path: CameraPath | None = None):
        """`every`: frames between two detections, one for all classes or one per class."""
        from ultralytics.trackers.bot_sort import BOTSORT

        every = (every,) * len(thresholds) if isinstance(every, int) else every
        self.trackers = [
            BOTSORT(SimpleNamespace(
                track_high_thresh=t, track_low_thresh=min(0.1, t), new_track_thresh=t,
                track_buffer=max(1, max_gap // n), match_thresh=0.8, fuse_score=False,
                gmc_method="sparseOptFlow", proximity_thresh=0.5, appearance_thresh=0.8, with_reid=False,
                model="auto",
            ))
            for t, n in zip(thresholds, every, strict=True)
        ]
        self.path, self.motion = path, _GivenMotion()
        self.last_frame: list[int | None] = [None] * len(self.trackers)  # per class: each may run on its own frames
        self.last_dets = [Detections() for _ in self.trackers]  # per class: its detections on its last_frame
        for tracker in self.trackers:
            tracker.gmc = self.motion
        self.ids: dict[tuple[int, int], int] = {}
        self.counter = itertools.count(1)

    def tracking(self, cls: int, lost_looks: float = 0) -> bool:
        """Whether an object of class `cls` was found on its last look (a new track included) or lost at most
        `lost_looks` looks ago (`math.inf`: any lost track, kept for `max_gap` frames)."""
        tracker = self.trackers[cls]
        return bool(tracker.tracked_stracks) or any(tracker.frame_id - t.frame_id <= lost_looks
                                                    for t in tracker.lost_stracks)

    def carried(self, cls: int, frame: int) -> Detections:
        """The detections of class `cls` on the last frame it was looked for, moved to `frame` by the camera."""
        last, dets = self.last_frame[cls], self.last_dets[cls]
        if last is None or self.path is None or not len(dets):
            return dets
        return Detections(warp_boxes(dets.xyxy, self.path.between(last, frame)), dets.score, dets.cls)

    def update(self, dets: Detections, frame: int, image: np.ndarray, classes: tuple[int, ...] | None = None) -> Detections:
        """Ids for `dets`, found in `image`, frame number `frame` (frames in order, any may be skipped), by the
        detectors of `classes` (None: all): the other classes' tracks were not looked for here and wait."""
        track_id = np.array([next(self.counter) for _ in range(len(dets))], np.int64)
        for cls, tracker in enumerate(self.trackers):
            if classes is not None and cls not in classes:
                continue
            if self.path is not None:  # the motion since this class was last looked for (none on its first look)
                last = self.last_frame[cls]
                self.motion.motion = np.eye(2, 3) if last is None else self.path.between(last, frame)[:2]
            self.last_frame[cls] = frame
            index = np.flatnonzero(dets.cls == cls)
            self.last_dets[cls] = dets[index]
            for row in tracker.update(_TrackerInput(dets[index]), image).reshape(-1, 8):
                key = (cls, int(row[4]))
                if key not in self.ids:
                    self.ids[key] = next(self.counter)
                track_id[index[int(row[7])]] = self.ids[key]
        return Detections(dets.xyxy, dets.score, dets.cls, track_id)


@dataclass
class TrackRecord:
    """What the audit log says about one track."""

    id: int
    cls: int
    first: int
    last: int
    detections: int = 0
    score_sum: float = 0.0
    score_max: float = 0.0
    best_frame: int = -1  # the frame of its most confident detection: where a reviewer's thumbnail comes from

    def as_dict(self, fps: float) -> dict:
        return {
            "id": self.id, "class": CLASS_NAMES[self.cls], "first_frame": self.first, "last_frame": self.last,
            "first_time": round(self.first / fps, 3) if fps else None,
            "last_time": round(self.last / fps, 3) if fps else None,
            "detections": self.detections, "max_score": round(self.score_max, 4), "best_frame": self.best_frame,
            "mean_score": round(self.score_sum / max(1, self.detections), 4),
        }


@dataclass
class Smoother:
    """Holds recent observations per track and answers the final boxes for a frame.

    With a `CameraPath`, every observation is first carried to the frame being answered by the camera's
    motion; interpolation and padding then only have to follow the object's own motion.
    """

    policy: TrackPolicy
    path: CameraPath | None = None
    size: tuple[int, int] | None = None  # frame (width, height): with a path, tracks that left the view return
    obs: dict[int, tuple[list[int], list[np.ndarray], list[float]]] = field(default_factory=dict)  # frames, boxes, scores
    records: dict[int, TrackRecord] = field(default_factory=dict)
    away: dict[int, int | None] = field(default_factory=dict)  # track out of view since its padding: back at frame

    def add(self, frame: int, dets: Detections) -> None:
        for box, score, cls, tid in zip(dets.xyxy, dets.score, dets.cls, dets.track_id.tolist(), strict=True):
            frames, boxes, scores = self.obs.setdefault(tid, ([], [], []))
            self.away.pop(tid, None)
            frames.append(frame)
            boxes.append(box)
            scores.append(float(score))
            rec = self.records.setdefault(tid, TrackRecord(tid, int(cls), frame, frame))
            rec.last = frame
            rec.detections += 1
            rec.score_sum += float(score)
            if float(score) > rec.score_max or rec.best_frame < 0:
                rec.score_max, rec.best_frame = float(score), frame

    def _seen_at(self, frames: list[int], boxes: list[np.ndarray], i: int, frame: int) -> np.ndarray:
        """Observation `i` of a track carried to `frame` by the camera's motion."""
        if self.path is None:
            return boxes[i]
        return warp_boxes(boxes[i][None], self.path.between(frames[i], frame))[0]

    def _extrapolate(self, frames: list[int], boxes: list[np.ndarray], anchor: int, other: int, frame: int) -> np.ndarray:
        """Observation `anchor` carried to `frame`, moving on at the object's own velocity between it and
        observation `other` (the neighbouring one), so padding follows a face walking past; without one it
        moves with the camera only."""
        box = self._seen_at(frames, boxes, anchor, frame)
        if not 0 <= other < len(frames):
            return box
        velocity = (boxes[anchor] - self._seen_at(frames, boxes, other, frames[anchor])) / (frames[anchor] - frames[other])
        return box + velocity * (frame - frames[anchor])

    def _lone(self, tid: int, frames: list[int], boxes: list[np.ndarray]) -> bool:
        """Whether a track is lone (TrackPolicy.lone_pad): one weak, large detection, and no other detection of its
        class overlaps it within its class's padding (the tracker may split one object detected weakly now and then into
        one-detection tracks; those are not lone). The future up to the lookahead is known when a frame is
        answered, so a track detected again later is not lone either."""
        rec, p = self.records[tid], self.policy
        if rec.detections > 1 or rec.score_max >= p.lone_score or (boxes[0][2:] - boxes[0][:2]).min() < p.lone_size[rec.cls]:
            return False
        reach = p.pad(rec.cls)
        for other, (near_frames, near_boxes, _) in self.obs.items():
            if other == tid or self.records[other].cls != rec.cls:
                continue
            for i, f in enumerate(near_frames):
                if abs(f - frames[0]) <= reach and overlap(self._seen_at(near_frames, near_boxes, i, frames[0]), boxes[0]):
                    return False
        return True

    def _returning(self, tid: int, frames: list[int], boxes: list[np.ndarray], prev: int, frame: int,
                   pad: int) -> np.ndarray | None:
        """Observation `prev` of a track the camera turned away from and is turning back to, carried to `frame`,
        for `pad` frames after it comes back into view; None otherwise. When the wearer turns back, a face
        comes in through the border, cut, and the detector misses it until enough of it shows: the camera path
        says where it must be."""
        if self.path is None or self.size is None:
            return None
        box = self._seen_at(frames, boxes, prev, frame)
        w, h = self.size
        visible = box[0] < w and box[1] < h and box[2] > 0 and box[3] > 0
        if not visible:
            self.away[tid] = None  # out of view: it returns when it is visible again
            return None
        if tid not in self.away:  # in view and never left it: lost, not left behind
            return None
        if self.away[tid] is None:
            self.away[tid] = frame
        return box if frame - self.away[tid] < pad else None

    def final(self, frame: int) -> Detections:
        """Boxes to redact in `frame`; call only once detections up to frame + lookahead have been added. A box's
        score is its detection's where the track was detected in `frame`, 0 where it is held, interpolated or
        padded (the plan and the review page tell the two apart by it)."""
        p = self.policy
        xyxy, held, cls, tids, scores = [], [], [], [], []
        for tid, (frames, boxes, seen) in self.obs.items():
            i = bisect.bisect_right(frames, frame)
            prev = i - 1 if i > 0 else None
            nxt = i if i < len(frames) else None
            pad = p.lone_pad if self._lone(tid, frames, boxes) else p.pad(self.records[tid].cls)
            if prev is not None and frames[prev] == frame:
                box, hold = boxes[prev], 0
            elif prev is not None and nxt is not None and frames[nxt] - frames[prev] <= p.max_gap:
                t = (frame - frames[prev]) / (frames[nxt] - frames[prev])
                box = self._seen_at(frames, boxes, prev, frame) * (1 - t) + self._seen_at(frames, boxes, nxt, frame) * t
                hold = min(frame - frames[prev], frames[nxt] - frame)
            elif prev is not None and frame - frames[prev] <= pad:
                box, hold = self._extrapolate(frames, boxes, prev, prev - 1, frame), frame - frames[prev]
            elif nxt is not None and frames[nxt] - frame <= pad:
                box, hold = self._extrapolate(frames, boxes, nxt, nxt + 1, frame), frames[nxt] - frame
            elif prev is not None and (box := self._returning(tid, frames, boxes, prev, frame, pad)) is not None:
                hold = pad
            else:
                continue
            xyxy.append(box)
            held.append(hold)
            cls.append(self.records[tid].cls)
            tids.append(tid)
            scores.append(seen[prev] if hold == 0 else 0.0)
        if not xyxy:
            return Detections()
        cls_arr = np.array(cls)
        factor = np.array(p.dilate, np.float32)[cls_arr] * (1 + p.grow_per_frame * np.array(held, np.float32))
        return Detections(scale_boxes(np.array(xyxy, np.float32), factor), np.array(scores), cls_arr, np.array(tids))

    def prune(self, frame: int) -> None:
        """Forget observations no later frame than `frame` can need."""
        horizon = frame - self.policy.lookahead
        for tid in list(self.obs):
            frames, boxes, scores = self.obs[tid]
            cut = max(0, bisect.bisect_left(frames, horizon) - 1)  # keep one before the horizon for interpolation
            if cut:
                del frames[:cut], boxes[:cut], scores[:cut]
            if frames[-1] < horizon - self.policy.lookahead:
                del self.obs[tid]
                self.away.pop(tid, None)
        if self.path is not None:  # keep the motion the kept observations need, at most 2 x lookahead back
            oldest = min((frames[0] for frames, _, _ in self.obs.values()), default=frame)
            self.path.forget(max(min(oldest, frame), horizon - self.policy.lookahead))
