"""Render: the plan and a reviewer's decisions in, the redacted video, audio and transcripts out, no detector run.

Detection is the expensive pass; a reviewer's decision must re-render in a fraction of its time. `render`
decodes the original again, takes each frame's boxes from the plan, drops the tracks a reviewer un-redacted,
adds the regions drawn and the frame ranges blacked out, redacts with the run's own modes, and encodes with
the run's own settings: with no decisions, it reproduces the run's pixels. Audio is bleeped from the plan's
spoken-PII spans with the reviewer's word decisions applied, and the transcripts rebuilt from the plan's words.
Everything is finished under temporary names and renamed into place only when every part succeeded. It
refuses an original whose SHA-256 is not the one the audit log recorded: boxes are only valid for those pixels.
With the agency's key (`redact.review.custody`), it refuses a log or a decisions history whose signature fails, embeds
Content Credentials in the video (`redact.review.credentials`) and signs the log it writes.

`Previewer` shows the review page any single frame as the render would make it, with decisions not yet saved.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from redact.anonymize import RedactionPolicy, anonymize, redacted_roi
from redact.audio import build_transcript, track_info, track_stem, transcription_of, write_bleeped, write_transcripts
from redact.audit import file_entry, write_json_atomic
from redact.detect import Detections
from redact.errors import MediaError, UserError, writing_to
from redact.models import sha256_file
from redact.plan import SUFFIX as PLAN_SUFFIX
from redact.plan import Plan, plan_path
from redact.review.custody import Custody
from redact.review.decisions import Bounds, Decisions, Reasons, decisions_path, digest, load, load_reasons
from redact.track import frame_motion, shrink
from redact.transcribe import Transcription
from redact.video import Frame, VideoWriter, _open, _upright, nvenc_available, probe, read_frames, threaded

CHUNK = 256  # frames of boxes read from the plan at once
ZERO = "0" * 64


# ------------------------------------------------------------------------------------------------ decisions -> boxes
@dataclass(frozen=True)
class RenderSpec:
    """Decisions in the form a frame needs: which tracks are un-redacted where, what regions and frame ranges add."""

    hidden: dict[int, list[list[int]] | None]  # track -> the frame ranges un-redacted (None: all of its frames)
    reasons: dict[int, str]  # track -> reason code a reviewer gave its redaction (others carry the automatic one)
    regions: list[dict]
    frame_ranges: list[dict]
    fixes: dict[int, list[dict]]  # track -> the reviewer's box fixes of it, in the order made (the last one counts)

    @classmethod
    def of(cls, state: dict) -> RenderSpec:
        hidden, reasons, fixes = {}, {}, {}
        for key, d in state["tracks"].items():
            if d["redact"]:
                reasons[int(key)] = d["reason"]
            else:
                hidden[int(key)] = d.get("frames")
        for fix in state.get("fixes", []):
            fixes.setdefault(fix["track"], []).append(fix)
        return cls(hidden, reasons, list(state["regions"]), list(state["frame_ranges"]), fixes)

    def fixed(self, track: int, frame: int, box: np.ndarray) -> np.ndarray:
        """The plan's `box` of `track` at `frame`, as the last box fix over that frame corrects it."""
        fix = next((f for f in reversed(self.fixes.get(track, ())) if f["frames"][0] <= frame <= f["frames"][1]), None)
        return box if fix is None else fixed_box(box, fix["keys"], frame)

    def fix(self, frame: int, dets: Detections) -> Detections:
        """`dets` of `frame` with the reviewer's box fixes applied."""
        if not self.fixes or not len(dets):
            return dets
        xyxy = np.stack([self.fixed(t, frame, b) for t, b in zip(dets.track_id.tolist(), dets.xyxy, strict=True)])
        return Detections(xyxy, dets.score, dets.cls, dets.track_id)

    def released(self, track: int, frame: int) -> bool:
        """Whether a reviewer un-redacted `track` at `frame`."""
        if track not in self.hidden:
            return False
        ranges = self.hidden[track]
        return ranges is None or any(a <= frame <= b for a, b in ranges)

    def kept(self, frame: int, dets: Detections) -> Detections:
        """The plan's boxes of `frame` without those a reviewer un-redacted there."""
        if not self.hidden or not len(dets):
            return dets
        return dets[~np.array([self.released(tid, frame) for tid in dets.track_id.tolist()])]

    def active(self, items: list[dict], frame: int) -> list[dict]:
        return [i for i in items if i["frames"][0] <= frame <= i["frames"][1]]


def fixed_box(box: np.ndarray, keys: list[dict], frame: int) -> np.ndarray:
    """`box` (the plan's, at `frame`) as a fix's keyframes correct it. A keyframe's correction is the box drawn
    against the plan's box there, in units of the plan box's size, so it moves and scales with the detection (the
    object's and the camera's motion carry it); between keyframes it is interpolated, before the first and after
    the last it holds."""
    def correction(key: dict) -> np.ndarray:
        was, drawn = np.asarray(key["was"], np.float64), np.asarray(key["box"], np.float64)
        return (drawn - was) / np.maximum(np.tile(was[2:] - was[:2], 2), 1e-6)

    frames = [k["frame"] for k in keys]
    at = int(np.searchsorted(frames, frame))
    if at == 0 or at == len(keys):
        d = correction(keys[min(at, len(keys) - 1)])
    else:
        t = (frame - frames[at - 1]) / (frames[at] - frames[at - 1])
        d = (1 - t) * correction(keys[at - 1]) + t * correction(keys[at])
    box = np.asarray(box, np.float64)
    return (box + d * np.tile(box[2:] - box[:2], 2)).astype(np.float32)


def redact_frame(image: np.ndarray, frame: int, dets: Detections, spec: RenderSpec, region_boxes: dict[str, np.ndarray],
                 policy: RedactionPolicy, auto_reason: str = "", label_codes: bool = False) -> np.ndarray:
    """Redact `image` (frame number `frame`, in place) as plan ⊕ decisions say: the kept track boxes with the
    run's policy, each active region with its own mode (rectangles), each active frame range over the whole
    frame. With `label_codes`, each redaction's reason code is written on it (the OPEN Government Act asks for
    the exemption to be marked at the place of deletion where feasible)."""
    kept = spec.fix(frame, spec.kept(frame, dets))
    if len(kept):
        anonymize(image, kept, policy)
    regions = [r for r in spec.active(spec.regions, frame) if r["id"] in region_boxes]
    for r in regions:
        box = Detections(region_boxes[r["id"]][None], [1.0], [0])
        anonymize(image, box, RedactionPolicy(modes=(r["mode"],), ellipse=(False,), fill_bgr=policy.fill_bgr))
    ranges = spec.active(spec.frame_ranges, frame)
    for r in ranges:
        image[...] = redacted_roi(image, r["mode"], policy.fill_bgr)
    if label_codes:
        labels = [(b, spec.reasons.get(t, auto_reason)) for b, t in zip(kept.xyxy, kept.track_id.tolist(), strict=True)]
        labels += [(region_boxes[r["id"]], r["reason"]) for r in regions]
        h, w = image.shape[:2]
        labels += [(np.array([0, 0, w, h], np.float32), r["reason"]) for r in ranges]
        for box, code in labels:
            _label(image, box, code)
    return image


def _label(image: np.ndarray, box: np.ndarray, code: str) -> None:
    """`code` in white on black at the box's top-left corner, inside the frame, sized to the box."""
    h, w = image.shape[:2]
    scale = float(np.clip((box[3] - box[1]) / 60, 0.35, 1.2))
    (tw, th), base = cv2.getTextSize(code, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = int(np.clip(box[0], 0, max(0, w - tw - 4)))
    y = int(np.clip(box[1], 0, max(0, h - th - base - 4)))
    cv2.rectangle(image, (x, y), (x + tw + 4, y + th + base + 4), (0, 0, 0), -1)
    cv2.putText(image, code, (x + 2, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


class RegionFollower:
    """Carries a box drawn on one frame through the frames after it: the camera's motion moves and scales it (as it
    moves the tracks' boxes), then template matching near there puts it back on what was drawn, and keeps the
    camera's estimate when the match is poor (occlusion, blur): a followed region never jumps to something else.
    The box keeps the camera's scale, not the template's: as the camera zooms in, what was drawn grows."""

    MATCH = 0.5  # normalised correlation a template match needs to move the box

    EDGE = 1.0  # px: a box drawn this near the frame's edge was cut by it

    def __init__(self, image: np.ndarray, box: np.ndarray):
        self.box = self.past_the_edges(np.asarray(box, np.float32), *image.shape[:2])
        self.small = shrink(image)
        self.grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        self.template, self.anchor = self._crop(self.grey, self.box)

    @classmethod
    def past_the_edges(cls, box: np.ndarray, h: int, w: int) -> np.ndarray:
        """A box drawn against the frame's edge, carried on past it by its own size: a reviewer cannot draw beyond
        the frame, and what the edge cuts off comes into view under the region as the camera moves (a plate cut
        by the bottom edge was left 13% uncovered as it rose into view). Covering more than was drawn there costs
        background; covering less leaks."""
        x1, y1, x2, y2 = box
        bw, bh = x2 - x1, y2 - y1
        return np.array([x1 - bw if x1 <= cls.EDGE else x1, y1 - bh if y1 <= cls.EDGE else y1,
                         x2 + bw if x2 >= w - cls.EDGE else x2, y2 + bh if y2 >= h - cls.EDGE else y2], np.float32)

    @staticmethod
    def _crop(grey: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pixels under `box`, and where they start from the box's centre: a match puts the centre back at that
        distance from where the pixels are found (the box is fractional, the crop whole pixels; placing the box at
        the match itself drifted half a pixel a frame)."""
        h, w = grey.shape
        x1, y1 = int(np.clip(round(box[0]), 0, w - 1)), int(np.clip(round(box[1]), 0, h - 1))
        x2, y2 = int(np.clip(round(box[2]), x1 + 1, w)), int(np.clip(round(box[3]), y1 + 1, h))
        return grey[y1:y2, x1:x2], np.array([x1 - (box[0] + box[2]) / 2, y1 - (box[1] + box[3]) / 2])

    def step(self, image: np.ndarray) -> np.ndarray:
        """The box in `image`, the frame after the last one given."""
        small = shrink(image)
        motion = frame_motion(self.small, small)
        corners = np.array([[self.box[0], self.box[1]], [self.box[2], self.box[3]]], np.float64)
        moved = corners @ motion[:, :2].T + motion[:, 2]
        box = np.array([*moved.min(0), *moved.max(0)], np.float32)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        th, tw = self.template.shape
        bw, bh = box[2] - box[0], box[3] - box[1]
        sx1, sy1 = int(max(0, box[0] - bw / 2)), int(max(0, box[1] - bh / 2))
        sx2, sy2 = int(min(w, box[2] + bw / 2)), int(min(h, box[3] + bh / 2))
        # the match only where the template, carried by the camera, is still all in the frame: pixels moved out of
        # it cannot be found, and the match held the box against the frame's edge; the camera carries it meanwhile
        ex, ey = (box[0] + box[2]) / 2 + self.anchor[0], (box[1] + box[3]) / 2 + self.anchor[1]
        fits = ex >= 0 and ey >= 0 and ex + tw <= w and ey + th <= h
        if fits and th >= 4 and tw >= 4 and sx2 - sx1 > tw and sy2 - sy1 > th:
            scores = cv2.matchTemplate(grey[sy1:sy2, sx1:sx2], self.template, cv2.TM_CCOEFF_NORMED)
            _, best, _, (mx, my) = cv2.minMaxLoc(scores)
            if best >= self.MATCH:  # the match moves the box; the camera's motion sizes it (a zoom grows it)
                cx, cy = sx1 + mx - self.anchor[0], sy1 + my - self.anchor[1]
                box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], np.float32)
                self.template, self.anchor = self._crop(grey, box)
        self.box, self.small, self.grey = box, small, grey
        return self.shown()

    def shown(self) -> np.ndarray:
        """The box cut to the frame. The follower keeps the whole box, also where it is partly outside the frame:
        cut, it came back into view shrunk."""
        h, w = self.grey.shape
        return np.array([np.clip(self.box[0], 0, w - 1), np.clip(self.box[1], 0, h - 1), np.clip(self.box[2], 1, w),
                         np.clip(self.box[3], 1, h)], np.float32)


class RegionPath:
    """A region's box frame by frame, for frames given in order from its first: a static region stays where it
    was drawn, a followed one moves with what was drawn (`RegionFollower`, started on the first frame)."""

    def __init__(self, region: dict):
        self.box = np.array(region["box"], np.float32)
        self.follower: RegionFollower | None = None
        self.follows = region["follow"]

    def at(self, frame: Frame) -> np.ndarray:
        if not self.follows:
            return self.box
        if self.follower is None:
            self.follower = RegionFollower(frame.image, self.box)
            return self.follower.shown()
        return self.follower.step(frame.image)


def follow(frames: Iterable[Frame], region: dict) -> Iterator[tuple[int, np.ndarray]]:
    """The box of `region` in each of its frames (`frames` must start at or before its first frame)."""
    first, last = region["frames"]
    path = RegionPath(region)
    for frame in frames:
        if frame.index > last:
            return
        if frame.index >= first:
            yield frame.index, path.at(frame)


# ------------------------------------------------------------------------------------------------ speech
def speech_redactions(speech: dict, words: list[dict], pad: float) -> tuple[dict[int, str], list[dict]]:
    """Label per word index and the spans to bleep, from the plan's automatic PII spans and the reviewer's word
    decisions: an automatic span that an un-redact decision on its track overlaps is dropped; a redact decision
    adds its span (widened by `pad`). Spans carry "source" (auto/manual), "category", "reason", the decision's
    "id" and the audio "track" (1, 2, ...) they mute; a decision names its track (the first when it does not)."""
    all_words = [(s.get("track", 1), w) for s in speech["segments"] for w in s["words"]]
    release = [d for d in words if not d["redact"]]
    labels: dict[int, str] = {}
    spans = []
    for r in speech["redactions"]:
        i, j = r["words"]
        track = r.get("track", 1)
        lo, hi = (all_words[i][1]["start"], all_words[j - 1][1]["end"]) if j > i else (r["start"], r["end"])
        undo = next((d for d in release if d.get("track", 1) == track and d["start"] < hi and d["end"] > lo), None)
        spans.append({"start": r["start"], "end": r["end"], "category": r["category"], "source": "auto",
                      "redact": undo is None, "reason": undo["reason"] if undo else None, "id": undo["id"] if undo else None,
                      "words": [i, j], "track": track})
        if undo is None:
            labels.update({k: r["category"] for k in range(i, j)})
    for d in words:
        if not d["redact"]:
            continue
        track = d.get("track", 1)
        covered = [k for k, (t, w) in enumerate(all_words)
                   if t == track and d["start"] <= (w["start"] + w["end"]) / 2 <= d["end"]]
        labels.update({k: d["reason"] for k in covered})
        spans.append({"start": round(max(0.0, d["start"] - pad), 3), "end": round(d["end"] + pad, 3),
                      "category": d["reason"], "source": "manual", "redact": True, "reason": d["reason"], "id": d["id"],
                      "words": [min(covered), max(covered) + 1] if covered else [0, 0], "track": track})
    return labels, spans


def speech_tracks(speech: dict | None) -> list[int]:
    """The audio tracks (1, 2, ...) a plan's speech record covers."""
    if speech is None:
        return []
    return [t["track"] for t in speech.get("tracks", [])] or [1]


# ------------------------------------------------------------------------------------------------ the audit log
def review_section(plan_name: str, plan_sha256: str, decisions: Decisions, outside: list[str], reasons: Reasons,
                   label_codes: bool = False) -> dict:
    """What the audit log says of the review: the decisions rendered, their history's head, outside edits, and how
    many of the history's entries carry the agency's signature."""
    return {
        "plan": plan_name, "plan_sha256": plan_sha256,
        "decisions": decisions.state, "decisions_sha256": digest(decisions.state), "history_head": decisions.head,
        "history_entries": len(decisions.history), "history_signed": sum("sig" in e for e in decisions.history),
        "outside_edits": outside, "approved": decisions.state["approved"],
        "reasons": {"source": reasons.source, "auto": reasons.auto,
                    "codes": {c: {"label": r.label, "statute": r.statute} for c, r in reasons.codes.items()}},
        "rendered": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "label_codes": label_codes,
    }


def exemptions(plan: Plan, decisions: Decisions, reasons: Reasons, spans: list[dict]) -> list[dict]:
    """One row per redaction (and per un-redaction) for the exemption log: what, where in time, why, by whom.
    "source" says who decided: "auto" for the run's redactions, "manual" for what a reviewer added or released;
    "class" what it is (face, plate, region, frame; a PII category the run found in speech, or "speech")."""
    times = plan.times()
    fps = plan.video.get("fps") or 30.0
    state = decisions.state
    approver = (state["approved"] or {}).get("by")
    who = decisions.changed_by()

    def t(frame: int, end: bool = False) -> float:
        return round(float(times[frame]) + (1 / fps if end else 0), 3) if len(times) else 0.0

    def row(kind: str, target: str, cls: str, source: str, action: str, first: int | None, last: int | None,
            start: float, end: float, reason: str) -> dict:
        return {"kind": kind, "target": target, "class": cls, "source": source, "action": action,
                "first_frame": first, "last_frame": last, "start": start, "end": end, "reason": reason,
                "statute": reasons.codes[reason].statute if reason in reasons.codes else "",
                "reviewer": who.get(target, approver)}

    rows = []
    for track in plan.tracks():
        d = state["tracks"].get(str(track.id))
        target = f"track {track.id}"
        reason = d["reason"] if d and d["redact"] else reasons.auto
        if d and not d["redact"]:
            for a, b in d.get("frames", [[track.first, track.last]]):
                rows.append(row("video", target, track.class_name, "manual", "unredacted", a, b, t(a), t(b, True),
                                d["reason"]))
            if "frames" not in d:
                continue
        rows.append(row("video", target, track.class_name, "auto", "redacted", track.first, track.last, t(track.first),
                        t(track.last, True), reason))
    for r in state["regions"]:
        a, b = r["frames"]
        rows.append(row("video", f"regions {r['id']}", "region", "manual", "redacted", a, b, t(a), t(b, True), r["reason"]))
    for r in state["frame_ranges"]:
        a, b = r["frames"]
        rows.append(row("video", f"frame_ranges {r['id']}", "frame", "manual", "redacted", a, b, t(a), t(b, True),
                        r["reason"]))
    for n, s in enumerate(spans):
        target = (f"words {s['id']}" if s["id"] else f"speech {n + 1}") + \
            (f" on audio track {s['track']}" if s.get("track", 1) > 1 else "")
        reason = s["reason"] or reasons.auto
        # the class of what was found (a PII category), or "speech" where a reviewer marked it; a reviewer's release
        # of an automatic span is the reviewer's (manual) act
        cls = s["category"] if s["source"] == "auto" else "speech"
        source = s["source"] if s["redact"] else "manual"
        rows.append(row("audio", target, cls, source, "redacted" if s["redact"] else "unredacted", None, None,
                        s["start"], s["end"], reason))
    rows.sort(key=lambda r: (r["start"], r["kind"], r["target"]))
    return rows


# ------------------------------------------------------------------------------------------------ render
@dataclass
class RenderResult:
    video: Path
    log: Path
    transcripts: list[Path] = field(default_factory=list)
    frames: int = 0
    audit: dict = field(default_factory=dict, repr=False)


def bounds_of(plan: Plan) -> Bounds:
    speech = plan.speech
    return Bounds(plan.frame_count, plan.video["width"], plan.video["height"], frozenset(t.id for t in plan.tracks()),
                  float(speech["duration"]) if speech else float(plan.video.get("duration") or 0),
                  frozenset(w.get("speaker") for s in speech["segments"] for w in s["words"] if w.get("speaker"))
                  if speech else frozenset(), len(speech_tracks(speech)))


def read_log(outdir: Path, stem: str) -> dict:
    path = outdir / f"{stem}.redaction.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no audit log (run `redact run` first, into this folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: unreadable audit log: {e}") from None


def check_original(entry: dict) -> Path:
    """The original video, verified against the SHA-256 a run recorded for it (`entry`: the audit log's or the
    plan's "input"): the plan's boxes are valid for those pixels only."""
    original = Path(entry["path"])
    if not original.is_file():
        raise UserError(f"{original}: the original video is gone (moved or deleted since `redact run`)")
    if sha256_file(original) != entry["sha256"]:
        raise UserError(f"{original}: the original no longer matches the SHA-256 in the audit log; "
                        "the plan's boxes are not valid for it (run `redact run` again)")
    return original


def stems(outdir: Path) -> list[str]:
    """The videos of OUTDIR that have a plan."""
    return sorted(p.name[: -len(PLAN_SUFFIX)] for p in Path(outdir).glob(f"*{PLAN_SUFFIX}") if not p.name.startswith("."))


def render(outdir: str | os.PathLike[str], stem: str, *, reasons: Reasons | None = None,
           dest: str | os.PathLike[str] | None = None, label_codes: bool = False,
           progress: Callable[[int, int], None] | None = None, custody: Custody | None = None) -> RenderResult:
    """Re-render `stem` in `outdir` from its plan and decisions, replacing its video, transcripts and log (or
    writing them into `dest`, leaving `outdir` as it is). Raises UserError when the plan, log or original is
    missing, the original changed, the decisions are invalid, or a signature fails (`custody`; default: the
    agency's key where there is one)."""
    outdir = Path(outdir)
    target = Path(dest) if dest is not None else outdir
    with writing_to(target):
        return _render(outdir, stem, reasons or load_reasons(), target, dest is None, label_codes, progress,
                       custody or Custody.resolve())


def _render(outdir: Path, stem: str, reasons: Reasons, target: Path, in_place: bool, label_codes: bool,
            progress: Callable[[int, int], None] | None, custody: Custody) -> RenderResult:
    log = read_log(outdir, stem)
    custody.check_log(log, outdir / f"{stem}.redaction.json")
    with Plan(plan_path(outdir, stem)) as plan:
        original = check_original(log["input"])
        decisions, outside = load(decisions_path(outdir, stem), reasons, bounds_of(plan), custody)
        recorded = (log.get("review") or {}).get("history_head", ZERO)
        if recorded != ZERO and recorded not in {e["hash"] for e in decisions.history}:
            raise UserError(f"{decisions.path}: its history no longer holds the entries the last render recorded "
                            "(cut or replaced); restore it from a backup")
        if outside and in_place:
            decisions.save()  # the outside edit is recorded in the history before anything is rendered from it
        options = plan.meta["render"]
        spec = RenderSpec.of(decisions.state)
        policy = RedactionPolicy(modes=(options["face_mode"], options["plate_mode"]))
        target.mkdir(parents=True, exist_ok=True)
        video_out = target / f"{stem}.redacted.mp4"
        log_out = target / f"{stem}.redaction.json"
        pending_log = log_out.with_name(f".{log_out.name}.pending")
        workdir = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".work", dir=target))
        writer = None
        published: list[Path] = []
        try:
            speech = plan.speech
            tracks = speech_tracks(speech)
            spans: list[dict] = []
            labels: dict[int, str] = {}
            wavs: dict[int, Path] = {}  # track -> its bleeped audio
            if speech is not None:
                labels, spans = speech_redactions(speech, decisions.state["words"], options.get("pad", 0.1))
                for track in tracks if options.get("redact_audio", True) else []:
                    bleeps = [s for s in spans if s["redact"] and s["track"] == track]
                    if bleeps:
                        wavs[track] = write_bleeped(original, workdir / f"{track_stem(stem, track - 1)}.redacted-audio.wav",
                                                    bleeps, options.get("bleep", "tone"), track - 1)
            info = probe(original)
            encoder = options.get("encoder", "libx264")
            if encoder == "h264_nvenc" and not nvenc_available():
                encoder = "libx264"
            # the tracks the run transcribed, each bleeped where it has spans (a plan from before tracks covers the
            # first alone, as its run kept); every track as it is where the run had no audio stage
            audio = [(wavs[t], 0) if t in wavs else (original, t - 1) for t in tracks] if speech is not None else None
            writer = VideoWriter(video_out, info, crf=options["crf"], preset=options["preset"], encoder=encoder,
                                 audio=audio)
            frames = _render_frames(original, plan, spec, policy, reasons.auto, label_codes, writer, progress)
            writer.finish()
            if frames != plan.frame_count:
                raise MediaError(f"{original}: decoded {frames} frames, the plan has {plan.frame_count}")
            rows = exemptions(plan, decisions, reasons, spans)
            credentials = custody.credentials(
                writer.tmp, workdir, Counter(r["class"] for r in rows if r["kind"] == "video" and r["action"] == "redacted"),
                sum(s["redact"] for s in spans) if wavs else 0, log["input"]["sha256"], video_out.name)
            output = file_entry(writer.tmp, video_out)
            transcripts = []
            result = transcription_of(speech) if speech is not None else None
            words = [w for seg in result.segments for w in seg.words] if result else []
            by_id = {id(words[k]): label for k, label in labels.items()}
            for track in tracks:
                about = track_info(speech, track)
                segments = [seg for seg, d in zip(result.segments, speech["segments"], strict=True)
                            if d.get("track", 1) == track]
                kept = [{"start": s["start"], "end": s["end"], "category": s["category"]} for s in spans
                        if s["redact"] and s["track"] == track]
                transcript = build_transcript(output["path"], output["sha256"],
                                              Transcription(about["language"], about["duration"], segments),
                                              speech["model"], by_id, kept, decisions.state.get("speakers"), track)
                transcripts += write_transcripts(transcript, workdir, track_stem(stem, track - 1))
            audit = copy.deepcopy(log)
            audit["output"] = output
            audit["review"] = review_section(plan.path.name, sha256_file(plan.path), decisions, outside, reasons, label_codes)
            audit["exemptions"] = rows
            audit["content_credentials"] = credentials
            if audit.get("audio") is not None:
                audit["audio"]["redactions"] = [{k: s[k] for k in ("start", "end", "category", "source", "reason",
                                                                   "track")} for s in spans if s["redact"]]
                audit["audio"]["audio_redacted"] = bool(wavs)
                for entry in audit["audio"].get("tracks", []):
                    entry["audio_redacted"] = entry["track"] in wavs
                    entry["redactions"] = sum(s["redact"] and s["track"] == entry["track"] for s in spans)
            audit.setdefault("renders", []).append({"at": audit["review"]["rendered"], "decisions_sha256":
                                                    audit["review"]["decisions_sha256"], "frames": frames})
            write_json_atomic(custody.seal(audit), pending_log)
            published.append(writer.publish())
            for f in transcripts:
                published.append(Path(shutil.move(f, target / f.name)))
            os.replace(pending_log, log_out)
        except BaseException:
            if writer is not None:
                writer.abort()
            for path in published:
                path.unlink(missing_ok=True)
            pending_log.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return RenderResult(video_out, log_out, published[1:], frames, audit)


def _render_frames(original: Path, plan: Plan, spec: RenderSpec, policy: RedactionPolicy, auto_reason: str,
                   label_codes: bool, writer: VideoWriter, progress: Callable[[int, int], None] | None) -> int:
    """Decode, redact and encode every frame (encoding in a thread of its own, as the run does)."""
    paths: dict[str, RegionPath] = {}
    total = plan.frame_count
    boxes = None
    count = 0
    with ThreadPoolExecutor(1) as encode:
        pending: list[Future] = []
        for frame in threaded(read_frames(original)):
            if boxes is None or frame.index > boxes[1]:
                first = frame.index
                boxes = (first, first + CHUNK - 1, plan.boxes(first, first + CHUNK - 1))
            region_boxes = {r["id"]: paths.setdefault(r["id"], RegionPath(r)).at(frame)
                            for r in spec.active(spec.regions, frame.index)}
            image = redact_frame(frame.image, frame.index, boxes[2].at(frame.index), spec, region_boxes, policy,
                                 auto_reason, label_codes)
            pending.append(encode.submit(writer.write, image, frame.pts))
            while len(pending) > 8 or (pending and pending[0].done()):
                pending.pop(0).result()
            count += 1
            if progress is not None:
                progress(count, total)
        for f in pending:
            f.result()
    return count


# ------------------------------------------------------------------------------------------------ preview
class FrameSource:
    """Random access to the original's frames by index (frame-accurate: frames are told apart by their
    timestamps, which the plan recorded), decoding forward from the current position when the request is close
    ahead and seeking otherwise; the last frames decoded are kept."""

    AHEAD = 60  # frames: closer than this, decoding on beats seeking

    def __init__(self, path: Path, pts: list[int]):
        self.path, self.pts = path, pts
        self.index = {p: i for i, p in enumerate(pts)}
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.container = None
        self.decoded: Iterator | None = None
        self.position = -1

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def _start(self, frame: int) -> None:
        self.close()
        self.container = _open(self.path)
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        if frame > 0:
            self.container.seek(self.pts[frame], stream=stream, backward=True, any_frame=False)
        self.decoded = self.container.decode(stream)
        self.position = -1

    def get(self, frame: int) -> np.ndarray:
        if frame in self.cache:
            self.cache.move_to_end(frame)
            return self.cache[frame]
        if not 0 <= frame < len(self.pts):
            raise UserError(f"frame {frame} is outside the video's 0..{len(self.pts) - 1}")
        if self.decoded is None or not self.position < frame <= self.position + self.AHEAD:
            self._start(frame)
        self._decode_to(frame)
        if frame not in self.cache and frame > 0:  # the seek landed past it (an imprecise index): from the start
            self._start(0)
            self._decode_to(frame)
        if frame not in self.cache:
            raise MediaError(f"{self.path}: frame {frame} could not be decoded")
        return self.cache[frame]

    def _decode_to(self, frame: int) -> None:
        for decoded in self.decoded:
            index = self.index.get(decoded.pts)
            if index is None:
                index = self.position + 1  # stamps the decoder repaired: the next frame in order
            self.position = index
            image = _upright(decoded.to_ndarray(format="bgr24"), int(decoded.rotation or 0) % 360)
            self.cache[index] = image
            while len(self.cache) > 48:
                self.cache.popitem(last=False)
            if index >= frame:
                break

    def frames(self, first: int, last: int) -> Iterator[Frame]:
        """Frames first..last in order (for following a region)."""
        for i in range(first, last + 1):
            yield Frame(i, self.pts[i], self.get(i))


class Previewer:
    """Single frames of a video as the original or as plan ⊕ a decisions state would render them, for the review
    page; followed regions are computed once per region and kept."""

    def __init__(self, plan: Plan, original: Path):
        self.plan = plan
        pts = [p for (p,) in plan.db.execute("SELECT pts FROM frames ORDER BY frame")]
        self.source = FrameSource(original, pts)
        options = plan.meta["render"]
        self.policy = RedactionPolicy(modes=(options["face_mode"], options["plate_mode"]))
        self.paths: dict[str, dict[int, np.ndarray]] = {}

    def close(self) -> None:
        self.source.close()

    def region_path(self, region: dict) -> dict[int, np.ndarray]:
        """A followed region's box in each of its frames, computed once (from a decoder of its own, so the page's
        position is kept)."""
        key = digest({k: region[k] for k in ("frames", "box", "follow")})
        if key not in self.paths:
            a, b = region["frames"]
            self.paths[key] = dict(follow(FrameSource(self.source.path, self.source.pts).frames(a, b), region))
        return self.paths[key]

    def region_box(self, region: dict, index: int) -> np.ndarray:
        return self.region_path(region)[index] if region["follow"] else np.array(region["box"], np.float32)

    def frame(self, index: int, state: dict, view: str = "preview", label_codes: bool = False,
              auto_reason: str = "") -> np.ndarray:
        image = self.source.get(index).copy()
        if view == "original":
            return image
        spec = RenderSpec.of(state)
        regions = {r["id"]: self.region_box(r, index) for r in spec.active(spec.regions, index)}
        return redact_frame(image, index, self.plan.boxes(index, index).dets, spec, regions, self.policy, auto_reason,
                            label_codes)

