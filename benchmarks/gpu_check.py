"""CUDA path vs CPU path on the same real clip: share of CPU boxes matched by a CUDA box at IoU >= 0.9.

Run on a machine with a GPU (the device tool): both paths use the same detection stride so only the runtime
differs (onnxruntime fp32 on CPU, torch fp16 on CUDA).

    .venv/bin/python -m benchmarks.gpu_check [CLIP ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torchvision

from redact.pipeline import RedactOptions, Redactor
from redact.track import Smoother
from redact.video import read_frames

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"


def boxes_per_frame(device: str, clip: Path) -> tuple[list, float]:
    redactor = Redactor(RedactOptions(device=device, detect_every=1))
    start = time.perf_counter()
    frames = [(f.index, b) for f, b in redactor.frames_with_boxes(read_frames(clip), Smoother(redactor.track_policy))]
    return frames, len(frames) / (time.perf_counter() - start)


def agreement(cpu: list, gpu: list, iou: float = 0.9) -> float:
    matched = total = 0
    for (_, a), (_, b) in zip(cpu, gpu, strict=True):
        total += len(a)
        if len(a) and len(b):
            ious = torchvision.ops.box_iou(torch.from_numpy(a.xyxy), torch.from_numpy(b.xyxy))
            matched += int((ious.max(dim=1).values >= iou).sum())
    return matched / max(1, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", type=Path, default=sorted((EVALDATA / "video/grid").glob("*.mpg"))[:3])
    args = parser.parse_args()
    rows = []
    for clip in args.clips:
        cpu, cpu_fps = boxes_per_frame("cpu", clip)
        gpu, gpu_fps = boxes_per_frame("cuda", clip)
        rows.append({"clip": clip.name, "frames": len(cpu), "cpu_boxes": sum(len(b) for _, b in cpu),
                     "gpu_boxes": sum(len(b) for _, b in gpu), "agreement_iou90": round(agreement(cpu, gpu), 4),
                     "cpu_fps": round(cpu_fps, 1), "gpu_fps": round(gpu_fps, 1)})
        print(json.dumps(rows[-1]))
    print(json.dumps({"device": torch.cuda.get_device_name(0), "min_agreement": min(r["agreement_iou90"] for r in rows)}))


if __name__ == "__main__":
    main()
