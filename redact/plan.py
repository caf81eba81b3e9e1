"""The redaction plan: what detection found, stored so that a reviewer's decisions re-render without a detector.

`redact run` writes `<stem>.plan.sqlite` beside its outputs: every track (class, frames, scores, the frame of
its best detection), the final box of every track in every frame it covers (after tracking, interpolation,
padding and dilation: exactly the boxes the run redacted), each frame's timestamp, and the speech: every word
Whisper heard with its time and the spoken-PII spans found in it. One SQLite file, because a reviewer asks
"boxes for frames t..t+n" of an hour of footage (about 108,000 frames, thousands of tracks) and the boxes
table is clustered by frame: such a window is one range scan, whatever the file's size.

The plan holds the unredacted words and the places of every face: it is for the reviewer, never for release.

Tracks are also put into review groups (`group_tracks`): a detector loses a face for a few frames and the
tracker starts a new id, and a crowd gives hundreds of one-detection tracks. A group chains the fragments of
one object (same class, one starting where and soon after another ended), so that a reviewer decides on rows
a person can work through; a decision on a group is a decision on each of its tracks. Tracks whose boxes lie on
one another in the same frames (`join_overlapping`: the tracker kept two ids on one face, a second box of the
same head) are one row too. A face found again further away than a position guess reaches joins the row of the face
lost before it only where the bodies under them look alike (`far_links`, `redact.appearance`): a guess a person
confirms, so such a row needs a look.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from redact.detect import CLASS_NAMES, FACE, Detections
from redact.errors import UserError, partial_path

VERSION = 1
SUFFIX = ".plan.sqlite"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE frames (frame INTEGER PRIMARY KEY, pts INTEGER NOT NULL);
CREATE TABLE tracks (id INTEGER PRIMARY KEY, cls INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
                     detections INTEGER NOT NULL, max_score REAL NOT NULL, mean_score REAL NOT NULL,
                     best_frame INTEGER NOT NULL, grp INTEGER NOT NULL);
CREATE TABLE boxes (frame INTEGER NOT NULL, n INTEGER NOT NULL, track INTEGER NOT NULL, x1 REAL, y1 REAL, x2 REAL,
                    y2 REAL, score REAL NOT NULL, PRIMARY KEY (frame, n)) WITHOUT ROWID;
CREATE INDEX boxes_track ON boxes (track);
"""


class Looks(Protocol):
    """What the plan asks of an appearance model: unit-length features of the body under each (key, face box)
    wanted at a frame (`redact.appearance.Appearance.looking_at` binds a model to the input video), and the model's id."""

    model: str

    def features_at(self, wanted: dict[int, list[tuple[Hashable, np.ndarray]]]) -> dict[Hashable, np.ndarray]: ...


class TrackRow(NamedTuple):
    id: int
    cls: int
    first: int
    last: int
    detections: int
    max_score: float
    mean_score: float
    best_frame: int
    group: int

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.cls]


class Group(NamedTuple):
    """A review row: the tracks of one object (or one track alone). Its id is its first track's id."""

    id: int
    cls: int
    first: int
    last: int
    tracks: tuple[int, ...]
    detections: int
    max_score: float
    best_track: int  # the track whose best detection gives the row's thumbnail
    overlapping: int = 0  # of its tracks, those joined for sharing another's boxes (`join_overlapping`), not by a chain
    looked: tuple[float, ...] = ()  # the similarity of each of its links made by appearance (`group_tracks`'s `alike`)

    @property
    def doubts(self) -> tuple[str, ...]:
        """Why a reviewer should look at this row rather than accept it with the confident ones (`LOOK_SCORE`):
        "weak" (no detection scored `LOOK_SCORE`), "lone" (fewer than `LOOK_DETECTIONS` detections), "joined by
        look" (pieces joined by appearance: a guess that can join two people dressed or placed alike, so a person
        confirms it before the row is released whole)."""
        return (("weak",) if self.max_score < LOOK_SCORE else ()) + \
            (("lone",) if self.detections < LOOK_DETECTIONS else ()) + (("joined by look",) if self.looked else ())


def object_size(cls: int, w: np.ndarray | float, h: np.ndarray | float) -> np.ndarray:
    """How big an object is, as a reviewer sorts rows and the benchmarks bucket leaks: min(w, h) of a face box
    (a face is small when either side is), the height of a plate box (its characters' height)."""
    return np.minimum(w, h) if cls == FACE else np.asarray(h, np.float64)


# Rows a reviewer should look at (`Group.doubts`). On the review benchmark's generated clips (seed 0, 3 clips a
# class, 150 frames; benchmarks/results/review_rows.json at a59ef83) "weak" and "lone" flag 36 of 110 rows, among
# them 22 of the 26 rows that are no object (a false detection); the 74 rows left, which a reviewer can accept in
# one step, hold the other 4.
LOOK_SCORE = 0.5
LOOK_DETECTIONS = 3


class FrameBoxes(NamedTuple):
    """Boxes of a range of frames as parallel arrays: `frame[i]` holds box `dets[i]` (supervision's style)."""

    frame: np.ndarray
    dets: Detections

    def at(self, frame: int) -> Detections:
        return self.dets[self.frame == frame]


GROUP_GAP = 45  # frames: a track starting this soon after another ended may continue it
GROUP_REACH = 1.5  # ... when its first box is within this many box sizes of the other's last box
LOOK_SPREAD = 1.0  # box sizes a second of gap a face's reach grows by where the bodies look alike: a walking
# person lost for a second or two comes back further away than GROUP_REACH (vtest.avi: 177 rows at GROUP_REACH)
LOOK_GATE = 0.79  # cosine similarity of the bodies (`redact.appearance`) at or over which such a link is kept.
# vtest.avi, every link a gate adds looked at (benchmarks/chain_bench.py --embed): at 0.75 4 of 59 join two people
# (all at 0.76-0.78), at 0.79 none of 40; rows 177 -> 144. But on review_task's generated footage (faces pasted on
# photos: neighbours' "bodies" are one photo) 1 of the 5 joins the truth can check joins two faces (at 0.827), and
# 4 of the 13 comparisons at 0.79 or more are two faces (none of 5 at 0.85, where vtest keeps 166 rows): a join by
# look is a guess, so its row needs a look (`Group.doubts`)


def box_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two boxes' centres are, in box sizes (the larger side of either box)."""
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1.0)
    return float(np.hypot(*((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2))) / size


def follows(a: TrackRow, b: TrackRow) -> bool:
    """Whether track B starts soon enough after track A ends to continue it (or overlaps its end by a few frames)."""
    return a.cls == b.cls and a.first < b.first and a.last - 4 <= b.first <= a.last + GROUP_GAP


def successions(tracks: list[TrackRow]) -> Iterator[tuple[TrackRow, list[TrackRow]]]:
    """Each track in order of start, with the earlier tracks it `follows`. Only tracks that ended at most GROUP_GAP
    frames before are looked at: an hour holds thousands of tracks, and every pair of them would be millions."""
    open_ends: list[TrackRow] = []
    for t in sorted(tracks, key=lambda t: (t.first, t.id)):
        open_ends = [a for a in open_ends if a.last + GROUP_GAP >= t.first]
        yield t, [a for a in open_ends if follows(a, t)]
        open_ends.append(t)


def far_links(tracks: list[TrackRow], ends: dict[int, tuple[np.ndarray, np.ndarray]], fps: float) -> list[tuple[int, int]]:
    """(track A, track B) pairs of faces that `group_tracks` joins only if they look alike: B follows A and starts
    beyond GROUP_REACH but within GROUP_REACH + LOOK_SPREAD a second of gap of where A ended."""
    return [(a.id, b.id) for b, earlier in successions([t for t in tracks if t.cls == FACE]) for a in earlier
            if GROUP_REACH < box_distance(ends[b.id][0], ends[a.id][1]) <= reach(a, b, fps)]


def reach(a: TrackRow, b: TrackRow, fps: float) -> float:
    """The furthest (in box sizes) B may start from A's end and continue it where the two look alike."""
    return GROUP_REACH + LOOK_SPREAD * max(0, b.first - a.last) / fps


def group_tracks(tracks: list[TrackRow], ends: dict[int, tuple[np.ndarray, np.ndarray]], fps: float = 30.0,
                 alike: dict[tuple[int, int], float] | None = None) -> tuple[dict[int, int], dict[int, float]]:
    """Group id per track id, fragments of one object chained into one group; and the tracks joined by appearance,
    with the similarity that joined them.

    `ends` maps a track id to its (first box, last box). Track B continues track A when B `follows` A and B's first
    box lies within GROUP_REACH box sizes of A's last box, or within their `reach` where `alike` gives the pair (from
    `far_links`) a similarity of LOOK_GATE or more. Each track continues at most one earlier track, the
    nearest; a group's id is its earliest track's id.
    """
    alike = alike or {}
    group = {t.id: t.id for t in tracks}
    looked: dict[int, float] = {}
    taken: set[int] = set()  # tracks something already continues
    for t, earlier in successions(tracks):
        best, best_d = None, None
        for a in earlier:
            if a.id in taken:
                continue
            d = box_distance(ends[t.id][0], ends[a.id][1])
            near = d <= GROUP_REACH or (d <= reach(a, t, fps) and alike.get((a.id, t.id), -1.0) >= LOOK_GATE)
            if near and (best_d is None or d < best_d):
                best, best_d = a, d
        if best is not None:
            group[t.id] = group[best.id]
            taken.add(best.id)
            if best_d > GROUP_REACH:
                looked[t.id] = alike[(best.id, t.id)]
    return group, looked


SHARE_IOU = 0.3  # two tracks' boxes overlapping this much in a frame ...
SHARE_FRAMES = 0.5  # ... in this share of the shorter track's frames are one object


def join_overlapping(group: dict[int, int], cls: dict[int, int], boxes: dict[int, int],
                     shared: Iterable[tuple[int, int, int]]) -> tuple[dict[int, int], set[int]]:
    """`group` (track id -> group id, from `group_tracks`) with the groups of tracks that share their place merged,
    and the tracks whose row was joined that way.

    `shared` gives (track a, track b, frames where their boxes overlap by SHARE_IOU or more); `boxes`, each
    track's number of boxes; `cls`, its class. Two tracks of one class that overlap in SHARE_FRAMES of the shorter
    one's frames are one object: on OpenCV's vtest.avi a face is often held by two tracks at once (a weak second
    box on the same head, which the tracker does not merge), 49 of 224 rows. The merged group keeps the smaller
    id (the earlier track)."""
    parent = {g: g for g in group.values()}

    def root(g: int) -> int:
        while parent[g] != g:
            parent[g] = g = parent[parent[g]]
        return g

    joined: set[int] = set()
    for a, b, n in shared:
        if cls[a] != cls[b] or n < SHARE_FRAMES * min(boxes[a], boxes[b]):
            continue
        ga, gb = root(group[a]), root(group[b])
        if ga != gb:
            parent[max(ga, gb)] = min(ga, gb)
            joined.add(b if boxes[b] <= boxes[a] else a)
    return {t: root(g) for t, g in group.items()}, joined


def shared_boxes(db: sqlite3.Connection) -> list[tuple[int, int, int]]:
    """(track a, track b, frames where their boxes overlap by SHARE_IOU or more) of a plan's boxes table, for
    `join_overlapping`: one pass over the boxes, frame by frame (the table's order)."""
    inter = "max(0, min(a.x2, b.x2) - max(a.x1, b.x1)) * max(0, min(a.y2, b.y2) - max(a.y1, b.y1))"
    return db.execute(
        f"SELECT a.track, b.track, count(*) FROM boxes a JOIN boxes b ON b.frame = a.frame AND b.track > a.track "
        f"WHERE {inter} >= ? * ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - {inter}) "
        f"GROUP BY a.track, b.track", (SHARE_IOU,)).fetchall()


@dataclass
class PlanWriter:
    """Writes a plan while the run produces its boxes; `finish` completes it under its partial name, `publish`
    renames it into place, `abort` removes it."""

    path: Path

    def __post_init__(self) -> None:
        self.tmp = partial_path(self.path)
        self.tmp.unlink(missing_ok=True)
        self.db = sqlite3.connect(self.tmp, isolation_level=None)
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
        self.db.execute("BEGIN")
        self._frames: list[tuple[int, int]] = []
        self._boxes: list[tuple] = []
        self._ends: dict[int, list[np.ndarray]] = {}

    def add(self, frame: int, pts: int, boxes: Detections) -> None:
        """The final boxes of `frame` (track ids and scores as the smoother gives them)."""
        self._frames.append((frame, pts))
        for n, (box, score, tid) in enumerate(zip(boxes.xyxy.tolist(), boxes.score.tolist(), boxes.track_id.tolist(),
                                                  strict=True)):
            self._boxes.append((frame, n, tid, *box, score))  # n: overlapping boxes are redacted in the run's order
            end = self._ends.setdefault(tid, [np.asarray(box, np.float32), None])
            end[1] = np.asarray(box, np.float32)
        if len(self._boxes) > 50_000 or len(self._frames) > 50_000:
            self._flush()

    def _flush(self) -> None:
        self.db.executemany("INSERT INTO frames VALUES (?, ?)", self._frames)
        self.db.executemany("INSERT INTO boxes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._boxes)
        self._frames, self._boxes = [], []

    def finish(self, meta: dict, tracks: Iterable[dict], speech: dict | None, looks: Looks | None = None) -> None:
        """Write the tracks (the audit log's track entries), grouped, the run's `meta` and the speech; close.
        `looks` (`redact.appearance.Appearance.looking_at` the input) lets faces further apart than GROUP_REACH be
        one row where their bodies look alike; without it rows are joined by position alone."""
        self._flush()
        rows = [TrackRow(t["id"], CLASS_NAMES.index(t["class"]), t["first_frame"], t["last_frame"], t["detections"],
                         t["max_score"], t["mean_score"], t.get("best_frame", t["first_frame"]), t["id"])
                for t in tracks]
        rows = [r for r in rows if r.id in self._ends]  # a track whose boxes never reached a frame has nothing to show
        ends = {tid: (a, b) for tid, (a, b) in self._ends.items()}
        fps = meta["video"]["fps"] or 30.0
        start = time.perf_counter()
        alike = self._alike(rows, far_links(rows, ends, fps), looks) if looks is not None else {}
        looking_s = time.perf_counter() - start
        groups, looked = group_tracks(rows, ends, fps, alike)
        counts = dict(self.db.execute("SELECT track, count(*) FROM boxes GROUP BY track"))
        groups, overlapped = join_overlapping(groups, {r.id: r.cls for r in rows}, counts,
                                              shared_boxes(self.db) if len(rows) > 1 else [])
        self.db.executemany("INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [r._replace(group=groups[r.id]) for r in rows])
        items = {"version": VERSION, **meta, "speech": speech, "joined_by_overlap": sorted(overlapped),
                 "joined_by_look": {"model": getattr(looks, "model", None), "gate": LOOK_GATE, "spread": LOOK_SPREAD,
                                    "compared": sorted([a, b, round(v, 3)] for (a, b), v in alike.items()),
                                    "tracks": sorted([t, round(v, 3)] for t, v in looked.items()),
                                    "seconds": round(looking_s, 2)}
                 if looks is not None else None}
        self.db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in items.items()])
        self.db.execute("COMMIT")
        self.db.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())

    def _alike(self, rows: list[TrackRow], links: list[tuple[int, int]], looks: Looks) -> dict[tuple[int, int], float]:
        """The similarity of each (A, B) of `links`: the body where A was last detected against where B was first
        (not the tracks' first and last boxes, which may be held boxes left on the background). A pair without a
        box at either detection frame gets none, so stays apart."""
        at = {r.id: (r.first, r.last) for r in rows}
        wanted: dict[int, list[tuple[tuple[int, int], np.ndarray]]] = {}
        for key in {(a, 1) for a, _ in links} | {(b, 0) for _, b in links}:
            frame = at[key[0]][key[1]]
            box = self.db.execute("SELECT x1, y1, x2, y2 FROM boxes WHERE frame = ? AND track = ?", (frame, key[0])).fetchone()
            if box is not None:
                wanted.setdefault(frame, []).append((key, np.array(box, np.float32)))
        feats = looks.features_at(wanted)
        return {(a, b): float(feats[(a, 1)] @ feats[(b, 0)]) for a, b in links if (a, 1) in feats and (b, 0) in feats}

    def publish(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass
        self.tmp.unlink(missing_ok=True)


class Plan:
    """A plan opened for reading (read-only: the plan never changes after the run that wrote it)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no redaction plan (run `redact run` on the original first)")
        try:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self.meta = {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a redaction plan ({e})") from None
        if self.meta.get("version") != VERSION:
            raise UserError(f"{self.path}: plan version {self.meta.get('version')} is not {VERSION}")
        self.video: dict = self.meta["video"]
        self.frame_count: int = self.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @property
    def speech(self) -> dict | None:
        """{"language", "duration", "segments": [{"start", "end", "reliable", "words": [{"start", "end", "word",
        "probability", "published"}]}], "redactions": [{"start", "end", "category", "words": [i, j]}]} or None;
        word indices count over all segments' words in order."""
        return self.meta.get("speech")

    def times(self) -> np.ndarray:
        """Each frame's presentation time in seconds (variable frame rate stays variable)."""
        num, den = map(int, self.video["time_base"].split("/"))
        pts = np.array([p for (p,) in self.db.execute("SELECT pts FROM frames ORDER BY frame")], np.float64)
        return pts * num / den

    def tracks(self) -> list[TrackRow]:
        return [TrackRow(*r) for r in self.db.execute("SELECT * FROM tracks ORDER BY id")]

    def groups(self) -> list[Group]:
        """Review rows, in order of first appearance."""
        overlapping = set(self.meta.get("joined_by_overlap", []))
        looked = {t: v for t, v in (self.meta.get("joined_by_look") or {}).get("tracks", [])}
        members: dict[int, list[TrackRow]] = {}
        for t in self.tracks():
            members.setdefault(t.group, []).append(t)
        out = []
        for gid, ts in members.items():
            best = max(ts, key=lambda t: t.max_score)
            out.append(Group(gid, ts[0].cls, min(t.first for t in ts), max(t.last for t in ts),
                             tuple(t.id for t in ts), sum(t.detections for t in ts), best.max_score, best.id,
                             sum(t.id in overlapping for t in ts), tuple(looked[t.id] for t in ts if t.id in looked)))
        return sorted(out, key=lambda g: (g.first, g.id))

    def boxes(self, first: int, last: int) -> FrameBoxes:
        """Every box of frames first..last (inclusive), with its class."""
        rows = self.db.execute(
            "SELECT b.frame, b.x1, b.y1, b.x2, b.y2, b.score, t.cls, b.track FROM boxes b JOIN tracks t ON t.id = b.track "
            "WHERE b.frame BETWEEN ? AND ? ORDER BY b.frame, b.n", (first, last)).fetchall()
        a = np.array(rows, np.float64).reshape(-1, 8)
        return FrameBoxes(a[:, 0].astype(np.int64), Detections(a[:, 1:5], a[:, 5], a[:, 6].astype(np.int64),
                                                               a[:, 7].astype(np.int64)))

    def best_sizes(self) -> dict[int, float]:
        """Each track's `object_size` at its best detection (the box its row's thumbnail shows), in pixels."""
        rows = self.db.execute("SELECT t.id, t.cls, b.x2 - b.x1, b.y2 - b.y1 FROM tracks t JOIN boxes b "
                               "ON b.frame = t.best_frame AND b.track = t.id")
        return {track: round(float(object_size(cls, w, h)), 1) for track, cls, w, h in rows}

    def track_boxes(self, track: int) -> FrameBoxes:
        """Every box of one track."""
        rows = self.db.execute("SELECT b.frame, b.x1, b.y1, b.x2, b.y2, b.score, t.cls, b.track FROM boxes b "
                               "JOIN tracks t ON t.id = b.track WHERE b.track = ? ORDER BY b.frame", (track,)).fetchall()
        a = np.array(rows, np.float64).reshape(-1, 8)
        return FrameBoxes(a[:, 0].astype(np.int64), Detections(a[:, 1:5], a[:, 5], a[:, 6].astype(np.int64),
                                                               a[:, 7].astype(np.int64)))


def plan_path(outdir: Path, stem: str) -> Path:
    return outdir / f"{stem}{SUFFIX}"
