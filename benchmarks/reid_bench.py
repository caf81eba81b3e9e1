"""Re-identification benchmark: does a redacted face still carry its person's identity?

Method
------
1. Clips: the leak benchmark's face clips (benchmarks/synth.py, `clip_specs("faces", ...)`, cached in the same
   --work folder): real annotated face photos filmed by a moving, shaking, zooming virtual camera at 1280x720,
   motion-blurred per frame and encoded with libx264 (CRF 28); ground-truth boxes per frame.
2. Redaction at the true position (independent of detection): every candidate redaction is applied to the decoded
   clip frames at every ground-truth face box of the frame, dilated as the pipeline dilates faces (1.5x about the
   centre, ellipse). deface 1.5.0's blur is applied the same way (its own `anonymize_frame`, mask_scale 1.3, its
   ellipse) at the undilated truth boxes. Nothing is re-encoded.
   With --e2e-clips N the real tools also run on N clips (the largest faces of the first seed): `redact` (library,
   defaults: face and plate mode blur, CPU) and `deface --replacewith blur` (its defaults otherwise), and their
   decoded outputs are measured at the same true positions (so their detection misses count too).
3. Measures, per face box-frame (size = min(w, h) of the unclipped truth box; boxes at least 95 % inside the frame):
   - re-identification: dlib's ResNet face descriptor (face_recognition_models' dlib_face_recognition_resnet_model_v1,
     150x150 chip aligned by the 5-point shape predictor run on the ORIGINAL frame at the true box: the attacker
     knows where the face is and how it is posed) of the original chip and of the redacted chip cut with the same
     alignment; a match is a distance < 0.6 (dlib's same-person threshold). One or --per-object box-frames per
     face (spread over the clip), faces >= 20 px.
   - impostor control: the original chip against the original chip of another face of the same clip (another
     person: a photo appears once per canvas) of the nearest size.
   - resemblance: SSIM (grey, 7x7 window) of the truth-box crops of redacted and original, both resized to 32x32;
     share with SSIM >= 0.5, faces >= 20 px, every frame.
   - change on smeared faces: mean absolute difference (0-255, BGR) between redacted and original truth-box crops
     of faces 21-30 px on camera-jerk frames (motion-blur length >= --jerk-px at the frame centre, as synth draws
     it), and over all faces >= 20 px.

Command (from the project root; REDACT_HOME must point at the model cache for --e2e-clips):
    REDACT_HOME=~/.cache/redact .venv/bin/python benchmarks/reid_bench.py [--seeds 0,1] [--clips 6] [--frames 50] \
        [--per-object 1] [--e2e-clips 2] [--pictures /tmp/reid] [--out benchmarks/results/reid.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.leak_bench import deface_exe, engine_options  # noqa: E402
from benchmarks.provenance import write_result  # noqa: E402
from benchmarks.synth import Clip, _apply, _inverse, clip_specs, jerk_events, load_photos, make_clip  # noqa: E402
from redact.anonymize import RedactionPolicy, anonymize, box_mask, lowpass, pixel_boxes  # noqa: E402
from redact.detect import FACE, Detections  # noqa: E402
from redact.video import read_frames  # noqa: E402

MATCH = 0.6  # dlib: same person below this descriptor distance
SSIM_SAME = 0.5
SSIM_SIDE = 32
FACE_DILATE = 1.5  # RedactOptions.face_dilate
INSIDE = 0.95  # boxes at least this much inside the frame are measured
BUCKETS = (("20-40 px", 20.0, 40.0), ("40-80 px", 40.0, 80.0), (">=80 px", 80.0, math.inf),
           (">=40 px", 40.0, math.inf), (">=20 px", 20.0, math.inf))
SMEARED = (21.0, 31.0)  # sizes of the smeared faces whose change is measured


# ---------------------------------------------------------------------------------------------- candidates

RoiFn = Callable[[np.ndarray], np.ndarray]


def old_blur(roi: np.ndarray, cells: int = 6) -> np.ndarray:
    """The blur before issue 14: a mosaic of `cells` cells across the larger side, then a quarter-box Gaussian."""
    h, w = roi.shape[:2]
    cell = max(2, -(-max(h, w) // cells))
    small = cv2.resize(roi, (max(1, -(-w // cell)), max(1, -(-h // cell))), interpolation=cv2.INTER_AREA)
    k = max(3, (max(h, w) // 4) | 1)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), (k, k), 0)


def mean_noise(roi: np.ndarray) -> np.ndarray:
    """The mean colour of the box's inscribed ellipse with mild grain (sigma 6, seeded by the box size)."""
    h, w = roi.shape[:2]
    mask = box_mask(h, w, True)
    mean = roi[mask].mean(axis=0) if mask.any() else roi.reshape(-1, 3).mean(axis=0)
    noise = np.random.default_rng([h, w]).normal(0, 6, (h, w, 1))
    return np.clip(mean + noise, 0, 255).astype(np.uint8)


def lowpass_grain(roi: np.ndarray) -> np.ndarray:
    """The default low-pass with mild grain (sigma 6, seeded by the box size)."""
    h, w = roi.shape[:2]
    noise = np.random.default_rng([h, w]).normal(0, 6, (h, w, 1))
    return np.clip(lowpass(roi) + noise, 0, 255).astype(np.uint8)


def denoised(apply: Callable[[np.ndarray, Detections], np.ndarray]) -> Callable[[np.ndarray, Detections], np.ndarray]:
    """An attacker's answer to grain: a 5x5 median filter over each redacted box before recognising it."""

    def attack(image: np.ndarray, dets: Detections) -> np.ndarray:
        image = apply(image, dets)
        for _, (ix1, iy1, ix2, iy2), _ in pixel_boxes(dets, image.shape[1], image.shape[0]):
            image[iy1:iy2, ix1:ix2] = cv2.medianBlur(np.ascontiguousarray(image[iy1:iy2, ix1:ix2]), 5)
        return image

    return attack


def with_mask(fn: RoiFn) -> Callable[[np.ndarray, Detections], np.ndarray]:
    """A redaction of whole box regions applied as `anonymize` applies its own: inside each box's ellipse only."""

    def apply(image: np.ndarray, dets: Detections) -> np.ndarray:
        for _, (ix1, iy1, ix2, iy2), (wx1, wy1, wx2, wy2) in pixel_boxes(dets, image.shape[1], image.shape[0]):
            roi = image[iy1:iy2, ix1:ix2]
            mask = box_mask(wy2 - wy1, wx2 - wx1, True)[iy1 - wy1 : iy2 - wy1, ix1 - wx1 : ix2 - wx1]
            roi[mask] = fn(roi)[mask]
        return image

    return apply


def grown(boxes: np.ndarray, fx: float, fy: float) -> np.ndarray:
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * np.array([fx, fy], np.float32)
    return np.concatenate([c - half, c + half], axis=1)


def faces(boxes: np.ndarray, fx: float = FACE_DILATE, fy: float = FACE_DILATE) -> Detections:
    b = grown(boxes, fx, fy)
    return Detections(b, np.ones(len(b)), np.full(len(b), FACE))


def deface_blur(image: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """deface 1.5.0's blur (its `anonymize_frame`, defaults: mask_scale 1.3, ellipse) at the undilated truth boxes."""
    from deface.deface import anonymize_frame

    dets = np.concatenate([truth, np.ones((len(truth), 1), np.float32)], axis=1)
    anonymize_frame(dets, image, mask_scale=1.3, replacewith="blur", ellipse=True, draw_scores=False,
                    replaceimg=None, mosaicsize=20)
    return image


# name -> f(frame copy, truth boxes xyxy (unclipped, undilated)) -> redacted frame
CANDIDATES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "redact default (blur: 8x8 low-pass, sigma box/3)": lambda im, b: anonymize(im, faces(b), RedactionPolicy()),
    "old default: mosaic 6 + quarter-box Gaussian": lambda im, b: with_mask(old_blur)(im, faces(b)),
    "mosaic 4 + quarter-box Gaussian": lambda im, b: with_mask(lambda r: old_blur(r, 4))(im, faces(b)),
    "mosaic 3 + quarter-box Gaussian": lambda im, b: with_mask(lambda r: old_blur(r, 3))(im, faces(b)),
    "low-pass sigma box/2": lambda im, b: with_mask(lambda r: lowpass(r, 1 / 2))(im, faces(b)),
    "low-pass sigma box/3 + grain": lambda im, b: with_mask(lowpass_grain)(im, faces(b)),
    "low-pass sigma box/3 + grain, then median-filtered by the attacker":
        lambda im, b: denoised(with_mask(lowpass_grain))(im, faces(b)),
    "low-pass sigma box/5": lambda im, b: with_mask(lambda r: lowpass(r, 1 / 5))(im, faces(b)),
    "low-pass sigma box/8": lambda im, b: with_mask(lambda r: lowpass(r, 1 / 8))(im, faces(b)),
    "low-pass sigma box/3, taller mask (1.5x wide, 1.8x tall)":
        lambda im, b: anonymize(im, faces(b, FACE_DILATE, 1.8), RedactionPolicy()),
    "mean colour + grain": lambda im, b: with_mask(mean_noise)(im, faces(b)),
    "pixelate (6 cells)": lambda im, b: anonymize(im, faces(b), RedactionPolicy(modes=("pixelate", "pixelate"))),
    "fill (black)": lambda im, b: anonymize(im, faces(b), RedactionPolicy(modes=("fill", "fill"))),
    "deface 1.5.0 blur": deface_blur,
}
DEFAULT = next(iter(CANDIDATES))
# described by the recogniser (slow: ~90 ms a chip on 2 cores); the others are dominated on resemblance
NOT_DESCRIBED = {"mosaic 4 + quarter-box Gaussian", "low-pass sigma box/8", "pixelate (6 cells)"}


# ---------------------------------------------------------------------------------------------- measures


class Recogniser:
    """dlib's face descriptor on chips aligned by the 5-point shape predictor (weights of face_recognition_models,
    found without importing it: its __init__ needs pkg_resources)."""

    def __init__(self) -> None:
        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("face_recognition_models is not installed (pip install -e '.[bench]')")
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        self.dlib = dlib
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def pose(self, rgb: np.ndarray, box: np.ndarray):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        return self.shape(rgb, self.dlib.rectangle(x1, y1, x2, y2))

    def chip(self, rgb: np.ndarray, pose) -> np.ndarray:
        return self.dlib.get_face_chip(rgb, pose, size=150, padding=0.25)

    def describe(self, chips: list[np.ndarray]) -> np.ndarray:
        out = []
        for i in range(0, len(chips), 64):
            out.extend(np.array(d) for d in self.net.compute_face_descriptor(chips[i : i + 64], 0))
        return np.array(out, np.float32).reshape(-1, 128)


def crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return image[max(0, y1) : min(h, y2), max(0, x1) : min(w, x2)]


def ssim32(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    g = [cv2.resize(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), (SSIM_SIDE, SSIM_SIDE), interpolation=cv2.INTER_AREA)
         for x in (a, b)]
    return float(structural_similarity(g[0], g[1], win_size=7, data_range=255))


def blur_lengths(clip: Clip) -> np.ndarray:
    """Motion-blur length (px) of each frame at its centre, as synth.render draws it."""
    m, spec = clip.truth.mats, clip.spec
    centre = np.array([[spec.width / 2, spec.height / 2]])
    unblurred = jerk_events(spec)[1]
    out = np.zeros(len(m))
    for t in range(1, len(m)):
        before = _apply(m[t - 1], _apply(_inverse(m[t]), centre))
        out[t] = float(np.hypot(*(((centre - before)[0] - unblurred[t]) * spec.shutter)))
    return out


def measured_rows(clip: Clip) -> np.ndarray:
    t = clip.truth
    area = lambda a: np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)  # noqa: E731
    return np.flatnonzero((t.size >= 20) & (area(t.box) >= INSIDE * area(t.full)))


def descriptor_rows(clip: Clip, rows: np.ndarray, per_object: int, per_large: int) -> np.ndarray:
    """Up to `per_object` rows per face (`per_large` for faces of 40 px and more: they are fewer), spread evenly
    over the frames where it is measured."""
    out = []
    t = clip.truth
    for obj in np.unique(t.obj[rows]):
        for large in (False, True):
            mine = rows[(t.obj[rows] == obj) & ((t.size[rows] >= 40) == large)]
            out.extend(_spread(mine, per_large if large else per_object))
    return np.array(sorted(out), np.int64)


def _spread(mine: np.ndarray, k: int) -> list[int]:
    if not len(mine) or k < 1:
        return []
    pick = np.unique(np.round(np.linspace(0, len(mine) - 1, min(k, len(mine)) + 2)[1:-1]).astype(int))
    return mine[pick].tolist()


def identified(probe: np.ndarray, orig: np.ndarray, clip_ids: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Rank-1 identification: probe i's nearest original among the originals of its clip (every face of the clip
    is another person) is face i's own; `exclude[i]` (an impostor's own original) is left out of i's gallery."""
    out = np.zeros(len(probe), bool)
    for i in range(len(probe)):
        gallery = np.flatnonzero(clip_ids == clip_ids[i])
        if exclude is not None:
            gallery = gallery[gallery != exclude[i]]
        if len(gallery) < 2 or np.isnan(probe[i]).any():
            continue
        d = np.linalg.norm(orig[gallery] - probe[i], axis=1)
        out[i] = gallery[np.argmin(d)] == i
    return out


def impostors(sizes: np.ndarray, objs: np.ndarray, clip_ids: np.ndarray) -> np.ndarray:
    """For each row, another face of the same clip (another person) of the nearest size; -1 if none."""
    out = np.full(len(sizes), -1)
    for i in range(len(sizes)):
        other = np.flatnonzero((clip_ids == clip_ids[i]) & (objs != objs[i]))
        if len(other):
            out[i] = other[np.argmin(np.abs(np.log(sizes[other] / sizes[i])))]
    return out


# ---------------------------------------------------------------------------------------------- tools end to end


def run_tools(clips: list[Clip], work: Path) -> dict[str, dict[str, Path]]:
    """Real runs: redact (defaults, blur) and deface (blur, defaults) on `clips`; outputs per tool and clip."""
    from redact.pipeline import Redactor

    out: dict[str, dict[str, Path]] = {"redact end to end (defaults)": {}, "deface 1.5.0 end to end (blur)": {}}
    redactor = Redactor(engine_options({"face_mode": "blur", "plate_mode": "blur", "index_transcripts": False}))
    folder = work / "reid-out"
    for clip in clips:
        out["redact end to end (defaults)"][clip.spec.name] = redactor.run(clip.video, folder / "redact").video
        target = folder / "deface" / f"{clip.spec.name}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([deface_exe(), str(clip.video), "-o", str(target), "--replacewith", "blur", "--ffmpeg-config",
                        json.dumps({"codec": "libx264", "macro_block_size": 1})], check=True, capture_output=True)
        out["deface 1.5.0 end to end (blur)"][clip.spec.name] = target
    return out


# ---------------------------------------------------------------------------------------------- run


@dataclasses.dataclass
class Collected:
    """Everything measured, one entry per (method, row)."""

    ssim: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    ssim_size: list[float] = dataclasses.field(default_factory=list)
    mad: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    mad_smeared: list[bool] = dataclasses.field(default_factory=list)
    chips: dict[str, list[tuple[int, np.ndarray]]] = dataclasses.field(default_factory=dict)  # (described row, chip)
    d_size: list[float] = dataclasses.field(default_factory=list)
    d_obj: list[int] = dataclasses.field(default_factory=list)
    d_clip: list[int] = dataclasses.field(default_factory=list)
    d_key: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (clip id, row)
    pictures: list[dict] = dataclasses.field(default_factory=list)


def collect(clips: list[Clip], args, e2e: dict[str, dict[str, Path]], rec: Recogniser) -> Collected:
    c = Collected()
    for ci, clip in enumerate(clips):
        start = time.perf_counter()
        truth = clip.truth
        rows = measured_rows(clip)
        measured = set(rows.tolist())
        drows = set(descriptor_rows(clip, rows, args.per_object, args.per_large).tolist())
        blur = blur_lengths(clip)
        tool_frames = {name: read_frames(paths[clip.spec.name]) for name, paths in e2e.items() if clip.spec.name in paths}
        for frame in read_frames(clip.video):
            t = frame.index
            here = truth.rows(t)
            outs = {name: fn(frame.image.copy(), truth.full[here]) for name, fn in CANDIDATES.items()}
            outs.update({name: next(frames).image for name, frames in tool_frames.items()})
            mine = [r for r in here if r in measured]
            rgb = frame.image[..., ::-1].copy()
            for r in mine:
                box = truth.full[r]
                orig = crop(frame.image, box)
                c.ssim_size.append(float(truth.size[r]))
                c.mad_smeared.append(bool(SMEARED[0] <= truth.size[r] < SMEARED[1] and blur[t] >= args.jerk_px))
                for name in [*CANDIDATES, *e2e]:  # NaN where a tool did not run on this clip
                    red = crop(outs[name], box) if name in outs else None
                    c.ssim.setdefault(name, []).append(math.nan if red is None else ssim32(orig, red))
                    c.mad.setdefault(name, []).append(math.nan if red is None else
                                                      float(np.abs(orig.astype(np.int16) - red).mean()))
                if r in drows:
                    pose, i = rec.pose(rgb, box), len(c.d_size)
                    c.chips.setdefault("original", []).append((i, rec.chip(rgb, pose)))
                    for name, im in outs.items():
                        if name not in NOT_DESCRIBED:
                            c.chips.setdefault(name, []).append((i, rec.chip(im[..., ::-1].copy(), pose)))
                    c.d_size.append(float(truth.size[r]))
                    c.d_obj.append(int(truth.obj[r]))
                    c.d_clip.append(ci)
                    c.d_key.append((ci, int(r)))
                if args.pictures and _wanted_picture(c.pictures, float(truth.size[r]), c.mad_smeared[-1]):
                    c.pictures.append({"size": float(truth.size[r]), "smeared": c.mad_smeared[-1], "blur_px": blur[t],
                                       "clip": clip.spec.name, "frame": t,
                                       "crops": [("original", crop(frame.image, grown(box[None], 1.8, 1.8)[0]))]
                                       + [(n, crop(im, grown(box[None], 1.8, 1.8)[0])) for n, im in outs.items()]})
        print(f"  {clip.spec.name}: {len(rows)} box-frames, {len(drows)} described "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    return c


def _wanted_picture(have: list[dict], size: float, smeared: bool) -> bool:
    """A few faces for the pictures: one smeared 21-30 px face and one per size bucket."""
    if smeared:
        return not any(p["smeared"] for p in have)
    for lo, hi in ((24, 32), (45, 60), (80, 200)):
        if lo <= size < hi and not any(lo <= p["size"] < hi and not p["smeared"] for p in have):
            return True
    return False


def save_pictures(pictures: list[dict], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for p in pictures:
        tiles = []
        for name, im in p["crops"]:
            scale = 160 / max(1, im.shape[0])
            tile = cv2.resize(im, (max(1, round(im.shape[1] * scale)), 160), interpolation=cv2.INTER_NEAREST)
            label = np.full((34, tile.shape[1], 3), 255, np.uint8)
            words = name.split(" ")
            cv2.putText(label, " ".join(words[:3])[:24], (2, 13), cv2.FONT_HERSHEY_PLAIN, 0.9, (0, 0, 0), 1)
            cv2.putText(label, " ".join(words[3:])[:24], (2, 29), cv2.FONT_HERSHEY_PLAIN, 0.9, (0, 0, 0), 1)
            tiles.append(np.vstack([tile, label]))
            tiles.append(np.full((194, 4, 3), 255, np.uint8))
        kind = f"smeared-blur{p['blur_px']:.0f}px" if p["smeared"] else "sharp"
        path = folder / f"face-{p['size']:.0f}px-{kind}.png"
        cv2.imwrite(str(path), np.hstack(tiles))
        paths.append(str(path))
    return paths


def summarize(c: Collected, rec: Recogniser, cache: Path | None = None) -> dict:
    start = time.perf_counter()
    size = np.array(c.d_size)
    desc = {}
    for name, chips in c.chips.items():  # every method's descriptors at the rows it has, NaN elsewhere
        d = np.full((len(size), 128), np.nan, np.float32)
        d[[i for i, _ in chips]] = rec.describe([chip for _, chip in chips])
        desc[name] = d
    described = time.perf_counter() - start
    if cache is not None:
        np.savez(cache, size=size, obj=np.array(c.d_obj), clip=np.array(c.d_clip), names=np.array(list(desc)),
                 **{f"d{i}": d for i, d in enumerate(desc.values())})
    orig = desc.pop("original")
    imp = impostors(size, np.array(c.d_obj), np.array(c.d_clip))
    clip_ids = np.array(c.d_clip)
    valid = imp >= 0
    dist = {name: np.linalg.norm(d - orig, axis=1) for name, d in desc.items()}
    ident = {name: identified(d, orig, clip_ids) for name, d in desc.items()}
    # 2AFC: the redacted face is nearer its own original than the impostor's (another face of about its size)
    closer = {name: np.where(valid & ~np.isnan(dist[name]),
                             dist[name] < np.linalg.norm(d - orig[np.maximum(imp, 0)], axis=1), np.nan)
              for name, d in desc.items()}
    control = "impostor control (another person's original face, nearest size)"
    impostor_probe = orig[np.maximum(imp, 0)]
    dist[control] = np.where(valid, np.linalg.norm(impostor_probe - orig, axis=1), np.nan)
    ident[control] = valid & identified(impostor_probe, orig, clip_ids, exclude=imp)
    closer[control] = np.full(len(size), np.nan)  # chance: 50 %
    s_size, ssim, mad = np.array(c.ssim_size), {k: np.array(v) for k, v in c.ssim.items()}, c.mad
    smeared = np.array(c.mad_smeared, bool)
    out = {}
    for name, d in dist.items():
        e = {"reid": {}, "rank1": {}, "nearer_own_than_impostor": {}, "ssim_resemblance": {}}
        for label, lo, hi in BUCKETS:
            inb = (size >= lo) & (size < hi) & ~np.isnan(d)
            e["reid"][label] = {"n": int(inb.sum()), "matched": int((d[inb] < MATCH).sum()),
                                "rate": _rate(int((d[inb] < MATCH).sum()), int(inb.sum())),
                                "mean_distance": round(float(d[inb].mean()), 4) if inb.any() else None}
            k = int(ident[name][inb].sum())  # inb excludes rows this method has no descriptor for (NaN distance)
            e["rank1"][label] = {"n": int(inb.sum()), "identified": k, "rate": _rate(k, int(inb.sum()))}
            cl = closer[name][inb]
            if name != control:
                n = int((~np.isnan(cl)).sum())
                e["nearer_own_than_impostor"][label] = {"n": n, "rate": _rate(int(np.nansum(cl)), n)}
            if name in ssim:
                sb = (s_size >= lo) & (s_size < hi) & ~np.isnan(ssim[name])
                same = int((ssim[name][sb] >= SSIM_SAME).sum())
                e["ssim_resemblance"][label] = {"n": int(sb.sum()), "resembling": same, "rate": _rate(same, int(sb.sum())),
                                                "mean_ssim": round(float(ssim[name][sb].mean()), 4) if sb.any() else None}
        if name in mad:
            m = np.array(mad[name])
            sm, ok = smeared & ~np.isnan(m), ~np.isnan(m)
            e["mean_abs_diff"] = {"smeared 21-30 px faces": round(float(m[sm].mean()), 2) if sm.any() else None,
                                  "smeared n": int(sm.sum()),
                                  "all faces >= 20 px": round(float(m[ok].mean()), 2) if ok.any() else None}
        out[name] = e
    return {"methods": out, "descriptors": int(sum(len(v) for v in c.chips.values())), "describe_s": round(described, 1)}


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def table(methods: dict) -> str:
    """Per method and size bucket: re-id (distance < 0.6) / rank-1 identification / nearer own than impostor;
    then SSIM resemblance per bucket and the change on smeared faces."""
    labels = [b[0] for b in BUCKETS]
    lines = ["| method | " + " | ".join(f"re-id<0.6 / rank-1 / 2AFC, {b}" for b in labels) + " | "
             + " | ".join(f"SSIM>=0.5 {b}" for b in labels) + " | MAD smeared 21-30 px | MAD all >=20 px |",
             "|---" * (2 * len(labels) + 3) + "|"]

    def pct(d: dict | None) -> str:
        return "-" if not d or d["rate"] is None else f"{100 * d['rate']:.1f}"

    for name, e in methods.items():
        mad = e.get("mean_abs_diff", {})
        ident = [f"{pct(e['reid'].get(b))} / {pct(e['rank1'].get(b))} / {pct(e['nearer_own_than_impostor'].get(b))}"
                 + (f" (n={e['reid'][b]['n']})" if b in e["reid"] else "") for b in labels]
        ssim = [pct(e["ssim_resemblance"].get(b)) + (f" (n={e['ssim_resemblance'][b]['n']})" if b in e["ssim_resemblance"]
                                                     else "") for b in labels]
        lines.append(f"| {name} | " + " | ".join(ident) + " | " + " | ".join(ssim)
                     + f" | {mad.get('smeared 21-30 px faces', '-')} | {mad.get('all faces >= 20 px', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50, help="frames per clip")
    ap.add_argument("--clips", type=int, default=6, help="clips per seed")
    ap.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=[0, 1])
    ap.add_argument("--per-object", type=int, default=1, help="box-frames described per face, 20-40 px")
    ap.add_argument("--per-large", type=int, default=3, help="box-frames described per face, >= 40 px")
    ap.add_argument("--jerk-px", type=float, default=5.0, help="motion-blur length of a camera-jerk frame")
    ap.add_argument("--e2e-clips", type=int, default=2, help="clips the real tools also run on (0: none)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/redact-bench"))
    ap.add_argument("--pictures", type=Path, default=None, help="save side-by-side crops here")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reid.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    photos = load_photos("faces")
    clips = [make_clip(s, photos, args.work / "clips") for seed in args.seeds
             for s in clip_specs("faces", args.clips, args.frames, 1280, 720, seed)]
    print(f"{len(clips)} clips ready ({time.perf_counter() - t0:.0f} s)", flush=True)
    rec = Recogniser()
    e2e_clips = sorted(clips[: args.clips], key=lambda c: -float(np.median(c.truth.size)))[: args.e2e_clips]
    e2e = run_tools(e2e_clips, args.work) if e2e_clips else {}
    print(f"tools end to end on {len(e2e_clips)} clips ({time.perf_counter() - t0:.0f} s)", flush=True)
    collected = collect(clips, args, e2e, rec)
    summary = summarize(collected, rec, args.work / "reid-descriptors.npz")
    pictures = save_pictures(collected.pictures, args.pictures) if args.pictures else []
    text = table(summary["methods"])
    result = {
        "method": {"match": f"dlib ResNet descriptor distance < {MATCH}",
                   "rank1": "the redacted face's nearest original among the originals of its clip is its own",
                   "2AFC": "the redacted face is nearer its own original than the impostor's (chance 50%)",
                   "ssim": f"SSIM >= {SSIM_SAME} at {SSIM_SIDE}x{SSIM_SIDE}",
                   "position": "candidates applied at the truth boxes dilated 1.5x (ellipse), deface at the truth boxes "
                               "with its mask_scale 1.3; end-to-end rows: the tools' real outputs at the truth boxes",
                   "alignment": "5-point shape predictor on the original frame at the truth box, same chip for every method",
                   "smeared": f"faces {SMEARED[0]:.0f}-{SMEARED[1] - 1:.0f} px on frames with motion blur >= {args.jerk_px} px"},
        "config": {"frames": args.frames, "clips_per_seed": args.clips, "seeds": args.seeds, "per_object": args.per_object,
                   "per_large": args.per_large,
                   "e2e_clips": [c.spec.name for c in e2e_clips], "default": DEFAULT},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        **summary, "wall_s": round(time.perf_counter() - t0, 1), "pictures": pictures, "table_markdown": text,
    }
    print(text)
    print(f"{summary['descriptors']} descriptors in {summary['describe_s']} s; total {result['wall_s']} s")
    write_result(args.out, result, __file__, argv)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
