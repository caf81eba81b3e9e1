"""How much a reviewer has to look at: review rows against the objects really in view (issue 27's measure).

    python -m benchmarks.review_bench [--seeds 0] [--clips 3] [--frames 150] [--classes faces,plates]
        [--work /tmp/redact-review-bench] [--out benchmarks/results/review_rows.json]

The clips are the leak benchmark's generated clips (benchmarks/synth.py: real annotated photos filmed by a moving,
shaking camera), longer, so that every face and plate is one known object across the clip. Each clip is redacted
at the defaults; every review row of its plan (`Plan.groups`: the tracks the plan chains into one row) is matched
box by box to the truth of its frames (IoU >= 0.3, the best truth box of the row's class), and counted:

- rows, and rows per minute of footage;
- objects: truth objects in view (seen in at least one frame), and rows / objects (the issue's goal: <= 1.3);
- objects split over more than one row (a reviewer decides on each piece);
- rows that join two objects (each has at least 3 boxes and 10% of the row's matched boxes): one decision would
  cover two people (the goal: none); and the rows joined by appearance (`Group.looked`), and how many of them join
  two objects;
- rows that are not objects (fewer than 20% of their boxes match any truth box: a false detection, or a lone box
  padded past what it saw);
- triage: rows the page marks "needs a look" (`Group.doubts`: weak, lone or joined by look), and how many of the rows that are not
  objects are among them (the rest would be accepted with the confident rows in one step).

Redaction is not scored here (the leak benchmark does that).

`--vtest` adds OpenCV's `vtest.avi` (768x576, 795 frames at 10 fps: pedestrians in a street, the clip issue 27 was
found on), taken from Debian's `opencv-doc` package (`apt-get download`; OpenCV's sample data) into the work
folder and checked by its SHA-256. It has no truth: rows, tracks, rows per minute and rows to look at.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torchvision

from benchmarks.provenance import ROOT, write_result
from benchmarks.synth import Clip, ClipTruth, clip_specs, load_photos, make_clip
from redact.detect import CLASS_NAMES
from redact.models import sha256_file
from redact.pipeline import RedactOptions, Redactor
from redact.plan import Plan, plan_path

IOU = 0.3
JOIN_BOXES, JOIN_SHARE = 3, 0.10
OBJECT_SHARE = 0.20


def row_objects(plan: Plan, row, truth: ClipTruth) -> tuple[Counter, int]:
    """Truth object id -> how many of the row's boxes match it, and the row's number of boxes."""
    matched: Counter = Counter()
    total = 0
    for track in row.tracks:
        boxes = plan.track_boxes(track)
        total += len(boxes.frame)
        for frame in np.unique(boxes.frame):
            rows = truth.rows(int(frame))
            if not len(rows):
                continue
            ious = torchvision.ops.box_iou(torch.from_numpy(boxes.at(int(frame)).xyxy.astype(np.float32)),
                                           torch.from_numpy(truth.box[rows].astype(np.float32))).numpy()
            for best, value in zip(ious.argmax(1), ious.max(1), strict=True):
                if value >= IOU:
                    matched[int(truth.obj[rows[best]])] += 1
    return matched, total


def joins_objects(matched: Counter) -> bool:
    """Whether a row's boxes hold two objects (`row_objects`' count): each with at least JOIN_BOXES of them and
    JOIN_SHARE of the row's matched boxes."""
    hits = sum(matched.values())
    return sum(n >= max(JOIN_BOXES, JOIN_SHARE * hits) for n in matched.values()) >= 2


def measure(clip: Clip, outdir: Path) -> dict:
    kind_cls = CLASS_NAMES.index("face" if clip.spec.kind == "faces" else "plate")
    in_view = set(clip.truth.obj.tolist())
    with Plan(plan_path(outdir, clip.spec.name)) as plan:
        rows = plan.groups()
        fps = plan.video.get("fps") or 30.0
        per_object: Counter = Counter()
        joins, not_objects, other_class, not_objects_doubted, looked_joins = 0, 0, 0, 0, 0
        for row in rows:
            if row.cls != kind_cls:
                other_class += 1  # a plate row on a face clip: nothing of that class is in view
                not_objects += 1
                not_objects_doubted += bool(row.doubts)
                continue
            matched, total = row_objects(plan, row, clip.truth)
            hits = sum(matched.values())
            if hits < OBJECT_SHARE * total:
                not_objects += 1
                not_objects_doubted += bool(row.doubts)
                continue
            per_object[matched.most_common(1)[0][0]] += 1
            if joins_objects(matched):
                joins += 1
                looked_joins += bool(row.looked)
        frames = plan.frame_count
    return {"clip": clip.spec.name, "frames": frames, "objects": len(in_view), "rows": len(rows),
            "rows_per_minute": round(len(rows) / (frames / fps) * 60, 1),
            "rows_per_object": round(len(rows) / max(1, len(in_view)), 2),
            "objects_split": sum(n > 1 for n in per_object.values()), "objects_with_a_row": len(per_object),
            "rows_joining_objects": joins, "rows_joined_by_look": sum(bool(r.looked) for r in rows),
            "rows_joined_by_look_joining_objects": looked_joins, "rows_not_objects": not_objects, "rows_other_class": other_class,
            "rows_to_look_at": sum(bool(r.doubts) for r in rows), "rows_not_objects_to_look_at": not_objects_doubted}


VTEST_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
VTEST_MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"


def vtest(work: Path) -> Path:
    """OpenCV's vtest.avi in `work`, taken from Debian's opencv-doc package the first time."""
    path = work / "vtest.avi"
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, check=True)
            deb = next(Path(tmp).glob("opencv-doc_*.deb"))
            subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{tmp}' '{VTEST_MEMBER}'", shell=True,
                           check=True)
            os.replace(Path(tmp) / VTEST_MEMBER, path)
    if sha256_file(path) != VTEST_SHA256:
        raise SystemExit(f"{path}: not the vtest.avi this benchmark knows (SHA-256 {VTEST_SHA256})")
    return path


def measure_untruthed(outdir: Path, stem: str) -> dict:
    """What can be counted without truth: rows, tracks, rows to look at, rows per minute."""
    with Plan(plan_path(outdir, stem)) as plan:
        rows = plan.groups()
        minutes = plan.frame_count / (plan.video.get("fps") or 30.0) / 60
        return {"clip": stem, "frames": plan.frame_count, "tracks": len(plan.tracks()), "rows": len(rows),
                "rows_per_minute": round(len(rows) / minutes, 1), "rows_to_look_at": sum(bool(r.doubts) for r in rows),
                "rows_joined_by_look": sum(bool(r.looked) for r in rows),
                "rows_by_class": dict(Counter(CLASS_NAMES[r.cls] for r in rows))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    ap.add_argument("--clips", type=int, default=3, help="clips per class")
    ap.add_argument("--frames", type=int, default=150, help="frames per clip")
    ap.add_argument("--classes", default="faces,plates")
    ap.add_argument("--work", type=Path, default=Path("/tmp/redact-review-bench"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "review_rows.json")
    ap.add_argument("--vtest", action="store_true", help="also OpenCV's vtest.avi (from Debian's opencv-doc)")
    args = ap.parse_args()
    redactor = Redactor(RedactOptions(device="cpu", index_transcripts=False))
    results: dict = {"config": {"seeds": args.seeds, "clips": args.clips, "frames": args.frames,
                                "iou": IOU, "size": [1280, 720]}, "clips": [], "total": {}}
    for kind in args.classes.split(","):
        photos = load_photos(kind)
        for seed in args.seeds:
            for spec in clip_specs(kind, args.clips, args.frames, 1280, 720, seed):
                clip = make_clip(spec, photos, args.work / "clips")
                outdir = args.work / "out"
                start = time.perf_counter()
                redactor.run(clip.video, outdir, stem=spec.name)
                row = {"kind": kind, **measure(clip, outdir), "run_s": round(time.perf_counter() - start, 1)}
                results["clips"].append(row)
                print(row, flush=True)
    if args.vtest:
        start = time.perf_counter()
        redactor.run(vtest(args.work), args.work / "out", stem="vtest")
        results["vtest"] = {**measure_untruthed(args.work / "out", "vtest"), "run_s": round(time.perf_counter() - start, 1)}
        print(results["vtest"], flush=True)
    for kind in {c["kind"] for c in results["clips"]}:
        clips = [c for c in results["clips"] if c["kind"] == kind]
        total = {k: sum(c[k] for c in clips) for k in ("frames", "objects", "rows", "objects_split",
                                                        "rows_joining_objects", "rows_not_objects", "rows_other_class",
                                                        "rows_to_look_at", "rows_not_objects_to_look_at")}
        total["rows_per_object"] = round(total["rows"] / max(1, total["objects"]), 2)
        total["rows_per_minute"] = round(total["rows"] / (total["frames"] / 30.0) * 60, 1)
        results["total"][kind] = total
    results["config"]["vtest"] = args.vtest
    write_result(args.out, results, __file__)
    print(results["total"])


if __name__ == "__main__":
    main()
