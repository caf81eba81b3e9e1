"""Leak-rate benchmark: does any face or licence plate stay visible in any frame of a redacted video?

Method
------
1. Clips (benchmarks/synth.py): real annotated photos from ../shared/evaldata/faces and ../shared/evaldata/plates
   are laid out on a textured canvas and filmed by a virtual camera with known motion (pan, zoom in/out,
   handheld shake, a few degrees of roll), motion-blurred in proportion to each frame's motion and encoded
   with libx264 (CRF 28) through PyAV. Ground truth per frame = the annotated boxes mapped by the same affine.
   Object sizes are spread over the clips: faces about 12-120 px (min(w, h)), plates about 8-100 px (height).
   Each clip has two camera jerks (synth.JERKS, two of: a 4-frame motion-blur burst, a fast pan, a dropped-frame
   jump), whose frames (and the 2 after each) are also measured on their own: a body camera jerks at every step.
   Clips are seeded and cached in --work; each seed (--seeds, default 0,1) is one set of --clips clips per
   class, the size spread repeated with other photos and motions. One set of 6 is too few to tune on: the same
   options leaked 1.29% of >= 20 px faces on seed 0 and 0.62% on seed 1, and blanked 1.7% vs 3.7% background.
2. Tools, same clips, same machine, one after the other, all redacting with solid black:
   `redact` (this engine, library API, faces + plates, face_mode = plate_mode = "fill") and `deface` 1.5.0
   (`--replacewith solid`, its defaults otherwise: threshold 0.2, mask-scale 1.3; faces only, so plate
   figures are for `redact` alone).
3. Measures on the decoded outputs against the decoded clean clip:
   - a ground-truth box in a frame is *covered* when >= 70 % of its pixels that were not dark in the clean clip
     (luma > 40) are near-black in the output (luma < 25 and every channel < 40); boxes with no such pixel are
     not judged. Leak rate = share of judged box-frames not covered, overall and by size: faces >= 20 px
     (target <= 1 %) and < 20 px by min(w, h) of the unclipped box; plates with height >= 10 px (target <= 5 %)
     and < 10 px. Also the share of frames with any leak.
   - background wrongly redacted = share of non-dark pixels outside every ground-truth box (boxes grown 1.3x,
     the padding a redaction may add) that turned near-black (target <= 2 %). The photos carry unlabelled faces
     and plates (background people and cars), which a good tool rightly redacts, so the same figure is also
     given over the texture between photos only, where nothing should ever be redacted.
   - still looks like the input (face clips): a redaction that covers a face but leaves it looking as it was is
     a leak too (a blur barely changes a face already smeared by a camera jerk). The engine's final boxes (its
     plan) are redacted with its default blur on the decoded clean frames (no re-encode), deface runs again with
     `--replacewith blur`; a ground-truth box-frame still looks like the input when the mean absolute luma change
     over its pixels is below VISIBLE_MAD grey levels. Missed faces count here as well (they are unchanged).
   - frames per second of each tool over all clips, wall time including one model load (redact, in-process;
     imports excluded) or one process start (deface; its fixed start-up is also timed on a 2-frame clip).
   Both detectors of redact run on every clip, as deployed, so a plate box can also cover a face; the
   `plates=False` variant of --diagnose gives the face figures without that help.
4. `--diagnose` (redact only) records each detector's raw output on every frame once, replays it through the
   real pipeline (`Redactor.frames_with_boxes`: fusion, plate turns, tracking, smoothing) under variants of
   `RedactOptions`, scores the redaction masks the same way, and sorts each leaked box-frame by cause: detector
   miss, tracking gap, or a box present but too small. The replay of the benchmark's own options must reproduce
   the real run's leak rates (`replay_check` in the JSON); recorded detections are reused only for the same
   detect.py.

Command (from the project root; REDACT_HOME must point at the model cache):
    REDACT_HOME=/tmp/rh .venv/bin/python benchmarks/leak_bench.py [--frames-per-clip 50] [--clips 6] \
        [--seeds 0,1] [--work /tmp/redact-bench] [--size 1280x720] [--set FIELD=VALUE] [--diagnose] \
        [--variant faces:face_scale=1.5] [--out benchmarks/results/leak.json]
On 2 CPU cores the default size (2 classes x 2 seeds x 6 clips x 50 frames at 1280x720) takes about 15 minutes,
plus about 20 for --diagnose the first time (detections are then cached in --work).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.provenance import write_result  # noqa: E402
from benchmarks.synth import JERKS, KINDS, Clip, ClipTruth, clip_specs, load_photos, make_clip  # noqa: E402
from redact.anonymize import RedactionPolicy, anonymize  # noqa: E402
from redact.detect import FACE, PLATE, DetectionQueue, Detections  # noqa: E402
from redact.pipeline import RedactOptions, Redactor  # noqa: E402
from redact.plan import Plan, plan_path  # noqa: E402
from redact.track import Smoother  # noqa: E402
from redact.video import Frame, read_frames  # noqa: E402

DARK_INPUT = 40  # luma at or below this in the clean clip: cannot tell redacted from dark, not judged
BLACK_LUMA, BLACK_CHANNEL = 25, 40  # near-black output pixel
COVERED = 0.70  # share of judged pixels that must be near-black
BACKGROUND_GROW = 1.3  # ground-truth boxes grown by this before counting background pixels
BUCKETS = {
    "faces": (("faces >= 20 px", 20.0, math.inf), ("faces < 20 px", 0.0, 20.0)),
    "plates": (("plates h >= 10 px", 10.0, math.inf), ("plates h < 10 px", 0.0, 10.0)),
}
TARGETS = {"faces >= 20 px": 0.005, "plates h >= 10 px": 0.03, "background": 0.02, "jerk frames, faces >= 20 px": 0.003}
VISIBLE_MAD = 6.0  # grey levels: a box-frame whose redaction changed it less than this still looks like the input
CLASS_OF = {"faces": FACE, "plates": PLATE}


# ---------------------------------------------------------------------------------------------- scoring


def luma(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def near_black(bgr: np.ndarray) -> np.ndarray:
    return (luma(bgr) < BLACK_LUMA) & (bgr.max(axis=2) < BLACK_CHANNEL)


def _ints(box: np.ndarray, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return max(0, x1), max(0, y1), min(w, x2), min(h, y2)


def grow(boxes: np.ndarray, factor: float) -> np.ndarray:
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return np.concatenate([c - half, c + half], axis=1)


@dataclass
class Score:
    """One tool on one clip: coverage of every ground-truth row, and background pixel counts."""

    clip: str
    kind: str
    coverage: np.ndarray  # per truth row; NaN where no pixel could be judged
    size: np.ndarray
    frame: np.ndarray
    obj: np.ndarray
    jerk: np.ndarray  # per truth row: 0, or 1 + the index in JERKS of the camera jerk of its frame
    bg_pixels: int = 0
    bg_black: int = 0
    texture_pixels: int = 0
    texture_black: int = 0
    frames: int = 0


def score_frames(clip: Clip, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Score:
    """Score (clean-luma, blacked-mask) pairs, one per frame in order, against the clip's truth."""
    truth: ClipTruth = clip.truth
    cov = np.full(len(truth.frame), np.nan, np.float64)
    s = Score(clip.spec.name, clip.spec.kind, cov, truth.size, truth.frame, truth.obj, truth.jerk[truth.frame])
    for t, (y, blacked) in enumerate(pairs):
        h, w = y.shape
        lit = y > DARK_INPUT
        allowed = np.zeros((h, w), bool)
        rows = truth.rows(t)
        for r in rows:
            x1, y1, x2, y2 = _ints(truth.box[r], w, h)
            judged = lit[y1:y2, x1:x2]
            n = int(judged.sum())
            if n:
                cov[r] = float(blacked[y1:y2, x1:x2][judged].sum()) / n
        for box in grow(truth.full[rows], BACKGROUND_GROW) if len(rows) else ():
            x1, y1, x2, y2 = _ints(box, w, h)
            allowed[y1:y2, x1:x2] = True
        bg = lit & ~allowed
        texture = bg & ~truth.photo_mask(t, w, h)
        s.bg_pixels += int(bg.sum())
        s.bg_black += int((bg & blacked).sum())
        s.texture_pixels += int(texture.sum())
        s.texture_black += int((texture & blacked).sum())
        s.frames += 1
    if s.frames != truth.frames:
        raise RuntimeError(f"{clip.spec.name}: scored {s.frames} frames, the clip has {truth.frames}")
    return s


def score_video(clip: Clip, output: Path) -> Score:
    """Score a tool's output video against the clean clip, frame by frame (frame counts must agree)."""

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        clean, out = read_frames(clip.video), read_frames(output)
        for a, b in zip(clean, out, strict=True):
            if a.image.shape != b.image.shape:
                raise RuntimeError(f"{output}: frame size {b.image.shape} differs from the clip's {a.image.shape}")
            yield luma(a.image), near_black(b.image)

    return score_frames(clip, pairs())


def score_looks(clip: Clip, redacted: Iterable[np.ndarray]) -> np.ndarray:
    """Per truth row, the mean absolute luma change the redaction made over the box (NaN where nothing is judged,
    as `score_frames`): below VISIBLE_MAD the box-frame still looks like the input."""
    truth = clip.truth
    mad = np.full(len(truth.frame), np.nan)
    n = 0
    for (t, clean), out in zip(enumerate(read_frames(clip.video)), redacted, strict=True):
        y, yo = luma(clean.image).astype(np.int16), luma(out).astype(np.int16)
        h, w = y.shape
        for r in truth.rows(t):
            x1, y1, x2, y2 = _ints(truth.box[r], w, h)
            if (y[y1:y2, x1:x2] > DARK_INPUT).any():
                mad[r] = float(np.abs(yo[y1:y2, x1:x2] - y[y1:y2, x1:x2]).mean())
        n += 1
    if n != truth.frames:
        raise RuntimeError(f"{clip.spec.name}: {n} redacted frames, the clip has {truth.frames}")
    return mad


def blurred_by_plan(clip: Clip, plan_file: Path) -> Iterator[np.ndarray]:
    """The clean clip's frames redacted with the engine's default blur at the final boxes of its run's plan."""
    with Plan(plan_file) as plan:
        boxes = plan.boxes(0, clip.truth.frames - 1)
        for frame in read_frames(clip.video):
            yield anonymize(frame.image, boxes.at(frame.index), RedactionPolicy())


def summarize_looks(clips: list[Clip], mads: list[np.ndarray]) -> dict:
    """Share of judged face box-frames that still look like the input, by size, on jerk frames and per jerk kind."""
    size = np.concatenate([c.truth.size for c in clips])
    jerk = np.concatenate([c.truth.jerk[c.truth.frame] for c in clips])
    mad = np.concatenate(mads)
    judged = ~np.isnan(mad)
    same = judged & (np.nan_to_num(mad, nan=np.inf) < VISIBLE_MAD)
    groups = {name: (size >= lo) & (size < hi) for name, lo, hi in BUCKETS["faces"]}
    groups["jerk frames, faces >= 20 px"] = (size >= 20) & (jerk > 0)
    groups.update({f"{kind} frames, faces >= 20 px": (size >= 20) & (jerk == 1 + i) for i, kind in enumerate(JERKS)})
    out = {name: {"box_frames": int((judged & g).sum()), "looks_like_input": int((same & g).sum()),
                  "rate": _rate(int((same & g).sum()), int((judged & g).sum()))} for name, g in groups.items()}
    out["mean_change_faces >= 20 px"] = round(float(mad[judged & groups["faces >= 20 px"]].mean()), 2)
    return out


def _rate(bad: int, total: int) -> float | None:
    return round(bad / total, 5) if total else None


def summarize(scores: list[Score], kind: str) -> dict:
    """Leak rates (overall, per size bucket, per clip, per frame) and background rates over some clips."""
    cov = np.concatenate([s.coverage for s in scores])
    size = np.concatenate([s.size for s in scores])
    judged = ~np.isnan(cov)
    leaked = judged & (np.nan_to_num(cov, nan=1.0) < COVERED)
    out: dict = {
        "box_frames": int(judged.sum()), "not_judged": int((~judged).sum()), "leaked": int(leaked.sum()),
        "leak": _rate(int(leaked.sum()), int(judged.sum())), "buckets": {},
    }
    for name, lo, hi in BUCKETS[kind]:
        inb = judged & (size >= lo) & (size < hi)
        out["buckets"][name] = {"box_frames": int(inb.sum()), "leaked": int((leaked & inb).sum()),
                                "leak": _rate(int((leaked & inb).sum()), int(inb.sum()))}
    frames_any = frames_leak = 0
    per_clip = {}
    for s in scores:
        j = ~np.isnan(s.coverage)
        lk = j & (np.nan_to_num(s.coverage, nan=1.0) < COVERED)
        frames_any += len(np.unique(s.frame[j]))
        frames_leak += len(np.unique(s.frame[lk]))
        per_clip[s.clip] = {"box_frames": int(j.sum()), "leaked": int(lk.sum()),
                            "leak": _rate(int(lk.sum()), int(j.sum())),
                            "median_size": round(float(np.median(s.size)), 1) if len(s.size) else None}
    jerk = np.concatenate([s.jerk for s in scores])
    out["jerk_frames"] = {}
    for name, lo, _ in BUCKETS[kind][:1]:  # the large bucket, on jerk frames and per jerk kind
        for label, sel in [("jerk frames", jerk > 0)] + [(f"{k} frames", jerk == 1 + i) for i, k in enumerate(JERKS)]:
            inb = judged & (size >= lo) & sel
            out["jerk_frames"][f"{label}, {name}"] = {"box_frames": int(inb.sum()), "leaked": int((leaked & inb).sum()),
                                                      "leak": _rate(int((leaked & inb).sum()), int(inb.sum()))}
    out["frames_with_truth"] = frames_any
    out["frames_with_leak"] = frames_leak
    out["frame_leak"] = _rate(frames_leak, frames_any)
    bg_p, bg_b = sum(s.bg_pixels for s in scores), sum(s.bg_black for s in scores)
    tx_p, tx_b = sum(s.texture_pixels for s in scores), sum(s.texture_black for s in scores)
    out["background"] = _rate(bg_b, bg_p)
    out["background_texture_only"] = _rate(tx_b, tx_p)
    out["clips"] = per_clip
    return out


# ---------------------------------------------------------------------------------------------- tools


def engine_options(overrides: dict | None = None, **extra) -> RedactOptions:
    """The engine's options for this benchmark: CPU, solid black fill for both classes, video only (the clips
    are silent: no audio pass, no transcript index), plus overrides."""
    base = {"device": "cpu", "face_mode": "fill", "plate_mode": "fill", "audio": None}
    return RedactOptions(**{**base, **(overrides or {}), **extra})


def run_redact(clips: list[Clip], outdir: Path, options: RedactOptions) -> tuple[dict[str, Path], dict]:
    outdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    redactor = Redactor(options)
    loaded = time.perf_counter()
    outputs = {}
    frames = 0
    for clip in clips:
        result = redactor.run(clip.video, outdir)
        outputs[clip.spec.name] = result.video
        frames += result.frames
    end = time.perf_counter()
    return outputs, {"frames": frames, "wall_s": round(end - start, 2), "load_s": round(loaded - start, 2),
                     "fps": round(frames / (end - start), 3), "fps_without_load": round(frames / (end - loaded), 3)}


def deface_exe() -> str:
    exe = Path(sys.executable).with_name("deface")
    return str(exe) if exe.exists() else (shutil.which("deface") or "deface")


DEFACE_FFMPEG = ["--ffmpeg-config", json.dumps({"codec": "libx264", "macro_block_size": 1})]
DEFACE_ARGS = ["--replacewith", "solid", *DEFACE_FFMPEG]


def run_deface(clips: list[Clip], outdir: Path, replace: str = "solid") -> tuple[dict[str, Path], dict]:
    """deface on all clips in one process (so its start-up is paid once, like the engine's model load)."""
    outdir.mkdir(parents=True, exist_ok=True)
    inputs = []
    for clip in clips:
        link = outdir / clip.video.name
        link.unlink(missing_ok=True)
        link.symlink_to(clip.video.resolve())
        (outdir / f"{clip.video.stem}_anonymized.mp4").unlink(missing_ok=True)
        inputs.append(str(link))
    start = time.perf_counter()
    proc = subprocess.run([deface_exe(), *inputs, "--replacewith", replace, *DEFACE_FFMPEG], capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    outputs = {c.spec.name: outdir / f"{c.video.stem}_anonymized.mp4" for c in clips}
    missing = [str(p) for p in outputs.values() if not p.exists()]
    if proc.returncode or missing:
        raise RuntimeError(f"deface failed (rc {proc.returncode}, missing {missing}): {proc.stderr[-2000:]}")
    frames = sum(c.truth.frames for c in clips)
    return outputs, {"frames": frames, "wall_s": round(wall, 2), "fps": round(frames / wall, 3)}


def deface_startup(work: Path) -> float:
    """Seconds deface needs to start, load its model and write a 2-frame clip: its fixed cost per process."""
    import av

    path = work / "deface-startup.mp4"
    if not path.exists():
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
            for _ in range(2):
                c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="bgr24")))
            c.mux(s.encode(None))
    start = time.perf_counter()
    subprocess.run([deface_exe(), str(path), "-o", str(work / "deface-startup-out.mp4"), *DEFACE_ARGS],
                   capture_output=True, check=True)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- diagnosis


def detector_code() -> str:
    """Fingerprint of the detection code and weights registry (as loaded by this process, see DETECTOR_CODE):
    recorded detections are only reused with the same."""
    digest = hashlib.sha256()
    for name in ("redact/detect.py", "models/registry.toml"):
        path = ROOT / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:8]


# taken right after `redact` was imported, so it describes the loaded code even if files change during a run (the
# engine's own fingerprint is provenance.CODE, stamped on the result file)
DETECTOR_CODE = detector_code()


def detect_all(clip: Clip, detectors: list, cache: Path) -> list[list[Detections]]:
    """Raw detections of each of `detectors` on every frame of the clip (per detector, per frame), each detector
    cached on its own in `cache`. Replayed detector by detector, the pipeline fuses them and takes turns as it
    does with the models themselves."""
    per_detector = []
    for d in detectors:
        tag = f"{d.weights.parent.name}-t{d.threshold}-s{getattr(d, 'scale', '')}-i{getattr(d, 'imgsz', '')}"
        path = cache / f"{clip.spec.name}.dets-{tag}-{DETECTOR_CODE}.npz"
        if not path.exists():
            rows = []
            for frame in read_frames(clip.video):
                dets = d([frame.image])[0]
                rows.extend([frame.index, *b, s, c] for b, s, c in zip(dets.xyxy, dets.score, dets.cls, strict=True))
            tmp = path.with_name(f".{path.name}.partial.npz")
            np.savez(tmp, rows=np.array(rows, np.float64).reshape(-1, 7))
            os.replace(tmp, path)
        with np.load(path) as z:
            rows = z["rows"]
        per_detector.append([Detections(r[:, 1:5], r[:, 5], r[:, 6].astype(np.int64))
                             for r in (rows[rows[:, 0] == t] for t in range(clip.truth.frames))])
    return per_detector


class Replay:
    """A Detector that answers from recorded detections for the frames it is shown (real decoded frames: the
    tracker also reads the pixels, to estimate camera motion)."""

    def __init__(self, cls: int, per_frame: list[Detections], threshold: float, index: dict[int, int],
                 takes_turns: bool):
        self.cls, self.weights, self.sha256, self.takes_turns = cls, Path("replay"), "replay", takes_turns
        self.per_frame = [d[d.score >= threshold] for d in per_frame]
        self.index = index  # id(frame.image) -> frame index, for the frames currently alive
        self.asked: list[int] = []

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        index = [self.index[id(f)] for f in frames]
        self.asked.extend(index)
        return [self.per_frame[i] for i in index]


def replay_boxes(redactor: Redactor, clip: Clip, per_detector: list[list[Detections]]) -> tuple[list[Detections], list]:
    """Final boxes per frame from the real pipeline (tracking with the real frames, smoothing), with each detector
    replaced by its recorded detections (`per_detector`, in the order of `redactor.detectors`)."""
    o = redactor.options
    index: dict[int, int] = {}
    alive: dict[int, Frame] = {}
    threshold = {FACE: o.face_threshold, PLATE: o.plate_threshold}
    replays = [Replay(d.cls, per_frame, threshold[d.cls], index, d.takes_turns)
               for d, per_frame in zip(redactor.detectors, per_detector, strict=True)]
    redactor.detectors = replays
    redactor.detect = DetectionQueue(replays, redactor.batch)

    def frames() -> Iterator[Frame]:
        for frame in read_frames(clip.video):
            index[id(frame.image)] = frame.index
            alive[frame.index] = frame  # keeps the id unique while the pipeline may still detect on it
            yield frame

    boxes = []
    for frame, b in redactor.frames_with_boxes(frames(), Smoother(redactor.track_policy)):
        boxes.append(b)
        del index[id(alive.pop(frame.index).image)]
    return boxes, replays


def blacked_mask(boxes: Detections, h: int, w: int) -> np.ndarray:
    """Pixels the engine's `anonymize` fills for these boxes (fill mode), as a boolean mask."""
    canvas = np.full((h, w, 3), 255, np.uint8)
    anonymize(canvas, boxes, RedactionPolicy(modes=("fill", "fill")))
    return canvas[..., 0] == 0


def match(dets: np.ndarray, box: np.ndarray) -> bool:
    """A detection belongs to a truth box: IoU >= 0.3, or the box centre lies inside the detection."""
    if not len(dets):
        return False
    ix = np.clip(np.minimum(dets[:, 2], box[2]) - np.maximum(dets[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(dets[:, 3], box[3]) - np.maximum(dets[:, 1], box[1]), 0, None)
    inter = ix * iy
    union = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]) + (box[2] - box[0]) * (box[3] - box[1]) - inter
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = (dets[:, 0] <= cx) & (cx <= dets[:, 2]) & (dets[:, 1] <= cy) & (cy <= dets[:, 3])
    return bool(((inter / np.maximum(union, 1e-6)) >= 0.3).any() or inside.any())


def classify(clip: Clip, score: Score, replays: list[Replay], redactor: Redactor) -> list[dict]:
    """Why each leaked box-frame leaked: detector miss, tracking gap, or box too small / misplaced. `replays`: the
    detectors of the clip's class."""
    truth, o = clip.truth, redactor.options
    hits: dict[int, set[int]] = {}  # object -> detected frames where a detection matched it
    for replay in replays:
        for t in sorted(set(replay.asked)):
            dets = replay.per_frame[t].xyxy
            for r in truth.rows(t):
                if match(dets, truth.box[r]):
                    hits.setdefault(int(truth.obj[r]), set()).add(t)
    out = []
    cov = score.coverage
    for r in np.flatnonzero(~np.isnan(cov) & (np.nan_to_num(cov, nan=1.0) < COVERED)):
        t, obj = int(truth.frame[r]), int(truth.obj[r])
        seen = sorted(hits.get(obj, ()))
        near = [f for f in seen if abs(f - t) <= o.max_gap]
        if cov[r] > 0.05:
            cause = "box too small or offset (detected this frame)" if t in seen else "box too small or offset (held)"
        elif not seen:
            cause = "detector miss: never detected in the clip"
        elif not near:
            cause = f"detector miss: not detected within +-{o.max_gap} frames"
        else:
            cause = "tracking gap: detected nearby, no box this frame"
        out.append({"clip": clip.spec.name, "frame": t, "obj": obj, "size": round(float(truth.size[r]), 1),
                    "coverage": round(float(cov[r]), 3), "cause": cause})
    return out


RECORD_THRESHOLD = {"face_threshold": 0.15, "plate_threshold": 0.05}  # variants may not go below these


def simulate(clips: list[Clip], kind: str, options: RedactOptions, work: Path, lumas: dict[str, list[np.ndarray]],
             with_causes: bool = False) -> tuple[dict, list[dict]]:
    """The engine (both detectors, as in the real run) replayed from recorded detections, scored like a run."""
    for key, floor in RECORD_THRESHOLD.items():
        if getattr(options, key) < floor:
            raise SystemExit(f"--diagnose: {key} below {floor} needs detections recorded at a lower threshold")
    record = Redactor(dataclasses.replace(options, **RECORD_THRESHOLD))
    redactor = Redactor(options)
    cache = work / "detections"
    cache.mkdir(parents=True, exist_ok=True)
    scores, causes = [], []
    for clip in clips:
        boxes, replays = replay_boxes(redactor, clip, detect_all(clip, record.detectors, cache))
        ys = lumas[clip.spec.name]
        score = score_frames(clip, ((y, blacked_mask(b, *y.shape)) for y, b in zip(ys, boxes, strict=True)))
        scores.append(score)
        if with_causes:
            causes.extend(classify(clip, score, [r for r in replays if r.cls == CLASS_OF[kind]], redactor))
    return summarize(scores, kind), causes


def cause_table(causes: list[dict], kind: str) -> dict:
    table: dict[str, dict[str, int]] = {}
    for c in causes:
        bucket = next(name for name, lo, hi in BUCKETS[kind] if lo <= c["size"] < hi)
        table.setdefault(c["cause"], {}).setdefault(bucket, 0)
        table[c["cause"]][bucket] += 1
    return table


FACE_VARIANTS: list[tuple[str, dict]] = [
    ("default", {}),
    ("face_threshold=0.3", {"face_threshold": 0.3}),
    ("face_threshold=0.25", {"face_threshold": 0.25}),
    ("face_threshold=0.2", {"face_threshold": 0.2}),
    ("detect_every=1", {"detect_every": 1}),
    ("face_dilate=1.5", {"face_dilate": 1.5}),
    ("face_dilate=1.6", {"face_dilate": 1.6}),
    ("pad_frames=15", {"pad_frames": 15}),
    ("plates=False (background attribution)", {"plates": False}),
    ("plates=False,face_threshold=0.2", {"plates": False, "face_threshold": 0.2}),
    ("plates=False,face_threshold=0.2,face_dilate=1.6,detect_every=1",
     {"plates": False, "face_threshold": 0.2, "face_dilate": 1.6, "detect_every": 1}),
    ("face_threshold=0.3,face_dilate=1.5", {"face_threshold": 0.3, "face_dilate": 1.5}),
    ("face_threshold=0.25,face_dilate=1.6", {"face_threshold": 0.25, "face_dilate": 1.6}),
    ("face_threshold=0.2,face_dilate=1.6,detect_every=1",
     {"face_threshold": 0.2, "face_dilate": 1.6, "detect_every": 1}),
    ("face_dilate=1.8", {"face_dilate": 1.8}),
    ("face_dilate=1.8,detect_every=1", {"face_dilate": 1.8, "detect_every": 1}),
]
PLATE_VARIANTS: list[tuple[str, dict]] = [
    ("default", {}),
    ("plate_threshold=0.15", {"plate_threshold": 0.15}),
    ("plate_threshold=0.1", {"plate_threshold": 0.1}),
    ("detect_every=1", {"detect_every": 1}),
    ("plate_dilate=1.4", {"plate_dilate": 1.4}),
    ("pad_frames=15", {"pad_frames": 15}),
    ("faces=False (background attribution)", {"faces": False}),
    ("plate_threshold=0.1,plate_dilate=1.4,detect_every=1",
     {"plate_threshold": 0.1, "plate_dilate": 1.4, "detect_every": 1}),
    ("plate_imgsz=1280", {"plate_imgsz": 1280}),
    ("plate_imgsz=1280,plate_threshold=0.1", {"plate_imgsz": 1280, "plate_threshold": 0.1}),
    ("plate_imgsz=1280,plate_threshold=0.1,plate_dilate=1.4,detect_every=1",
     {"plate_imgsz": 1280, "plate_threshold": 0.1, "plate_dilate": 1.4, "detect_every": 1}),
    ("plate_imgsz=1280,plate_threshold=0.05,plate_dilate=1.4,detect_every=1",
     {"plate_imgsz": 1280, "plate_threshold": 0.05, "plate_dilate": 1.4, "detect_every": 1}),
]


def diagnose(clips: list[Clip], kind: str, base: dict, work: Path, extra_variants: list[tuple[str, str, dict]]) -> dict:
    """Replay recorded detections through the engine's tracking under option variants; causes for the default.

    Thresholds and tracking options are replayed from one recording; a variant that changes the detector
    itself (model, face_scale, plate_imgsz) gets its own recording (slow on CPU: every frame, both detectors).
    """
    start = time.perf_counter()
    lumas = {c.spec.name: [luma(f.image) for f in read_frames(c.video)] for c in clips}
    variants = (FACE_VARIANTS if kind == "faces" else PLATE_VARIANTS) + [
        (name, change) for only, name, change in extra_variants if only in ("", kind)]
    results, causes = {}, []
    for name, change in variants:
        summary, c = simulate(clips, kind, engine_options({**base, **change}), work, lumas,
                              with_causes=name == "default")
        causes = c or causes
        results[name] = {k: summary[k] for k in ("leak", "buckets", "frame_leak", "background",
                                                  "background_texture_only")}
        b = summary["buckets"]
        print(f"  [{kind}] {name:55s} leak {_pct(summary['leak'])} "
              + " ".join(f"{k} {_pct(v['leak'])}" for k, v in b.items())
              + f" bg {_pct(summary['background'])} tex {_pct(summary['background_texture_only'])}"
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    largest = sorted(causes, key=lambda c: -c["size"])[:40]
    return {"variants": results, "causes_default": cause_table(causes, kind), "largest_leaks_default": largest}


# ---------------------------------------------------------------------------------------------- report


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def table(results: dict) -> str:
    tools = list(results["tools"])
    lines = ["| measure | target | " + " | ".join(tools) + " |", "|---|---|" + "---|" * len(tools)]

    def row(label: str, target: str, get) -> None:
        cells = []
        for t in tools:
            try:
                cells.append(get(results["tools"][t]))
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")

    def leak(d: dict) -> str:
        return f"{_pct(d['leak'])} ({d['leaked']}/{d['box_frames'] if 'box_frames' in d else 0})"

    for kind in KINDS:
        if not any(kind in results["tools"][t] for t in tools):
            continue
        row(f"{kind}: leak, all box-frames", "", lambda r, k=kind: leak(r[k]))
        for name, _, _ in BUCKETS[kind]:
            tgt = f"<= {_pct(TARGETS[name])}" if name in TARGETS else ""
            row(f"{kind}: leak, {name}", tgt, lambda r, k=kind, n=name: leak(r[k]["buckets"][n]))
        for name in next((r[kind]["jerk_frames"] for r in results["tools"].values() if kind in r), {}):
            tgt = f"<= {_pct(TARGETS[name])}" if name in TARGETS else ""
            row(f"{kind}: leak, {name}", tgt, lambda r, k=kind, n=name: leak(r[k]["jerk_frames"][n]))
        if kind == "faces":
            for name in next((r[kind]["blur_looks_like_input"] for r in results["tools"].values() if kind in r), {}):
                if not name.startswith("mean"):
                    row(f"faces, blur: still looks like the input, {name}", "",
                        lambda r, n=name: f"{_pct(r['faces']['blur_looks_like_input'][n]['rate'])} "
                        f"({r['faces']['blur_looks_like_input'][n]['looks_like_input']}/"
                        f"{r['faces']['blur_looks_like_input'][n]['box_frames']})")
        row(f"{kind}: frames with any leak", "", lambda r, k=kind: f"{_pct(r[k]['frame_leak'])} "
            f"({r[k]['frames_with_leak']}/{r[k]['frames_with_truth']})")
        row(f"{kind} clips: background wrongly redacted", f"<= {_pct(TARGETS['background'])}",
            lambda r, k=kind: _pct(r[k]["background"]))
        row(f"{kind} clips: same, texture between photos only", "",
            lambda r, k=kind: _pct(r[k]["background_texture_only"]))
        row(f"{kind} clips: frames/s (incl. model load)", "", lambda r, k=kind: f"{r[k]['speed']['fps']:.2f}")
    return "\n".join(lines)


def diagnosis_table(results: dict) -> str:
    """One line per replayed option variant (redact only, recorded detections, same scoring)."""
    lines = []
    for kind, d in results.get("diagnosis", {}).items():
        names = [n for n, _, _ in BUCKETS[kind]]
        lines += ["", f"{kind}, replayed variants (redact):", "",
                  f"| variant | leak | {' | '.join(names)} | background | texture only |", "|---|---|---|---|---|---|"]
        for name, v in d["variants"].items():
            cells = [_pct(v["leak"]), *(_pct(v["buckets"][n]["leak"]) for n in names), _pct(v["background"]),
                     _pct(v["background_texture_only"])]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", f"{kind}, causes of the default's leaked box-frames:", "",
                  f"| cause | {' | '.join(names)} |", "|---|---|---|"]
        for cause, by in d["causes_default"].items():
            lines.append(f"| {cause} | " + " | ".join(str(by.get(n, 0)) for n in names) + " |")
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def parse_set(items: list[str]) -> dict:
    """FIELD=VALUE strings to RedactOptions overrides, typed like the field's default ('None' for None)."""
    fields = {f.name for f in dataclasses.fields(RedactOptions)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--set: unknown RedactOptions field '{key}'")
        default = getattr(RedactOptions(), key)
        if value == "None":
            out[key] = None
        elif isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, int | float | str):
            out[key] = type(default)(value)
        elif default is None:  # an optional count (face_every) or name (index)
            out[key] = int(value) if value.isdigit() else value
        else:
            raise SystemExit(f"--set: {key} can only be set to None here")
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames-per-clip", type=int, default=50)
    ap.add_argument("--clips", type=int, default=6, help="clips per class")
    ap.add_argument("--work", type=Path, default=Path("/tmp/redact-bench"), help="clip cache and outputs")
    ap.add_argument("--size", type=parse_size, default=(1280, 720), help="frame size WxH")
    ap.add_argument("--crf", type=int, default=28, help="libx264 CRF of the generated clips")
    ap.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0, 1],
                    help="clip sets, comma-separated: each seed is --clips clips per class")
    ap.add_argument("--classes", default="faces,plates")
    ap.add_argument("--tools", default="redact,deface")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="RedactOptions override for the engine (repeatable), e.g. --set face_threshold=0.3")
    ap.add_argument("--diagnose", action="store_true", help="replay recorded detections under option variants")
    ap.add_argument("--variant", action="append", default=[], metavar="[CLASS:]F=V[,F=V]",
                    help="extra option variant for --diagnose (repeatable), e.g. faces:face_scale=1.5")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "leak.json")
    args = ap.parse_args(argv)
    kinds = [k for k in args.classes.split(",") if k]
    tools = [t for t in args.tools.split(",") if t]
    overrides = parse_set(args.set)
    width, height = args.size
    clips_dir = args.work / "clips"
    run_dir = args.work / "out"

    results: dict = {
        "method": {"looks_like_input": f"mean absolute luma change over the truth box < {VISIBLE_MAD} (blur mode)",
                   "covered": f">= {COVERED:.0%} of pixels with clean luma > {DARK_INPUT} near-black "
                              f"(luma < {BLACK_LUMA}, all channels < {BLACK_CHANNEL})",
                   "background": f"outside truth boxes grown {BACKGROUND_GROW}x, clean luma > {DARK_INPUT}",
                   "size": "faces: min(w, h) of the unclipped truth box; plates: its height", "targets": TARGETS},
        "config": {"frames_per_clip": args.frames_per_clip, "clips_per_class": args.clips, "size": [width, height],
                   "crf": args.crf, "seeds": args.seeds, "redact_options": dataclasses.asdict(engine_options(overrides)),
                   "deface_args": DEFACE_ARGS},
        "engine": {"detector_code": DETECTOR_CODE, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_start": os.getloadavg()},
        "clips": {}, "tools": {t: {} for t in tools},
    }
    all_clips: dict[str, list[Clip]] = {}
    for kind in kinds:
        photos = load_photos(kind)
        start = time.perf_counter()
        specs = [spec for seed in args.seeds
                 for spec in clip_specs(kind, args.clips, args.frames_per_clip, width, height, seed, args.crf)]
        all_clips[kind] = [make_clip(s, photos, clips_dir) for s in specs]
        print(f"[{kind}] {len(all_clips[kind])} clips ready in {time.perf_counter() - start:.0f} s", flush=True)
        for c in all_clips[kind]:
            results["clips"][c.spec.name] = {**dataclasses.asdict(c.spec), "truth_rows": int(len(c.truth.frame)),
                                             "size_range": [round(float(c.truth.size.min()), 1),
                                                            round(float(c.truth.size.max()), 1)]}

    if "deface" in tools and "faces" in kinds:
        results["tools"]["deface"]["startup_s"] = round(deface_startup(args.work), 2)
    for kind in kinds:
        clips = all_clips[kind]
        for tool in tools:
            if tool == "deface" and kind != "faces":
                continue
            print(f"[{kind}] running {tool} ...", flush=True)
            if tool == "redact":
                outputs, speed = run_redact(clips, run_dir / "redact" / kind, engine_options(overrides))
            elif tool == "deface":
                outputs, speed = run_deface(clips, run_dir / "deface" / kind)
                startup = results["tools"]["deface"].get("startup_s")
                if startup and speed["wall_s"] > startup:
                    speed["fps_without_startup"] = round(speed["frames"] / (speed["wall_s"] - startup), 3)
            else:
                raise SystemExit(f"unknown tool {tool}")
            print(f"[{kind}] {tool}: {speed['frames']} frames in {speed['wall_s']} s ({speed['fps']} fps); scoring",
                  flush=True)
            summary = summarize([score_video(c, outputs[c.spec.name]) for c in clips], kind)
            summary["speed"] = speed
            if kind == "faces":  # does the redaction still look like the input (blur, as the tools default to)?
                if tool == "redact":
                    looks = [score_looks(c, blurred_by_plan(c, plan_path(outputs[c.spec.name].parent, c.video.stem)))
                             for c in clips]
                else:
                    blurred, _ = run_deface(clips, run_dir / "deface-blur" / kind, "blur")
                    looks = [score_looks(c, (f.image for f in read_frames(blurred[c.spec.name]))) for c in clips]
                summary["blur_looks_like_input"] = summarize_looks(clips, looks)
            results["tools"][tool][kind] = summary
            print(f"[{kind}] {tool}: leak {_pct(summary['leak'])} "
                  + " ".join(f"{k} {_pct(v['leak'])}" for k, v in summary["buckets"].items())
                  + f" background {_pct(summary['background'])}", flush=True)
    if args.diagnose:
        extra = []
        for v in args.variant:  # "[faces:|plates:]F=V,F=V"
            only, _, spec = v.rpartition(":") if v.split(":", 1)[0] in KINDS else ("", "", v)
            extra.append((only, spec, parse_set(spec.split(","))))
        results["diagnosis"] = {}
        for kind in kinds:
            d = results["diagnosis"][kind] = diagnose(all_clips[kind], kind, overrides, args.work, extra)
            run = results["tools"].get("redact", {}).get(kind)
            if run:
                replay = d["variants"]["default"]
                d["replay_check"] = {"run_leak": run["leak"], "replay_leak": replay["leak"],
                                     "run_background": run["background"], "replay_background": replay["background"],
                                     "match": abs(run["leak"] - replay["leak"]) < 0.005}
    results["machine"]["load_avg_end"] = os.getloadavg()

    text = table(results) + diagnosis_table(results)
    print()
    print(text)
    write_result(args.out, {**results, "table_markdown": text}, __file__, argv)
    print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
