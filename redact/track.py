"""Tracking and temporal smoothing: turn per-frame detections into boxes that leave no frame uncovered.

Detectors miss objects for a frame or two (blur, turn of the head, a skipped frame). ByteTrack (ultralytics)
links detections of the same object; the `Smoother` then fills every gap between two detections of a track
by interpolation, keeps each track redacted `pad_frames` before its first and after its last detection, and
grows held boxes with distance from their detection to absorb motion. It answers for frame t only once
detections up to t + lookahead are known, so a detection in the future covers a miss now.
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


class _ByteTrackInput:
    """The Results-like view ultralytics' BYTETracker reads: xywh (centre), conf, cls, boolean indexing."""

    def __init__(self, dets: Detections):
        self.dets = dets
        xyxy = dets.xyxy
        self.xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        self.conf, self.cls = dets.score, dets.cls.astype(np.float32)

    def __len__(self) -> int:
        return len(self.dets)

    def __getitem__(self, index: np.ndarray) -> _ByteTrackInput:
        return _ByteTrackInput(self.dets[index])


class Tracker:
    """One ByteTrack per class; every detection leaves with an id (a track's, or a fresh one of its own).

    Detections ByteTrack does not confirm are kept as one-detection tracks rather than dropped: a redaction
    tool must never discard a detection because a tracker was not yet sure of it.
    """

    def __init__(self, detect_every: int, max_gap: int, threshold: float = 0.25):
        from ultralytics.trackers.byte_tracker import BYTETracker

        args = SimpleNamespace(
            track_high_thresh=threshold, track_low_thresh=0.1, new_track_thresh=threshold,
            track_buffer=max(1, max_gap // detect_every), match_thresh=0.8, fuse_score=True,
        )
        self.trackers = {c: BYTETracker(args) for c in range(len(CLASS_NAMES))}
        self.ids: dict[tuple[int, int], int] = {}
        self.counter = itertools.count(1)

    def update(self, dets: Detections) -> Detections:
        track_id = np.array([next(self.counter) for _ in range(len(dets))], np.int64)
        for c, tracker in self.trackers.items():
            index = np.flatnonzero(dets.cls == c)
            out = tracker.update(_ByteTrackInput(dets[index]))
            for row in out.reshape(-1, 8):
                key = (c, int(row[4]))
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
                box, hold = boxes[prev], frame - frames[prev]
            elif nxt is not None and frames[nxt] - frame <= p.pad_frames:
                box, hold = boxes[nxt], frames[nxt] - frame
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
