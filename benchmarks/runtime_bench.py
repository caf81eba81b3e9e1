"""CPU runtime levers for the detectors, each alone: time per 720p frame and recall on evaldata, same run.

For CenterFace (720p at the default 1.5x) and each default plate model (YOLOv8n at 1280), on the same graphs:
- onnxruntime, CPU provider, fp32 (what `redact run` used before this benchmark);
- OpenVINO in fp32, and in bf16 where the CPU has bfloat16 arithmetic (AVX512-BF16, AMX);
- int8: onnxruntime's static post-training quantization (QDQ, per-channel weights, MinMax calibration), run by
  onnxruntime and by OpenVINO. Calibrated on the photos that are NOT scored: faces on evaldata's facemask_cc0
  set, plates on openalpr_eu; recall and precision are measured on dlib_pascal faces and openalpr_us plates.
  For the YOLO plate models also with their box decoding left in float ("int8 float head", `decode_head`).
Time: median of --reps runs on one real photo laid on a 1280x720 canvas, after a warm-up, one thread of work
(the runtime uses every core). Recall: as benchmarks/detector_eval.py (IoU >= 0.3, one-to-one).

A detector alone is not the pipeline: decoding, tracking and encoding share the cores. With --clips (a folder of
the leak benchmark's clips, e.g. /tmp/redact-bench/clips after a `leak_bench.py` run), the face clips are also
redacted end to end at the defaults, CenterFace in OpenVINO's default precision and in int8 by turns, --e2e-reps
times each (frames/s without model load).

    REDACT_HOME=~/.cache/redact .venv/bin/python -m benchmarks.runtime_bench [--reps 7] \
        [--clips /tmp/redact-bench/clips] [--out benchmarks/results/runtime.json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.detector_eval import EVALDATA, load_gt, match
from benchmarks.provenance import write_result
from redact.detect import (
    CenterFaceDetector,
    OnnxGraph,
    YoloPlateDetector,
    _dynamic_centerface,
    cpu_facts,
    onnx_export,
    openvino_precision,
)
from redact.models import resolve
from redact.pipeline import RedactOptions, plate_models


def canvas(image: np.ndarray, w: int = 1280, h: int = 720) -> np.ndarray:
    """`image` fitted into a grey 1280x720 frame: a 720p frame's cost with real content."""
    out = np.full((h, w, 3), 114, np.uint8)
    r = min(w / image.shape[1], h / image.shape[0])
    small = cv2.resize(image, (int(image.shape[1] * r), int(image.shape[0] * r)), interpolation=cv2.INTER_AREA)
    out[:small.shape[0], :small.shape[1]] = small
    return out


def decode_head(model) -> list[str]:
    """The nodes of a YOLOv8 graph's box decoding (its last module, `/model.N/`, but for the convolution branches
    `cv2`/`cv3`): its output concatenates pixel boxes and 0-1 scores, which one 8-bit scale cannot hold."""
    import re

    last = max(int(m.group(1)) for n in model.graph.node if (m := re.match(r"/model\.(\d+)/", n.name)))
    return [n.name for n in model.graph.node
            if n.name.startswith(f"/model.{last}/") and not re.match(rf"/model\.{last}/cv[23]\.", n.name)]


def quantize(graph: Path, blobs: list[np.ndarray], out: Path, float_head: bool = False) -> Path:
    """Static int8 QDQ quantization of `graph`, calibrated on `blobs` (the network's own inputs); with
    `float_head`, a YOLO graph's box decoding stays in float (`decode_head`)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(graph))
    if model.opset_import[0].version < 13:  # per-channel QDQ needs opset 13 (CenterFace is opset 9)
        model = version_converter.convert_version(model, 13)
    source = out.with_suffix(".fp32.onnx")
    onnx.save(model, str(source))
    name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.blobs = iter(blobs)

        def get_next(self) -> dict | None:
            blob = next(self.blobs, None)
            return None if blob is None else {name: blob}

    quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=decode_head(model) if float_head else None)
    return out


def with_graph(detector, graph: OnnxGraph):
    """`detector` running `graph` instead of the one it loaded (same pre- and post-processing)."""
    if isinstance(detector, CenterFaceDetector):
        detector.graph = graph
    else:
        detector.net = lambda x: graph(x.numpy())
    return detector


def score(detector, folder: Path, names: list[str], gt: dict) -> dict:
    tp = n_gt = n_det = 0
    for name in names:
        dets = detector([cv2.imread(str(folder / name))])[0]
        tp += match(gt[name], dets.xyxy, dets.score)
        n_gt += len(gt[name])
        n_det += len(dets)
    return {"objects": n_gt, "recall": round(tp / n_gt, 4), "precision": round(tp / max(1, n_det), 4)}


def timing(detector, frame: np.ndarray, reps: int) -> float:
    detector([frame])
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        detector([frame])
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def end_to_end(clips: list[Path], int8: Path, reps: int, work: Path) -> dict:
    """Frames/s of the default pipeline on `clips` (video only, no audio) with CenterFace's own graph and with
    `int8`, taking turns `reps` times so that both see the same machine."""
    from redact.pipeline import Redactor

    if not clips:
        raise SystemExit("--clips: no faces-*.mp4 there (run benchmarks/leak_bench.py first)")
    redactor = Redactor(RedactOptions(device="cpu", audio=None))
    face = next(d for d in redactor.detectors if isinstance(d, CenterFaceDetector))  # its scales share one graph
    graphs = {"default": face.graph, "int8": OnnxGraph(int8, face.backend)}
    redactor.run(clips[0], work / "e2e")  # warm-up
    out: dict = {"clips": len(clips), "runtime": face.backend, "fps": {k: [] for k in graphs}}
    for _ in range(reps):
        for name, graph in graphs.items():
            for d in redactor.detectors:
                if isinstance(d, CenterFaceDetector):
                    d.graph = graph
            start, frames = time.perf_counter(), sum(redactor.run(c, work / "e2e").frames for c in clips)
            out["fps"][name].append(round(frames / (time.perf_counter() - start), 2))
            print("end to end", name, out["fps"][name][-1], "frames/s", flush=True)
    out["ratio"] = round(statistics.median(out["fps"]["int8"]) / statistics.median(out["fps"]["default"]), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calibration", type=int, default=16, help="calibration photos per model")
    parser.add_argument("--clips", type=Path, help="leak benchmark clips: also CenterFace int8 end to end")
    parser.add_argument("--e2e-reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/runtime.json"))
    args = parser.parse_args()
    defaults = RedactOptions()
    work = Path(tempfile.mkdtemp(prefix="runtime-bench-"))
    bf16 = openvino_precision() == "bf16"
    variants = [("onnxruntime", "fp32"), ("openvino", "f32"), *([("openvino", "bf16")] if bf16 else []),
                ("onnxruntime", "int8"), ("openvino", "int8"), ("onnxruntime", "int8 float head"),
                ("openvino", "int8 float head")]
    results: dict = {"machine": {"platform": platform.platform(), **cpu_facts()}, "models": {}}

    faces_gt, plates_gt = load_gt(EVALDATA / "faces"), load_gt(EVALDATA / "plates")
    jobs = [("centerface", EVALDATA / "faces", faces_gt, "facemask", "dlib_pascal"),
            *[(m, EVALDATA / "plates", plates_gt, "openalpr_eu", "openalpr_us") for m in plate_models(defaults.plate_model)]]
    for model, folder, gt, calibrate_on, scored_on in jobs:
        task = "faces" if model == "centerface" else "plates"
        path, digest, _ = resolve(model, task)
        if task == "faces":
            graph = work / "centerface.onnx"
            graph.write_bytes(_dynamic_centerface(path))
        else:
            graph = onnx_export(path, digest, defaults.plate_imgsz)

        def make(rt: str, path: Path = path, digest: str = digest, task: str = task):
            if task == "faces":
                return CenterFaceDetector(path, digest, threshold=defaults.face_threshold, scale=defaults.face_scale,
                                          backend=rt)
            return YoloPlateDetector(path, digest, threshold=defaults.plate_threshold, imgsz=defaults.plate_imgsz,
                                     backend=rt)
        names = sorted(k for k in gt if k.startswith(scored_on))
        calibration = sorted(k for k in gt if k.startswith(calibrate_on))[:args.calibration]
        frame = canvas(cv2.imread(str(folder / names[0])))
        reference = make("onnxruntime")
        if task == "faces":
            blobs = [reference._blob([canvas(cv2.imread(str(folder / n)))])[0] for n in calibration]
        else:
            blobs = [reference.letterbox(torch.from_numpy(canvas(cv2.imread(str(folder / n)))[None]),
                                         defaults.plate_imgsz)[0].numpy() for n in calibration]
        start = time.perf_counter()
        int8 = {"int8": quantize(graph, blobs, work / f"{model}.int8.onnx")}
        rows = {"quantize_s": round(time.perf_counter() - start, 1)}
        if task == "plates":
            int8["int8 float head"] = quantize(graph, blobs, work / f"{model}.int8-float-head.onnx", float_head=True)
        for runtime, precision in variants:
            if precision not in int8 and precision.startswith("int8"):
                continue  # CenterFace has no box decoding in its graph
            detector = make(runtime)
            if precision in int8:
                with_graph(detector, OnnxGraph(int8[precision], runtime))  # OpenVINO: int8 layers, the rest as it picks
            elif runtime == "openvino":
                with_graph(detector, OnnxGraph(graph if task == "plates" else graph.read_bytes(), runtime, precision))
            row = {"ms_per_720p_frame": timing(detector, frame, args.reps), **score(detector, folder, names, gt)}
            rows[f"{runtime} {precision}"] = row
            print(model, runtime, precision, row, flush=True)
        base = rows["onnxruntime fp32"]["ms_per_720p_frame"]
        for row in rows.values():
            if isinstance(row, dict):
                row["speedup"] = round(base / row["ms_per_720p_frame"], 2)
        results["models"][model] = {"scored_on": scored_on, "calibrated_on": calibrate_on, **rows}
        if task == "faces" and args.clips:
            results["centerface_end_to_end"] = end_to_end(sorted(args.clips.glob("faces-*.mp4")), int8["int8"],
                                                          args.e2e_reps, work)

    lines = ["| model | runtime | ms / 720p frame | speed-up | recall | precision |", "|---|---|---|---|---|---|"]
    for model, rows in results["models"].items():
        for key, row in rows.items():
            if isinstance(row, dict):
                lines.append(f"| {model} | {key} | {row['ms_per_720p_frame']} | {row['speedup']}x | {row['recall']:.3f} "
                             f"| {row['precision']:.3f} |")
    results["table_markdown"] = "\n".join(lines)
    print(results["table_markdown"])
    write_result(args.out, results, __file__, indent=2)


if __name__ == "__main__":
    main()
