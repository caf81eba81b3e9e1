"""Long recordings in segments: cut at keyframes, each segment detected and encoded on its own (by any worker,
in any order), then joined into one output, one plan and one audit log, as a single pass would make them.

Why: an hour at 30 fps is about four hours on a 2-core machine in one pass; in segments, several workers share
it and a rerun after a crash redoes only the segments that had not finished (their files are the journal).

How a segment is made to agree with a single pass: it decodes `before` frames of context ahead of its own first
frame (the tracker and the smoother learn the faces and plates already in view, so boxes held, interpolated or
padded across the cut are there) and `after` frames past its last (the smoother's look-ahead). Frames keep their
absolute indices, so every detector runs on the same frames as in one pass. Its own frames are encoded without
B-frames (`VideoWriter(piece=True)`), so the pieces join end to end by copying packets: no frame re-encoded,
dropped or repeated at a cut. The boxes of all the frames it read are kept (`SegmentBoxes`): where two segments
both read a frame, tracks whose boxes coincide are one track (`link_tracks`), so a face crossing a cut keeps one
id in the plan.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from redact.detect import Detections
from redact.track import TrackRecord

LINK_IOU = 0.5  # boxes of two segments' tracks this much overlapping in a frame both read ...
LINK_SHARE = 0.5  # ... in this share of the frames both tracks have there are one track


class Segment(NamedTuple):
    index: int
    start: int  # first frame it publishes
    stop: int  # one past the last
    read_from: int  # first frame it decodes (context before)
    read_to: int  # one past the last frame it decodes (look-ahead after)


def cut(keyframes: np.ndarray, frames: int, length: int, before: int, after: int) -> list[Segment]:
    """Segments of about `length` frames, cut at keyframes (`keyframes`: a bool per frame), with `before` and
    `after` frames of context. A cut goes to the keyframe nearest each multiple of `length` within a quarter of
    it (else at the multiple: decoding then starts at an earlier keyframe); a last piece shorter than half a
    segment joins the one before. One segment when the whole is shorter than 1.5 segments."""
    keys = np.flatnonzero(keyframes)
    cuts = [0]
    for target in range(length, frames, length):
        near = keys[np.abs(keys - target) <= length // 4] if len(keys) else keys
        at = int(near[np.argmin(np.abs(near - target))]) if len(near) else target
        if at - cuts[-1] >= length // 2 and frames - at >= length // 2:
            cuts.append(at)
    cuts.append(frames)
    return [Segment(k, a, b, max(0, a - before), min(frames, b + after))
            for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))]


class SegmentBoxes(NamedTuple):
    """Every final box of the frames a segment read: parallel arrays (frame, box, score, class, its track id)."""

    frame: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    cls: np.ndarray
    track: np.ndarray

    @classmethod
    def collect(cls, per_frame: list[tuple[int, Detections]]) -> SegmentBoxes:
        dets = [d for _, d in per_frame]
        merged = Detections.merge(dets) if dets else Detections()
        frames = np.concatenate([np.full(len(d), f, np.int64) for f, d in per_frame]) if per_frame else np.zeros(0, np.int64)
        return cls(frames, merged.xyxy.astype(np.float32), merged.score.astype(np.float32), merged.cls.astype(np.int64),
                   merged.track_id.astype(np.int64))

    def save(self, path: Path) -> None:
        """Written under a temporary name and renamed: a segment's boxes file exists only complete."""
        tmp = path.with_name(f".{path.name}.partial.npz")
        np.savez(tmp, **self._asdict())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SegmentBoxes:
        with np.load(path) as z:
            return cls(*(z[k] for k in cls._fields))

    def within(self, first: int, stop: int) -> SegmentBoxes:
        keep = (self.frame >= first) & (self.frame < stop)
        return SegmentBoxes(*(a[keep] for a in self))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def link_tracks(a: SegmentBoxes, b: SegmentBoxes) -> list[tuple[int, int]]:
    """(track of a, track of b) pairs that are one object: in the frames both segments read, their boxes overlap
    by LINK_IOU or more in LINK_SHARE of the frames where both have a box. Each track links at most one other
    (the most frames), so one face never takes over a neighbour's id."""
    both = np.intersect1d(a.frame, b.frame)
    if not len(both):
        return []
    count: dict[tuple[int, int], int] = {}
    present_a: dict[int, int] = {}
    present_b: dict[int, int] = {}
    for f in both:
        ia, ib = np.flatnonzero(a.frame == f), np.flatnonzero(b.frame == f)
        for t in a.track[ia]:
            present_a[int(t)] = present_a.get(int(t), 0) + 1
        for t in b.track[ib]:
            present_b[int(t)] = present_b.get(int(t), 0) + 1
        if not (len(ia) and len(ib)):
            continue
        iou = _iou(a.xyxy[ia], b.xyxy[ib])
        same = (iou >= LINK_IOU) & (a.cls[ia][:, None] == b.cls[ib][None])
        for i, j in zip(*np.nonzero(same), strict=True):
            key = (int(a.track[ia[i]]), int(b.track[ib[j]]))
            count[key] = count.get(key, 0) + 1
    pairs, used_a, used_b = [], set(), set()
    for (ta, tb), n in sorted(count.items(), key=lambda kv: -kv[1]):
        if ta in used_a or tb in used_b or n < LINK_SHARE * min(present_a[ta], present_b[tb]):
            continue
        pairs.append((ta, tb))
        used_a.add(ta)
        used_b.add(tb)
    return pairs


def global_ids(segments: list[Segment], boxes: list[SegmentBoxes]) -> list[dict[int, int]]:
    """For each segment, its track ids -> ids of the whole file: linked tracks share one, numbered in order of
    their first published frame (as a single pass numbers them, by first sight)."""
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def root(x: tuple[int, int]) -> tuple[int, int]:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = x = parent[parent[x]]
        return x

    for k in range(1, len(segments)):
        for ta, tb in link_tracks(boxes[k - 1], boxes[k]):
            parent[root((k, tb))] = root((k - 1, ta))
    first: dict[tuple[int, int], int] = {}
    for seg, b in zip(segments, boxes, strict=True):
        own = b.within(seg.start, seg.stop)
        for f, t in zip(own.frame.tolist(), own.track.tolist(), strict=True):
            r = root((seg.index, t))
            first[r] = min(first.get(r, f), f)
    number = {r: n + 1 for n, r in enumerate(sorted(first, key=lambda r: (first[r], r)))}
    return [{t: number[root((seg.index, t))] for t in np.unique(b.within(seg.start, seg.stop).track).tolist()}
            for seg, b in zip(segments, boxes, strict=True)]


def records(per_frame: list[tuple[int, Detections]]) -> dict[int, TrackRecord]:
    """The audit log's track records from the published boxes (global ids): a box with a score is a detection
    (`Smoother.final`); a track with none there (padding of a detection another segment made) spans its boxes."""
    out: dict[int, TrackRecord] = {}
    for frame, dets in per_frame:
        for score, c, tid in zip(dets.score.tolist(), dets.cls.tolist(), dets.track_id.tolist(), strict=True):
            rec = out.get(tid)
            if rec is None:
                rec = out[tid] = TrackRecord(tid, int(c), frame, frame)
            if score > 0:
                if rec.detections == 0:
                    rec.first = frame
                rec.last = frame
                rec.detections += 1
                rec.score_sum += score
                if score > rec.score_max or rec.best_frame < 0:
                    rec.score_max, rec.best_frame = score, frame
            elif rec.detections == 0:
                rec.last = frame
    for rec in out.values():
        rec.best_frame = rec.first if rec.best_frame < 0 else rec.best_frame
    return out


class Journal:
    """A long run's finished segments, in `<outdir>/.<stem>.segments/`: each segment's video piece and boxes, under
    a key of the input and every setting that changes a box or a pixel. A rerun with the same key reuses them;
    another key starts afresh. Removed once the output is published."""

    def __init__(self, folder: Path, key: dict):
        self.folder = folder
        manifest = folder / "segments.json"
        if folder.is_dir():
            try:
                same = json.loads(manifest.read_text()) == key
            except (OSError, ValueError):
                same = False
            if not same:
                self.clear()
        folder.mkdir(parents=True, exist_ok=True)
        if not manifest.exists():
            tmp = folder / ".segments.json.partial"
            tmp.write_text(json.dumps(key, indent=1, sort_keys=True))
            os.replace(tmp, manifest)

    def piece(self, k: int) -> Path:
        return self.folder / f"segment-{k:05d}.mp4"

    def boxes(self, k: int) -> Path:
        return self.folder / f"segment-{k:05d}.boxes.npz"

    def note(self, k: int) -> Path:
        return self.folder / f"segment-{k:05d}.json"

    def record(self, k: int, run: dict) -> None:
        """How segment k was made (seconds, worker), for the audit log; written before its boxes."""
        tmp = self.folder / f".segment-{k:05d}.json.partial"
        tmp.write_text(json.dumps(run))
        os.replace(tmp, self.note(k))

    def run(self, k: int) -> dict:
        return json.loads(self.note(k).read_text())

    def done(self, k: int) -> bool:
        """Its boxes are written last, after the piece was renamed into place: both there means finished."""
        return self.piece(k).is_file() and self.boxes(k).is_file()

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


def segment_frames(fps: float, seconds: float) -> int:
    """A segment's length in frames (at least one second's worth)."""
    return max(1, math.ceil(seconds * (fps or 30.0)))
