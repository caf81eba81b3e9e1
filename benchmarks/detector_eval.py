"""Per-image detector recall and precision on the real annotated photos in ../shared/evaldata.

A ground-truth box counts as found when a detection overlaps it with IoU >= 0.3 (greedy one-to-one matching,
highest score first). Plates: only one plate per photo is labelled, so unmatched detections are not all false
positives; recall is the figure that chose the default plate model.

    .venv/bin/python -m benchmarks.detector_eval                       # faces + every registered plate model
    .venv/bin/python -m benchmarks.detector_eval --plates plate-fastanpr --no-faces
    .venv/bin/python -m benchmarks.detector_eval --smear --no-faces    # also plates smeared by motion
    .venv/bin/python -m benchmarks.detector_eval --runtime onnxruntime --out /tmp/ort.json   # another runtime

--smear adds the default plate models on every plate photo smeared by a straight motion streak (seeded per photo:
15-40 px long, any direction), as a car pulling away from a body camera looks; --single-size runs the plate
models at --plate-imgsz only (no second pass at a smaller photo's own size), the behaviour before issue 14.
"""

from __future__ import annotations

import argparse
import csv
import functools
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision

from benchmarks.provenance import write_result
from redact.detect import (
    CPU_RUNTIMES,
    CenterFaceDetector,
    DetectionQueue,
    YoloPlateDetector,
    YuNetDetector,
    cpu_runtime,
    fuse,
)
from redact.models import load_registry, resolve
from redact.pipeline import RedactOptions, plate_models

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"


def load_gt(folder: Path, label: str | None = None) -> dict[str, np.ndarray]:
    boxes: dict[str, list] = defaultdict(list)
    with open(folder / "gt.csv") as f:
        for row in csv.DictReader(f):
            if label is not None and row["label"] != label:
                continue
            x, y, w, h = (float(row[k]) for k in "xywh")
            boxes[row["image"]].append([x, y, x + w, y + h])
    return {k: np.array(v, np.float32) for k, v in boxes.items()}


def match(gt: np.ndarray, det: np.ndarray, score: np.ndarray, iou: float = 0.3) -> int:
    """Number of ground-truth boxes matched one-to-one by detections at IoU >= `iou`."""
    if not len(gt) or not len(det):
        return 0
    ious = torchvision.ops.box_iou(torch.from_numpy(det[np.argsort(-score)]), torch.from_numpy(gt)).numpy()
    used, hits = set(), 0
    for row in ious:
        candidates = [j for j in np.argsort(-row) if row[j] >= iou and j not in used]
        if candidates:
            used.add(candidates[0])
            hits += 1
    return hits


def smeared(image: np.ndarray, key: str) -> np.ndarray:
    """`image` smeared by a straight motion streak 15-40 px long in a direction seeded by `key`."""
    from benchmarks.synth import _line_kernel

    rng = np.random.default_rng(list(key.encode()))
    length, angle = rng.uniform(15, 40), rng.uniform(0, np.pi)
    kernel = _line_kernel(length * np.cos(angle), length * np.sin(angle))
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


FACE_BUCKETS = (0, 20, 30, 50)  # px, short side: lower edges; the leak bench's misses are 20-30 px faces


def photos(folder: Path, smear: bool = False, label: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(picture, ground-truth boxes) of each photo in `folder`; `label`: only photos with such a box, and only those
    boxes (e.g. "face:with_mask")."""
    gt = load_gt(folder, label)
    for image, boxes in gt.items():
        picture = cv2.imread(str(folder / image))
        yield smeared(picture, image) if smear else picture, boxes


def on_canvas(pictures: Iterable[tuple[np.ndarray, np.ndarray]], face: float,
              size: tuple[int, int] = (1280, 720)) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each photo shrunk (INTER_AREA) until its median face is `face` px (short side), centred on a grey frame of
    `size`: the real faces of evaldata, masked ones included, as small as the background faces the leak bench
    misses, in a 720p frame as the pipeline sees them."""
    w, h = size
    for picture, boxes in pictures:
        short = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        f = min(1.0, face / float(np.median(short)), w / picture.shape[1], h / picture.shape[0])
        small = cv2.resize(picture, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        frame = np.full((h, w, 3), 114, np.uint8)
        y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
        frame[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        yield frame, boxes * f + np.array([x0, y0, x0, y0], np.float32)


def clip_frames(folder: Path, clips: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every frame of the leak bench's cached face clips in `folder` (its `--work`/clips: photos on texture, filmed
    by a moving camera, motion-blurred, CRF 28; the first `clips` of them) with their ground-truth face boxes, cut
    to the frame. The photos also hold unlabelled faces, so precision here is a lower bound."""
    from benchmarks.synth import ClipTruth
    from redact.video import read_frames

    for gt in sorted(folder.glob("faces-*.gt.npz"))[:clips]:
        truth = ClipTruth.load(gt)
        for frame in read_frames(gt.with_name(gt.name.replace(".gt.npz", ".mp4"))):
            yield frame.image, truth.box[truth.rows(frame.index)].astype(np.float32)


def evaluate(detectors: dict, pictures: Iterable[tuple[np.ndarray, np.ndarray]], buckets: tuple[int, ...] = (),
             fused: dict[str, tuple[str, ...]] | None = None) -> dict[str, dict]:
    """Recall, precision and speed of each of `detectors` (name: detector) on (picture, boxes) pairs, and of each
    combination in `fused` (name: the detectors whose boxes are fused as the pipeline fuses them, `fuse`; its time
    is theirs added up); with `buckets` (lower edges, px), recall by the boxes' short side too. ms per image is the
    detector call alone (no decoding of the picture). Each detector sees each picture once."""
    fused = fused or {}
    tally = {name: {"tp": 0, "det": 0, "s": 0.0, "hits": np.zeros(len(buckets), int)} for name in [*detectors, *fused]}
    n_gt = images = 0
    counts = np.zeros(len(buckets), int)
    for picture, boxes in pictures:
        dets = {}
        for name, detector in detectors.items():
            start = time.perf_counter()
            dets[name] = detector([picture])[0]
            tally[name]["s"] += time.perf_counter() - start
        for name, members in fused.items():
            dets[name] = fuse([dets[m] for m in members])
            tally[name]["s"] = sum(tally[m]["s"] for m in members)
        short = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        which = np.searchsorted(buckets, short, side="right") - 1
        counts += np.bincount(which[which >= 0], minlength=len(buckets))[:len(buckets)] if buckets else 0
        for name, d in dets.items():
            t = tally[name]
            t["tp"] += match(boxes, d.xyxy, d.score)
            t["det"] += len(d)
            for b in range(len(buckets)):
                t["hits"][b] += match(boxes[which == b], d.xyxy, d.score)
        n_gt += len(boxes)
        images += 1
    edges = [*buckets[1:], None]
    results = {}
    for name, t in tally.items():
        r = {"images": images, "objects": n_gt, "detections": t["det"], "recall": round(t["tp"] / max(1, n_gt), 4),
             "precision": round(t["tp"] / max(1, t["det"]), 4), "images_per_s": round(images / max(t["s"], 1e-9), 2),
             "ms_per_image": round(1000 * t["s"] / max(1, images), 1)}
        if buckets:
            r["by_size"] = {f"{lo}-{hi}" if hi else f">={lo}": {"objects": int(n), "recall": round(int(h) / n, 4) if n else None}
                            for lo, hi, n, h in zip(buckets, edges, counts, t["hits"], strict=True)}
        results[name] = r
    return results


def face_detector(model_id: str, args: argparse.Namespace, backend: str | None):
    """A registered face model at the thresholds and scale `redact run` gives it (or this command's options)."""
    path, digest, spec = resolve(model_id, "faces")
    if spec is not None and spec.format == "yunet-onnx":
        return YuNetDetector(path, digest, threshold=args.yunet_threshold, scale=args.yunet_scale, backend=backend)
    return CenterFaceDetector(path, digest, threshold=args.face_threshold, scale=args.face_scale, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plates", nargs="*", help="plate model ids (default: every registered plate model)")
    parser.add_argument("--no-faces", action="store_true")
    defaults = RedactOptions()  # the thresholds and detection resolutions `redact run` uses
    parser.add_argument("--face-threshold", type=float, default=defaults.face_threshold)
    parser.add_argument("--face-scale", type=float, default=defaults.face_scale)
    parser.add_argument("--face-models", type=lambda t: t.split(","), default=[m.id for m in load_registry().values()
                                                                             if m.task == "faces"],
                        help="face model ids, each alone and each other fused with centerface (default: all)")
    parser.add_argument("--yunet-threshold", type=float, default=YuNetDetector.THRESHOLD)
    parser.add_argument("--yunet-scale", type=float, default=1.0)
    parser.add_argument("--shrink", type=lambda t: [int(x) for x in t.split(",")], default=[24, 16],
                        help="also every face photo shrunk to faces of these sizes (px) on a 720p frame")
    parser.add_argument("--clips", type=Path, help="the leak bench's clip folder: also every frame of its face clips")
    parser.add_argument("--clip-count", type=int, help="only the first N face clips there")
    parser.add_argument("--plate-threshold", type=float, default=defaults.plate_threshold)
    parser.add_argument("--plate-imgsz", type=int, default=defaults.plate_imgsz)
    parser.add_argument("--smear", action="store_true", help="also the default plate models on motion-smeared photos")
    parser.add_argument("--single-size", action="store_true", help="plates at --plate-imgsz only (before issue 14)")
    parser.add_argument("--runtime", choices=["auto", *CPU_RUNTIMES, "torch"], default="auto",
                        help="what runs the detectors (auto: as `redact run` on this machine)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detectors.json"))
    args = parser.parse_args()
    backend = None if args.runtime == "auto" else args.runtime
    if args.single_size:
        YoloPlateDetector.sizes = lambda self, h, w: [self.imgsz]
    results: dict = {"settings": {k: vars(args)[k] for k in ("face_threshold", "face_scale", "yunet_threshold",
                                                              "yunet_scale", "plate_threshold", "plate_imgsz",
                                                              "single_size", "clip_count")},
                     "runtime": backend or cpu_runtime()}
    if not args.no_faces:
        face_sets = {"faces": lambda: photos(EVALDATA / "faces"),
                     "faces, masked": lambda: photos(EVALDATA / "faces", label="face:with_mask"),
                     **{f"faces shrunk to {px} px on a 720p frame": functools.partial(
                         lambda px: on_canvas(photos(EVALDATA / "faces"), px), px) for px in args.shrink},
                     **{f"masked faces shrunk to {px} px on a 720p frame": functools.partial(
                         lambda px: on_canvas(photos(EVALDATA / "faces", label="face:with_mask"), px), px)
                        for px in args.shrink}}
        if args.clips:
            face_sets[f"leak bench face clips ({args.clips.name}), every frame"] = lambda: clip_frames(
                args.clips, args.clip_count)
        face_detectors = {m: face_detector(m, args, backend) for m in args.face_models}
        fused = {f"centerface+{m} (fused)": ("centerface", m) for m in face_detectors if m != "centerface"
                 and "centerface" in face_detectors}
        for set_name, pictures in face_sets.items():
            for name, r in evaluate(face_detectors, pictures(), FACE_BUCKETS, fused).items():
                results[f"{name} | {set_name}"] = r
                print(name, "|", set_name, r, flush=True)
    plate_ids = args.plates if args.plates is not None else [m.id for m in load_registry().values() if m.task == "plates"]
    plate_detectors = {}
    for model_id in plate_ids:
        path, digest, _ = resolve(model_id, "plates")
        plate_detectors[model_id] = YoloPlateDetector(path, digest, threshold=args.plate_threshold,
                                                      imgsz=args.plate_imgsz, backend=backend)
        results[model_id] = evaluate({model_id: plate_detectors[model_id]}, photos(EVALDATA / "plates"))[model_id]
    default = plate_models(defaults.plate_model)
    if len(default) > 1 and set(default) <= set(plate_detectors):  # the default ensemble, as the pipeline runs it
        results[f"{defaults.plate_model} (default, fused)"] = evaluate(
            {"fused": DetectionQueue([plate_detectors[m] for m in default], 1)}, photos(EVALDATA / "plates"))["fused"]
        if args.smear:
            results[f"{defaults.plate_model} (default, fused), motion-smeared 15-40 px"] = evaluate(
                {"fused": DetectionQueue([plate_detectors[m] for m in default], 1)},
                photos(EVALDATA / "plates", smear=True))["fused"]
    print("| model | images | objects | recall | recall by size (px) | precision | ms/image |\n|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if name in ("settings", "runtime"):
            continue
        sizes = " ".join(f"{k}: {v['recall']:.3f} ({v['objects']})" for k, v in r.get("by_size", {}).items() if v["objects"])
        print(f"| {name} | {r['images']} | {r['objects']} | {r['recall']:.3f} | {sizes} | {r['precision']:.3f} "
              f"| {r['ms_per_image']} |")
    write_result(args.out, results, __file__, indent=2)


if __name__ == "__main__":
    main()
