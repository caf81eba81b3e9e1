"""Moving clips with known camera motion, built from real annotated photos, and their per-frame ground truth.

A clip is a virtual camera filming a flat "canvas": real photos from ../shared/evaldata (faces or plates) laid
out on a smooth random-texture background. Each frame is the canvas seen through a per-frame affine transform
(pan, zoom in/out, handheld shake as a damped random walk with jitter and occasional jerks, a few degrees of
roll), then motion-blurred with a line kernel as long as the frame's own motion (shutter fraction of the
displacement at the frame centre), then encoded with libx264 at a realistic CRF through PyAV. A body camera jerks
at every step, so a clip can also have camera-jerk events (`ClipSpec.jerks`): a 4-frame motion-blur burst
(the camera swings 25-50 px a frame and back), a fast pan (5 frames at 30-60 px a frame; the view stays there) and
a dropped-frame jump (40-90 px in one frame with no more blur than the frames around it). Ground truth
for a frame is every annotated box of the canvas mapped through the same affine (bounding box of the four
mapped corners), clipped to the frame; boxes less than half inside the frame are dropped.

Object size is controlled: every photo is scaled so that its median object measures `base * zoom_ratio`
canvas pixels (faces: min(w, h); plates: height), jittered +-20 %, and the zoom runs between 1/zoom_ratio and
1, so objects span about [base, base * zoom_ratio] pixels in the frames. Everything is seeded, so a clip is
the same on every machine (libx264 is deterministic) and can be cached by the hash of its spec.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from redact import plan
from redact.detect import FACE, PLATE
from redact.errors import partial_path

SYNTH_VERSION = 2  # 2: camera-jerk events
ROOT = Path(__file__).resolve().parents[1]
EVALDATA = Path(os.environ.get("REDACT_EVALDATA", ROOT.parent / "shared" / "evaldata"))
KINDS = ("faces", "plates")
# smallest and largest base sizes (frame pixels, see `object_size`); photo-to-photo spread and roll widen them a
# little, so objects span about 12-120 px (faces) and 8-100 px (plates)
SIZE_RANGE = {"faces": (12.0, 140.0), "plates": (8.0, 95.0)}
JERKS = ("burst", "pan", "drop")  # camera-jerk kinds; truth.jerk holds 1 + the index
JERK_AFTER = 2  # frames after an event still counted as jerk frames (the tracker recovering)


def object_size(kind: str, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The size a box is bucketed by (`redact.plan.object_size`): min(w, h) for faces, height for plates."""
    return plan.object_size(FACE if kind == "faces" else PLATE, w, h)


@dataclass(frozen=True)
class Photo:
    key: str  # the image column of gt.csv, e.g. "facemask_cc0/images/maksssksksss125.png"
    path: Path
    boxes: np.ndarray = field(repr=False)  # (n, 4) xyxy in photo pixels


def load_photos(kind: str, evaldata: Path = EVALDATA) -> list[Photo]:
    """Every annotated photo of `kind` ('faces' or 'plates') with its boxes, in gt.csv order."""
    folder = evaldata / kind
    by_image: dict[str, list[list[float]]] = {}
    with open(folder / "gt.csv", newline="") as f:
        for row in csv.DictReader(f):
            x, y, w, h = (float(row[k]) for k in "xywh")
            by_image.setdefault(row["image"], []).append([x, y, x + w, y + h])
    return [Photo(image, folder / image, np.array(boxes, np.float32)) for image, boxes in by_image.items()]


@dataclass(frozen=True)
class ClipSpec:
    kind: str
    index: int
    seed: int = 0
    frames: int = 50
    width: int = 1280
    height: int = 720
    fps: int = 30
    crf: int = 28
    preset: str = "veryfast"
    base: float = 24.0  # smallest object size (frame pixels) at the widest zoom
    zoom_ratio: float = 1.8  # zoom runs between 1/zoom_ratio and 1
    zoom_mode: str = "in"  # "in", "out" or "inout"
    max_tiles: int = 60  # at most about this many photos on the canvas (spacing grows for small photos)
    pan: float = 0.3  # pan distance over the clip, as a fraction of the frame width (canvas pixels)
    shake: float = 1.0  # handheld shake strength (1 = walking with a chest camera)
    roll_deg: float = 4.0  # bound of the camera roll
    shutter: float = 0.6  # motion-blur length as a fraction of the per-frame displacement
    photos: tuple[str, ...] = ()  # photo keys to use (default: all photos of the kind, shuffled)
    jerks: tuple[str, ...] = ()  # camera-jerk events (kinds of `JERKS`), in order, spread over the clip

    @property
    def name(self) -> str:
        blob = json.dumps({"v": SYNTH_VERSION, **asdict(self)}, sort_keys=True).encode()
        return f"{self.kind}-{self.index:02d}-{hashlib.sha256(blob).hexdigest()[:10]}"


@dataclass
class ClipTruth:
    """Per-frame ground truth of a clip, as flat arrays with one row per (frame, object) pair."""

    frame: np.ndarray  # (n,) int
    obj: np.ndarray  # (n,) int, object id within the clip
    box: np.ndarray  # (n, 4) xyxy clipped to the frame
    full: np.ndarray  # (n, 4) xyxy before clipping
    size: np.ndarray  # (n,) object size of the unclipped box (min(w, h) for faces, height for plates)
    frames: int
    mats: np.ndarray  # (frames, 2, 3) canvas -> frame affine of each frame
    photos: np.ndarray  # (k, 4) xyxy of the photos on the canvas; the rest of the canvas is plain texture
    jerk: np.ndarray  # (frames,) 0, or 1 + the index in JERKS of the camera jerk this frame is in (or recovers from)

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.partial.npz")
        np.savez(tmp, frame=self.frame, obj=self.obj, box=self.box, full=self.full, size=self.size,
                 frames=np.array(self.frames), mats=self.mats, photos=self.photos, jerk=self.jerk)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ClipTruth:
        with np.load(path) as z:
            return cls(z["frame"], z["obj"], z["box"], z["full"], z["size"], int(z["frames"]), z["mats"], z["photos"],
                       z["jerk"])

    def rows(self, frame: int) -> np.ndarray:
        return np.flatnonzero(self.frame == frame)

    def photo_mask(self, frame: int, width: int, height: int) -> np.ndarray:
        """Boolean mask of the frame pixels that show a photo (not the texture between photos)."""
        mask = np.zeros((height, width), np.uint8)
        r = self.photos
        corners = np.stack([r[:, [0, 1]], r[:, [2, 1]], r[:, [2, 3]], r[:, [0, 3]]], axis=1).reshape(-1, 2)
        quads = _apply(self.mats[frame], corners).reshape(-1, 4, 2)
        for quad in quads:
            cv2.fillConvexPoly(mask, np.round(quad * 16).astype(np.int32), 1, cv2.LINE_8, shift=4)
        return mask.astype(bool)


@dataclass
class Clip:
    spec: ClipSpec
    video: Path
    truth: ClipTruth


# ---------------------------------------------------------------------------------------------- canvas


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A smooth, mid-brightness colour texture: no faces, no text, not dark."""
    gh, gw = h // 48 + 3, w // 48 + 3
    coarse = rng.uniform(70, 190, (gh, gw, 1)) + rng.normal(0, 12, (gh, gw, 3))  # greyish, muted colours
    big = cv2.resize(coarse.astype(np.float32), (w + 96, h + 96), interpolation=cv2.INTER_CUBIC)
    big = big[48 : 48 + h, 48 : 48 + w]
    fine = rng.normal(0, 6, (h // 4 + 1, w // 4 + 1, 1)).astype(np.float32)
    big += cv2.resize(fine, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    return np.clip(big, 40, 230).astype(np.uint8)


def _scaled(photo: Photo, scale: float) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(photo.path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(photo.path)
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interp), photo.boxes * np.float32(scale)


def build_canvas(spec: ClipSpec, photos: list[Photo], rng: np.random.Generator, cw: int, ch: int):
    """Lay photos out in rows on a textured canvas; return the canvas, its object boxes and photo rectangles."""
    canvas = _texture(rng, cw, ch)
    target = spec.base * spec.zoom_ratio  # object size on the canvas: zoom 1 maps it to base * ratio pixels
    spacing = math.sqrt(cw * ch / max(1, spec.max_tiles))
    order = list(rng.permutation(len(photos)))
    boxes: list[np.ndarray] = []
    rects: list[list[float]] = []
    y, k = 0, 0
    while y < ch - 8:
        x, row_h = 0, 0
        while x < cw - 8:
            photo = photos[order[k % len(order)]]
            k += 1
            b = photo.boxes
            median = float(np.median(object_size(spec.kind, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])))
            tile, tb = _scaled(photo, target / median * float(rng.uniform(0.83, 1.2)))
            th, tw = tile.shape[:2]
            # gaps: small between big photos, larger between small ones so that the canvas holds ~max_tiles
            gx = max(float(rng.uniform(0.03, 0.2)) * tw, float(rng.uniform(0.6, 1.0)) * (spacing - tw))
            gy = max(float(rng.uniform(0.03, 0.2)) * th, float(rng.uniform(0.6, 1.0)) * (spacing - th))
            ox, oy = x + int(gx / 2), y + int(gy / 2)
            if spec.max_tiles == 1:  # one photo: centred on the canvas, where the camera looks
                ox, oy = max(0, (cw - tw) // 2), max(0, (ch - th) // 2)
            aw, ah = cw - ox, ch - oy
            if aw < 16 or ah < 16:
                break
            # a photo larger than the space left is cropped around its objects
            cx0 = cy0 = 0
            if tw > aw or th > ah:
                mid = (tb[:, :2] + tb[:, 2:]).mean(axis=0) / 2
                cx0 = int(np.clip(mid[0] - aw / 2, 0, max(0, tw - aw)))
                cy0 = int(np.clip(mid[1] - ah / 2, 0, max(0, th - ah)))
            crop = tile[cy0 : cy0 + ah, cx0 : cx0 + aw]
            canvas[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
            moved = tb - np.array([cx0, cy0, cx0, cy0], np.float32)
            inside = np.clip(moved, 0, [crop.shape[1], crop.shape[0]] * 2)
            area = lambda a: np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)  # noqa: E731
            keep = area(inside) >= 0.95 * area(moved)  # objects cut by the crop would be ambiguous truth
            boxes.append(moved[keep] + np.array([ox, oy, ox, oy], np.float32))
            rects.append([ox, oy, ox + crop.shape[1], oy + crop.shape[0]])
            if spec.max_tiles == 1:
                return canvas, boxes[0], np.array([[ox, oy, ox + crop.shape[1], oy + crop.shape[0]]], np.float32)
            x = ox + crop.shape[1] + int(gx - int(gx / 2))
            row_h = max(row_h, oy - y + crop.shape[0] + int(gy - int(gy / 2)))
        y += max(row_h, 16)
    boxes_all = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    return canvas, boxes_all, np.array(rects, np.float32).reshape(-1, 4)


# ---------------------------------------------------------------------------------------------- camera


def jerk_events(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clip's camera jerks as per-frame offsets in frame pixels: the offset added to the view, the part of each
    frame's step that is not motion-blurred (a dropped frame's jump), and the jerk label per frame (`truth.jerk`).
    Drawn from their own seeded generator, so the rest of the camera path is that of a clip without jerks."""
    n = spec.frames
    kick, unblurred, label = np.zeros((n, 2)), np.zeros((n, 2)), np.zeros(n, np.int8)
    if not spec.jerks:
        return kick, unblurred, label
    if n < 10 * len(spec.jerks):
        raise ValueError(f"{n} frames are too few for {len(spec.jerks)} camera jerks")
    rng = np.random.default_rng([spec.seed, KINDS.index(spec.kind), spec.index, 7])
    gap = (n - 8) / len(spec.jerks)
    for e, kind in enumerate(spec.jerks):
        t0 = int(2 + e * gap + rng.uniform(0, gap / 3))  # events spread over the clip, each ends before the next
        a = rng.normal(0, 1, 2)
        u = a / max(1e-9, np.linalg.norm(a))
        if kind not in JERKS:
            raise ValueError(f"unknown camera jerk '{kind}' (one of {', '.join(JERKS)})")
        if kind == "burst":  # swing and back: steps +a, +a, -a, -a
            v = rng.uniform(25, 50)
            steps = [v, v, -v, -v]
        elif kind == "pan":  # whip to a new view and stay there
            v = rng.uniform(30, 60)
            steps = [v] * 5
        else:  # dropped frame: one jump, exposed like its neighbours
            steps = [rng.uniform(40, 90)]
            unblurred[t0] = steps[0] * u
        pos = np.cumsum(steps)
        for k, p in enumerate(pos):
            kick[t0 + k] += p * u
        kick[t0 + len(steps) :] += pos[-1] * u
        label[t0 : min(n, t0 + len(steps) + JERK_AFTER)] = 1 + JERKS.index(kind)
    return kick, unblurred, label


def camera_path(spec: ClipSpec, rng: np.random.Generator) -> tuple[list[np.ndarray], float]:
    """Per-frame 2x3 affine transforms canvas -> frame, centred on the canvas origin; also the margin needed."""
    n, w, h = spec.frames, spec.width, spec.height
    kick = jerk_events(spec)[0]
    u = np.linspace(0, 1, n)
    ease = 0.5 - 0.5 * np.cos(np.pi * u)
    lo = math.log(1 / spec.zoom_ratio)
    if spec.zoom_mode == "in":
        logz = lo * (1 - ease)
    elif spec.zoom_mode == "out":
        logz = lo * ease
    else:  # in, then out again
        logz = lo * (0.5 + 0.5 * np.cos(2 * np.pi * u))
    zoom = np.exp(logz)
    angle = rng.uniform(0, 2 * np.pi)
    pan = spec.pan * w * np.array([math.cos(angle), math.sin(angle)])
    centre = (ease[:, None] - 0.5) * pan  # canvas pixels, about the canvas centre
    # handheld: damped random walk (sway) + per-frame jitter + rare jerks, in frame pixels
    walk, vel = np.zeros(2), np.zeros(2)
    roll, omega = rng.uniform(-0.5, 0.5) * spec.roll_deg, 0.0
    shake_px = 40.0 * spec.shake
    mats = []
    for t in range(n):
        vel = 0.85 * vel + rng.normal(0, 1.6 * spec.shake, 2)
        walk = np.clip(walk + vel, -shake_px, shake_px)
        jitter = rng.normal(0, 1.0 * spec.shake, 2)
        if rng.random() < 0.05 * spec.shake:
            jitter += rng.normal(0, 7.0 * spec.shake, 2)
        omega = 0.9 * omega + rng.normal(0, 0.12 * spec.shake)
        roll = float(np.clip(roll + omega, -spec.roll_deg, spec.roll_deg))
        z, th = zoom[t], math.radians(roll)
        rot = z * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        offset = np.array([w / 2, h / 2]) + walk + jitter + kick[t] - rot @ centre[t]
        mats.append(np.hstack([rot, offset[:, None]]))
    # canvas half-extent needed: the view at the widest zoom, rolled, plus pan and shake
    th = math.radians(spec.roll_deg)
    half = np.array([w / 2 * math.cos(th) + h / 2 * math.sin(th), w / 2 * math.sin(th) + h / 2 * math.cos(th)])
    margin = (half * spec.zoom_ratio + np.abs(pan) / 2 + (shake_px + 30 * spec.shake + np.abs(kick).max(axis=0))
              * spec.zoom_ratio + 16)
    return mats, margin


def _line_kernel(dx: float, dy: float) -> np.ndarray | None:
    length = math.hypot(dx, dy)
    if length < 1.5:
        return None
    k = int(math.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    ux, uy = dx / length * (length - 1) / 2, dy / length * (length - 1) / 2
    a = (round((c - ux) * 16), round((c - uy) * 16))
    b = (round((c + ux) * 16), round((c + uy) * 16))
    cv2.line(kernel, a, b, 1.0, 1, cv2.LINE_AA, shift=4)
    return kernel / kernel.sum()


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _inverse(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


def truth_for(spec: ClipSpec, mats: list[np.ndarray], boxes: np.ndarray, photos: np.ndarray,
              jerk: np.ndarray) -> ClipTruth:
    """Ground truth per frame: boxes through each affine (bbox of the 4 corners), clipped, half-visible kept."""
    rows = {k: [] for k in ("frame", "obj", "box", "full", "size")}
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]]], axis=1)
    for t, m in enumerate(mats):
        p = _apply(m, corners.reshape(-1, 2)).reshape(-1, 4, 2)
        full = np.concatenate([p.min(axis=1), p.max(axis=1)], axis=1)
        clipped = np.clip(full, 0, [spec.width, spec.height] * 2)
        area = lambda a: np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)  # noqa: E731
        keep = np.flatnonzero(area(clipped) >= 0.5 * area(full))
        rows["frame"].append(np.full(len(keep), t))
        rows["obj"].append(keep)
        rows["box"].append(clipped[keep])
        rows["full"].append(full[keep])
        rows["size"].append(object_size(spec.kind, full[keep, 2] - full[keep, 0], full[keep, 3] - full[keep, 1]))
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    return ClipTruth(cat["frame"].astype(np.int64), cat["obj"].astype(np.int64), cat["box"].astype(np.float32),
                     cat["full"].astype(np.float32), cat["size"].astype(np.float32), spec.frames,
                     np.array(mats, np.float64).reshape(-1, 2, 3), photos, jerk)


def render(spec: ClipSpec, photos: list[Photo], path: Path) -> ClipTruth:
    """Render and encode the clip to `path` (written under a temporary name, then renamed); return its truth."""
    rng = np.random.default_rng([spec.seed, KINDS.index(spec.kind), spec.index])
    if spec.photos:
        wanted = set(spec.photos)
        photos = [p for p in photos if p.key in wanted]
        if not photos:
            raise ValueError(f"none of the photos {spec.photos} exist")
    mats, margin = camera_path(spec, rng)
    _, unblurred, jerk = jerk_events(spec)
    cw, ch = int(2 * margin[0]) + 2, int(2 * margin[1]) + 2
    canvas, boxes, rects = build_canvas(spec, photos, rng, cw, ch)
    # camera transforms were built about the canvas centre: shift them to canvas pixel coordinates
    shift = np.array([[1, 0, -cw / 2], [0, 1, -ch / 2], [0, 0, 1]])
    mats = [m @ shift for m in mats]
    pyramid = [canvas, cv2.pyrDown(canvas)]
    tmp = partial_path(path)
    container = av.open(str(tmp), "w", format="mp4")
    stream = container.add_stream("libx264", rate=Fraction(spec.fps))
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
    stream.options = {"crf": str(spec.crf), "preset": spec.preset}
    centre = np.array([[spec.width / 2, spec.height / 2]])
    try:
        for t, m in enumerate(mats):
            zoom = math.sqrt(abs(np.linalg.det(m[:, :2])))
            level = 1 if zoom < 0.7 else 0  # sample a pre-filtered level when shrinking a lot (no aliasing)
            ml = m @ np.diag([2.0, 2.0, 1.0]) if level else m
            frame = cv2.warpAffine(pyramid[level], ml, (spec.width, spec.height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
            if t:
                before = _apply(mats[t - 1], _apply(_inverse(m), centre))  # where the centre pixel was a frame ago
                d = ((centre - before)[0] - unblurred[t]) * spec.shutter
                kernel = _line_kernel(float(d[0]), float(d[1]))
                if kernel is not None:
                    frame = cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vf.pts = t
            vf.time_base = Fraction(1, spec.fps)
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
        container.close()
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return truth_for(spec, mats, boxes, rects, jerk)


def make_clip(spec: ClipSpec, photos: list[Photo], work: Path) -> Clip:
    """The clip for `spec`, rendered into `work` unless a cached copy of exactly this spec is there."""
    work.mkdir(parents=True, exist_ok=True)
    video, gt = work / f"{spec.name}.mp4", work / f"{spec.name}.gt.npz"
    if not (video.exists() and gt.exists()):
        truth = render(spec, photos, video)
        truth.save(gt)
    return Clip(spec, video, ClipTruth.load(gt))


def clip_specs(
    kind: str, clips: int, frames: int, width: int, height: int, seed: int = 0, crf: int = 28
) -> list[ClipSpec]:
    """`clips` clips of `kind` whose object sizes together span SIZE_RANGE[kind] (log-spaced), motions varied."""
    lo, hi = SIZE_RANGE[kind]
    modes = ("in", "out", "inout")
    specs = []
    for i in range(clips):
        rng = np.random.default_rng([seed, 100 + KINDS.index(kind), i])
        ratio = float(rng.uniform(1.6, 2.2))
        u = i / max(1, clips - 1)
        base = math.exp(math.log(lo) + u * (math.log(hi / ratio) - math.log(lo)))
        specs.append(ClipSpec(
            kind=kind, index=i, seed=seed, frames=frames, width=width, height=height, crf=crf, base=round(base, 2),
            jerks=(JERKS[i % 3], JERKS[(i + 1) % 3]) if frames >= 20 else (),
            zoom_ratio=round(ratio, 3), zoom_mode=modes[i % 3], pan=round(float(rng.uniform(0.1, 0.45)), 3),
            shake=round(float(rng.uniform(0.6, 1.5)), 3), roll_deg=round(float(rng.uniform(2.0, 5.0)), 2),
        ))
    return specs
