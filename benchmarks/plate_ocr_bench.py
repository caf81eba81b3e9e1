"""Can OCR read a redacted plate? RapidOCR (PP-OCRv4 weights inside the `rapidocr-onnxruntime` wheel, bench
extra) on the annotated plates of ../shared/evaldata/plates, original against each redaction mode.

Each plate is redacted in its photo as the pipeline redacts it (its box grown by RedactOptions.plate_dilate, the
mode's operator over the whole rectangle), then cropped with a margin of half the plate's height around the box
and enlarged to 96 px high, as an attacker would before reading it. A plate string counts as read when the OCR
text (upper-cased, letters and digits only) contains the annotated string; partly read when it contains 3 or more
consecutive characters of it (the annotated strings are 5-8 characters).

    .venv/bin/python -m benchmarks.plate_ocr_bench [--limit 120] [--out benchmarks/results/plate_ocr.json]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.detector_eval import EVALDATA
from benchmarks.provenance import write_result
from redact.anonymize import RedactionPolicy, anonymize
from redact.detect import PLATE, Detections
from redact.pipeline import RedactOptions

MODES = ("blur", "pixelate")  # fill leaves nothing to read by construction
HEIGHT = 96


def plates(limit: int | None) -> list[tuple[str, np.ndarray, str]]:
    import csv

    rows = []
    with open(EVALDATA / "plates" / "gt.csv", newline="") as f:
        for row in csv.DictReader(f):
            text = clean(row.get("text", ""))
            if len(text) >= 4:
                x, y, w, h = (float(row[k]) for k in "xywh")
                rows.append((row["image"], np.array([x, y, x + w, y + h], np.float32), text))
    return rows[:limit] if limit else rows


def clean(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def view(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The attacker's crop: the box with half its height around it, enlarged to HEIGHT px high."""
    h, w = image.shape[:2]
    m = (box[3] - box[1]) / 2
    x1, y1, x2, y2 = (int(round(v)) for v in (box[0] - m, box[1] - m, box[2] + m, box[3] + m))
    crop = image[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
    scale = HEIGHT / max(1, crop.shape[0])
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)


def longest_common(a: str, b: str) -> int:
    best = 0
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            if a[i:j] in b:
                best = j - i
            else:
                break
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=120, help="plates (0: all)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/plate_ocr.json"))
    args = ap.parse_args()
    from rapidocr_onnxruntime import RapidOCR

    ocr = RapidOCR()
    dilate = RedactOptions().plate_dilate
    counts = {name: {"read": 0, "partly_read": 0, "examples": []} for name in ("original", *MODES)}
    start = time.perf_counter()
    items = plates(args.limit or None)
    for image_key, box, text in items:
        photo = cv2.imread(str(EVALDATA / "plates" / image_key))
        c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * dilate / 2
        dets = Detections([[*(c - half), *(c + half)]], [1.0], [PLATE])
        pictures = {"original": photo}
        pictures.update({m: anonymize(photo.copy(), dets, RedactionPolicy(modes=(m, m))) for m in MODES})
        for name, picture in pictures.items():
            result, _ = ocr(view(picture, box))
            heard = clean("".join(r[1] for r in result or []))
            common = longest_common(text, heard)
            counts[name]["read"] += text in heard
            counts[name]["partly_read"] += common >= 3
            if name != "original" and common >= 3 and len(counts[name]["examples"]) < 10:
                counts[name]["examples"].append({"image": image_key, "plate": text, "ocr": heard})
    n = len(items)
    out = {"plates": n, "seconds": round(time.perf_counter() - start, 1), "ocr": "rapidocr-onnxruntime (PP-OCRv4)",
           "method": __doc__.split("\n\n")[1].replace("\n", " "),
           "results": {k: {**v, "read_rate": round(v["read"] / n, 4), "partly_read_rate": round(v["partly_read"] / n, 4)}
                       for k, v in counts.items()}}
    for k, v in out["results"].items():
        print(f"{k:10} read {v['read']}/{n} ({v['read_rate']:.1%}), >= 3 characters {v['partly_read']}/{n}")
    write_result(args.out, out, __file__)


if __name__ == "__main__":
    main()
