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
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision

from benchmarks.provenance import write_result
from redact.detect import CPU_RUNTIMES, CenterFaceDetector, DetectionQueue, YoloPlateDetector, cpu_runtime
from redact.models import load_registry, resolve
from redact.pipeline import RedactOptions, plate_models

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"


def load_gt(folder: Path) -> dict[str, np.ndarray]:
    boxes: dict[str, list] = defaultdict(list)
    with open(folder / "gt.csv") as f:
        for row in csv.DictReader(f):
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


def evaluate(detector, folder: Path, smear: bool = False) -> dict:
    gt = load_gt(folder)
    tp = n_gt = n_det = 0
    start = time.perf_counter()
    for image, boxes in gt.items():
        picture = cv2.imread(str(folder / image))
        dets = detector([smeared(picture, image) if smear else picture])[0]
        tp += match(boxes, dets.xyxy, dets.score)
        n_gt += len(boxes)
        n_det += len(dets)
    elapsed = time.perf_counter() - start
    return {"images": len(gt), "objects": n_gt, "detections": n_det, "recall": round(tp / n_gt, 4),
            "precision": round(tp / max(1, n_det), 4), "images_per_s": round(len(gt) / elapsed, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plates", nargs="*", help="plate model ids (default: every registered plate model)")
    parser.add_argument("--no-faces", action="store_true")
    defaults = RedactOptions()  # the thresholds and detection resolutions `redact run` uses
    parser.add_argument("--face-threshold", type=float, default=defaults.face_threshold)
    parser.add_argument("--face-scale", type=float, default=defaults.face_scale)
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
    results: dict = {"settings": {k: vars(args)[k] for k in ("face_threshold", "face_scale", "plate_threshold",
                                                              "plate_imgsz", "single_size")},
                     "runtime": backend or cpu_runtime()}
    if not args.no_faces:
        path, digest, _ = resolve("centerface", "faces")
        results["centerface"] = evaluate(CenterFaceDetector(path, digest, threshold=args.face_threshold,
                                                            scale=args.face_scale, backend=backend),
                                         EVALDATA / "faces")
    plate_ids = args.plates if args.plates is not None else [m.id for m in load_registry().values() if m.task == "plates"]
    plate_detectors = {}
    for model_id in plate_ids:
        path, digest, _ = resolve(model_id, "plates")
        plate_detectors[model_id] = YoloPlateDetector(path, digest, threshold=args.plate_threshold,
                                                      imgsz=args.plate_imgsz, backend=backend)
        results[model_id] = evaluate(plate_detectors[model_id], EVALDATA / "plates")
    default = plate_models(defaults.plate_model)
    if len(default) > 1 and set(default) <= set(plate_detectors):  # the default ensemble, as the pipeline runs it
        results[f"{defaults.plate_model} (default, fused)"] = evaluate(
            DetectionQueue([plate_detectors[m] for m in default], 1), EVALDATA / "plates")
        if args.smear:
            results[f"{defaults.plate_model} (default, fused), motion-smeared 15-40 px"] = evaluate(
                DetectionQueue([plate_detectors[m] for m in default], 1), EVALDATA / "plates", smear=True)
    print("| model | images | objects | recall | precision | images/s |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        if name in ("settings", "runtime"):
            continue
        print(f"| {name} | {r['images']} | {r['objects']} | {r['recall']:.3f} | {r['precision']:.3f} | {r['images_per_s']} |")
    write_result(args.out, results, __file__, indent=2)


if __name__ == "__main__":
    main()
