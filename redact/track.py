"""Tracking and temporal smoothing: turn per-frame detections into boxes that leave no frame uncovered.

Detectors miss objects for a frame or two (blur, turn of the head, a skipped frame). BoT-SORT (ultralytics,
with camera-motion compensation) links detections of the same object; the `Smoother` then fills every gap
between two detections of a track by interpolation, keeps each track redacted `pad_frames` before its first
and after its last detection (moving on at the track's velocity), and grows held boxes with distance from
their detection to absorb motion. It answers for frame t only once detections up to t + lookahead are
known, so a detection in the future covers a miss now.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from redact.detect import CLASS_NAMES, Detections


@dataclass(frozen=True)
class TrackPolicy:
    pad_frames: int = 8
    max_gap: int = 30  # frames between two detections of one track that are filled by interpolation
    dilate: tuple[float, ...] = (1.3, 1.2)  # box scale per class (face, plate)
    grow_per_frame: float = 0.03  # extra scale per frame a box is held away from a detection

    @property
    def lookahead(self) -> int:
        return max(self.pad_frames, self.max_gap)


def scale_boxes(xyxy: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
    """Scale boxes about their centres."""
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    half = (xyxy[:, 2:] - xyxy[:, :2]) / 2 * np.asarray(factor, np.float32).reshape(-1, 1)
    return np.concatenate([centre - half, centre + half], axis=1)


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
    """BoT-SORT (ultralytics) with global motion compensation, one per class; every detection leaves with an id.

    A body camera moves with its wearer, so boxes jump between frames: sparse optical flow estimates that
    camera motion and the tracker predicts tracks through it (BoT-SORT's GMC; no ReID model). One tracker per
    class, because ultralytics matches boxes regardless of class and a face must never continue a plate's
    track. Detections the tracker does not confirm are kept as one-detection tracks rather than dropped: a
    redaction tool must never discard a detection because a tracker was not yet sure of it.
    """

    def __init__(self, detect_every: int, max_gap: int, thresholds: tuple[float, ...] = (0.2, 0.25)):
        from ultralytics.trackers.bot_sort import BOTSORT

        self.trackers = [
            BOTSORT(SimpleNamespace(
                track_high_thresh=t, track_low_thresh=min(0.1, t), new_track_thresh=t,
                track_buffer=max(1, max_gap // detect_every), match_thresh=0.8, fuse_score=False,
                gmc_method="sparseOptFlow", proximity_thresh=0.5, appearance_thresh=0.8, with_reid=False,
                model="auto",
            ))
            for t in thresholds
        ]
        self.ids: dict[tuple[int, int], int] = {}
        self.counter = itertools.count(1)

    def update(self, dets: Detections, image: np.ndarray) -> Detections:
        """Ids for `dets`, found in `image` (the frame, used to estimate camera motion)."""
        track_id = np.array([next(self.counter) for _ in range(len(dets))], np.int64)
        for cls, tracker in enumerate(self.trackers):
            index = np.flatnonzero(dets.cls == cls)
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

    def as_dict(self, fps: float) -> dict:
        return {
            "id": self.id, "class": CLASS_NAMES[self.cls], "first_frame": self.first, "last_frame": self.last,
            "first_time": round(self.first / fps, 3) if fps else None,
            "last_time": round(self.last / fps, 3) if fps else None,
            "detections": self.detections, "max_score": round(self.score_max, 4),
            "mean_score": round(self.score_sum / max(1, self.detections), 4),
        }


def _extrapolate(frames: list[int], boxes: list[np.ndarray], anchor: int, other: int, frame: int) -> np.ndarray:
    """The box of observation `anchor` moved on to `frame` at the velocity between it and observation `other`
    (the neighbouring one), so padding follows a face the camera is panning past; held in place without one."""
    if not 0 <= other < len(frames):
        return boxes[anchor]
    velocity = (boxes[anchor] - boxes[other]) / (frames[anchor] - frames[other])
    return boxes[anchor] + velocity * (frame - frames[anchor])


@dataclass
class Smoother:
    """Holds recent observations per track and answers the final boxes for a frame."""

    policy: TrackPolicy = field(default_factory=TrackPolicy)
    obs: dict[int, tuple[list[int], list[np.ndarray]]] = field(default_factory=dict)
    records: dict[int, TrackRecord] = field(default_factory=dict)

    def add(self, frame: int, dets: Detections) -> None:
        for box, score, cls, tid in zip(dets.xyxy, dets.score, dets.cls, dets.track_id, strict=True):
            frames, boxes = self.obs.setdefault(int(tid), ([], []))
            frames.append(frame)
            boxes.append(box)
            rec = self.records.setdefault(int(tid), TrackRecord(int(tid), int(cls), frame, frame))
            rec.last = frame
            rec.detections += 1
            rec.score_sum += float(score)
            rec.score_max = max(rec.score_max, float(score))

    def final(self, frame: int) -> Detections:
        """Boxes to redact in `frame`; call only once detections up to frame + lookahead have been added."""
        p = self.policy
        xyxy, held, cls, tids = [], [], [], []
        for tid, (frames, boxes) in self.obs.items():
            i = bisect.bisect_right(frames, frame)
            prev = i - 1 if i > 0 else None
            nxt = i if i < len(frames) else None
            if prev is not None and frames[prev] == frame:
                box, hold = boxes[prev], 0
            elif prev is not None and nxt is not None and frames[nxt] - frames[prev] <= p.max_gap:
                t = (frame - frames[prev]) / (frames[nxt] - frames[prev])
                box = boxes[prev] * (1 - t) + boxes[nxt] * t
                hold = min(frame - frames[prev], frames[nxt] - frame)
            elif prev is not None and frame - frames[prev] <= p.pad_frames:
                box, hold = _extrapolate(frames, boxes, prev, prev - 1, frame), frame - frames[prev]
            elif nxt is not None and frames[nxt] - frame <= p.pad_frames:
                box, hold = _extrapolate(frames, boxes, nxt, nxt + 1, frame), frames[nxt] - frame
            else:
                continue
            xyxy.append(box)
            held.append(hold)
            cls.append(self.records[tid].cls)
            tids.append(tid)
        if not xyxy:
            return Detections()
        cls_arr = np.array(cls)
        factor = np.array(p.dilate, np.float32)[cls_arr] * (1 + p.grow_per_frame * np.array(held, np.float32))
        return Detections(scale_boxes(np.array(xyxy, np.float32), factor), np.ones(len(xyxy)), cls_arr, np.array(tids))

    def prune(self, frame: int) -> None:
        """Forget observations no later frame than `frame` can need."""
        horizon = frame - self.policy.lookahead
        for tid in list(self.obs):
            frames, boxes = self.obs[tid]
            cut = max(0, bisect.bisect_left(frames, horizon) - 1)  # keep one before the horizon for interpolation
            if cut:
                del frames[:cut], boxes[:cut]
            if frames[-1] < horizon - self.policy.lookahead:
                del self.obs[tid]
