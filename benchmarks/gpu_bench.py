"""GPU throughput of one node, all figures from the same run: the encoder's ceiling, the GPU stage, one file and
several files end to end, and whether the GPU path finds the boxes the CPU path finds.

The clip is 1080p30 with real faces and plates: a virtual camera filming annotated photos from
../shared/evaldata (benchmarks/synth.py, as `make demo` does at 720p), so the GPU has real detections to track
and redact. Keys of the last line (one JSON object):

    encode_only_fps        libx264 at the pipeline's settings (VideoWriter, CRF 20 veryfast), frames in memory
    gpu_stage_fps          upload + both detectors + camera motion + tracking + redaction + copy back; no decode
                           or encode (frames in memory), torch stage batched as the pipeline runs it
    single_file_fps        `Redactor.run` on the clip, end to end (decode, GPU stage, encode, audit log)
    multi_encode_only_fps  n_files encoder processes at once, frames in memory: the node's encode ceiling
    multi_file_fps         `Redactor.run_many` on n_files copies, --jobs n_files: one process, shared models
    cpu_gpu_box_agreement  share of CPU-path boxes (onnxruntime) matched by a GPU-path box at IoU >= 0.9, first
                           `--agree-frames` frames
    device, n_files

Beside them (in --out): the same agreement on two real GRID clips (the core issue's CUDA check), the ratios
the targets are set on, and how long the run took.

Before it, a profile: each detector alone on batches already on the GPU, camera motion alone, decoding on the
CPU and on NVDEC (`--decoder nvdec`), and the GPU memory each stream holds (peak allocated during one file, and
during n_files minus the models).

Here, once (copies the photos, the verified models and the wheels the device lacks into folders that travel):
    .venv/bin/python -m benchmarks.gpu_bench --prepare
On the device (the `device` tool's run; carry .whl and .devicedata), under 5 minutes:
    python3 -m benchmarks.gpu_bench --wheels .whl --data .devicedata --out $OUT/gpu.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.provenance import write_result

ROOT = Path(__file__).resolve().parents[1]
EVALDATA = ROOT.parent / "shared" / "evaldata"
# what the device image lacks (KINDS.md); torch, torchvision, onnx, onnxruntime, opencv, numpy, tqdm are there
WHEELS = ("av==18.1.0", "ultralytics==8.4.190", "ultralytics-thop==2.2.3", "onnx2torch==1.5.15", "lap==0.5.13")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
MODELS = ("centerface", "plate-mahdi", "plate-fastanpr")  # the default models (RedactOptions)
N_PHOTOS = 12  # of each kind, as benchmarks/make_demo.py
GRID_CLIPS = ("bbaf2n.mpg", "lbax4n.mpg")  # real footage for the CPU/GPU agreement of the core issue


def prepare(data: Path, wheels: Path) -> None:
    """Photos (with their gt.csv rows) and verified models into `data`, wheels for Python 3.12 into `wheels`.
    The CPU path's ONNX export of the plate model is made there (12 MB more would pass the 64 MiB a call carries)."""
    from redact.models import get_spec

    for kind in ("faces", "plates"):
        with open(EVALDATA / kind / "gt.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        keep = list(dict.fromkeys(r["image"] for r in rows))[:N_PHOTOS]
        out = data / "evaldata" / kind
        for key in keep:
            (out / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(EVALDATA / kind / key, out / key)
        with open(out / "gt.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if r["image"] in keep)
    (data / "video").mkdir(parents=True, exist_ok=True)
    for name in GRID_CLIPS:
        shutil.copyfile(EVALDATA / "video" / "grid" / name, data / "video" / name)
    shutil.rmtree(data / "home" / "derived", ignore_errors=True)  # a CPU run's ONNX exports: too big to carry
    for model in MODELS:
        shutil.copytree(get_spec(model).directory, data / "home" / "models" / model, dirs_exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS),
                    "-d", str(wheels), *WHEELS], check=True)
    print(f"ready: {data} and {wheels}; carry both, run with --wheels {wheels} --data {data}")


def install(wheels: Path) -> None:
    """Install the carried wheels into a private folder and put it first on sys.path."""
    target = Path(tempfile.gettempdir()) / "redact-site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--upgrade", "--target", str(target), *map(str, sorted(wheels.glob("*.whl")))], check=True)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))


def build_clip(work: Path, frames: int) -> Path:
    from benchmarks.synth import ClipSpec, load_photos, make_clip

    photos = [p for pair in zip(load_photos("plates")[:N_PHOTOS], load_photos("faces")[:N_PHOTOS], strict=True)
              for p in pair]
    spec = ClipSpec(kind="faces", index=0, seed=7, frames=frames, width=1920, height=1080, base=18.0,
                    zoom_ratio=2.0, zoom_mode="inout", max_tiles=24, pan=0.35, crf=20)
    return make_clip(spec, photos, work).video


def timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _encode_worker(args: tuple) -> tuple[float, float, int]:
    """One encoder process of the node-ceiling measurement: decode (not timed), wait for the others, encode."""
    clip, out, barrier, crf, preset, encoder = args
    from benchmarks.encode_bench import timed_write
    from redact.video import probe, read_frames

    info = probe(clip, count=True)
    frames = list(read_frames(clip))
    barrier.wait()
    start = time.time()
    timed_write(frames, info, preset, crf, Path(out), encoder)
    return start, time.time(), len(frames)


def multi_encode(clip: Path, n: int, work: Path, crf: int, preset: str, encoder: str) -> float:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(n)
        with ctx.Pool(n) as pool:
            runs = pool.map(_encode_worker, [(clip, work / f"enc{i}.mp4", barrier, crf, preset, encoder) for i in range(n)])
    return sum(r[2] for r in runs) / (max(r[1] for r in runs) - min(r[0] for r in runs))


def gpu_stage(redactor, frames: list) -> float:
    """Frames/s through upload, detection, motion, tracking, redaction and the copy back, frames in memory."""
    from redact.track import Smoother

    def run() -> int:
        n = 0
        for frame, boxes in redactor.frames_with_boxes(iter(frames), Smoother(redactor.track_policy)):
            redactor.stage.finish(frame, boxes, redactor.redaction_policy)()
            n += 1
        return n

    n, seconds = timed(run)
    return n / seconds


def profile(redactor, frames: list, batch: int, reps: int = 4) -> dict:
    """Each part alone: detectors on batches already on the device, camera motion on the CPU threads."""
    import torch

    from redact.track import CameraPath

    pixels = torch.stack([torch.from_numpy(f.image) for f in frames[:batch]]).to(redactor.device)
    out = {}
    for detector in redactor.detectors:
        detector.detect_tensor(pixels)
        start = time.perf_counter()
        for _ in range(reps):
            detector.detect_tensor(pixels)  # returns numpy boxes: the device is done when it returns
        # keyed by model and scale: the defaults have two YoloPlateDetectors, and CenterFace at two scales
        scale = f"@{detector.scale}" if hasattr(detector, "scale") else ""
        out[f"{detector.weights.parent.name}{scale}_fps"] = round(reps * len(pixels) / (time.perf_counter() - start), 1)
    _, seconds = timed(lambda: list(CameraPath.measure(iter(frames), redactor.motion_threads)))
    out["camera_motion_fps"] = round(len(frames) / seconds, 1)
    out["motion_threads"] = redactor.motion_threads
    return out


def decode_fps(clip: Path, hwaccel: str | None) -> float | str:
    """Frames/s of decoding to BGR host frames (as the pipeline reads them), on the CPU or NVDEC."""
    from redact.video import read_frames

    try:
        n, seconds = timed(lambda: sum(1 for _ in read_frames(clip, hwaccel=hwaccel)))
    except Exception as e:  # noqa: BLE001 - a decoder that cannot run here is a finding, not the end of the run
        return f"failed: {type(e).__name__}: {e}"
    return round(n / seconds, 1)


def box_agreement(reference: list, other: list, iou: float = 0.9) -> float:
    """Share of `reference`'s boxes (per frame: (index, Detections)) that a box of `other` matches at >= `iou`."""
    import torch
    import torchvision

    matched = total = 0
    for (_, a), (_, b) in zip(reference, other, strict=True):
        total += len(a)
        if len(a) and len(b):
            ious = torchvision.ops.box_iou(torch.from_numpy(a.xyxy), torch.from_numpy(b.xyxy))
            matched += int((ious.max(dim=1).values >= iou).sum())
    return matched / max(1, total)


def agreement(clip: Path, frames: int, options) -> float:
    """`box_agreement` of the torch stage on `options.device` with the CPU path (onnxruntime), on the first
    `frames` frames of `clip`: the same boxes, tracks and smoothing, only the runtime differs."""
    from dataclasses import replace

    from redact.pipeline import Redactor
    from redact.track import Smoother
    from redact.video import read_frames

    per_path = []
    for runtime in ("onnxruntime", "torch"):
        r = Redactor(replace(options, device="cpu" if runtime == "onnxruntime" else options.device, runtime=runtime))
        head = (f for f in read_frames(clip) if f.index < frames)
        per_path.append([(f.index, b) for f, b in r.frames_with_boxes(head, Smoother(r.track_policy))])
    return box_agreement(*per_path)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="here: fill --data and --wheels, then stop")
    parser.add_argument("--data", type=Path, default=ROOT / ".devicedata")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--n-files", type=int, default=4)
    parser.add_argument("--agree-frames", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "redact-gpu-bench")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script (torch stage on CPU)")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(args.data, args.wheels)
        return None
    if args.wheels.is_dir() and any(args.wheels.glob("*.whl")):
        install(args.wheels)
    if (args.data / "home").is_dir():
        os.environ["REDACT_HOME"] = str((args.data / "home").resolve())
    if (args.data / "evaldata").is_dir():
        os.environ["REDACT_EVALDATA"] = str((args.data / "evaldata").resolve())
    import torch

    from benchmarks.encode_bench import timed_write
    from redact.pipeline import RedactOptions, Redactor
    from redact.video import probe, read_frames

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clip = build_clip(args.work, args.frames)
    info = probe(clip, count=True)
    frames = list(read_frames(clip))
    print(f"clip {clip.name}: {len(frames)} frames {info.width}x{info.height}, built in {time.perf_counter() - t0:.0f} s",
          flush=True)
    cuda = args.device == "cuda"
    options = RedactOptions(device=args.device, runtime="torch", audio=None, index_transcripts=False)
    peak = torch.cuda.max_memory_allocated if cuda else (lambda: 0)
    result: dict = {}
    redactor = Redactor(options)  # its encoder: libx264, or NVENC where the GPU has one
    seconds = timed_write(frames, info, options.preset, options.crf, args.work / "enc.mp4", redactor.encoder)
    result["encode_only_fps"] = round(len(frames) / seconds, 1)
    gpu_stage(redactor, frames[:48])  # warm-up: cuDNN picks its kernels on the first batches
    result["profile"] = profile(redactor, frames, redactor.batch)
    result["profile"]["decode_fps"] = {"cpu": decode_fps(clip, None), "nvdec": decode_fps(clip, "cuda" if cuda else None)}
    base = torch.cuda.memory_allocated() if cuda else 0
    result["gpu_stage_fps"] = round(gpu_stage(redactor, frames), 1)
    out = args.work / "out"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    run = redactor.run(clip, out)
    result["single_file_fps"] = round(run.frames / run.audit["stats"]["elapsed_s"], 1)
    result["profile"]["gpu_mem_one_stream_mb"] = round((peak() - base) / 2**20)
    result["multi_encode_only_fps"] = round(multi_encode(clip, args.n_files, args.work, options.crf, options.preset,
                                                         redactor.encoder), 1)
    copies = [Path(shutil.copyfile(clip, args.work / f"copy{i}.mp4")) for i in range(args.n_files)]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    done = [r for _, r in redactor.run_many(copies, out / "multi", jobs=args.n_files)]
    seconds = time.perf_counter() - start
    failed = [str(r) for r in done if not hasattr(r, "frames")]
    if failed:
        raise SystemExit(f"multi-file run failed: {failed}")
    result["multi_file_fps"] = round(sum(r.frames for r in done) / seconds, 1)
    result["profile"]["gpu_mem_per_stream_mb"] = round((peak() - base) / 2**20 / args.n_files)
    result["cpu_gpu_box_agreement"] = round(agreement(clip, args.agree_frames, options), 4)
    result["real_clip_agreement"] = {p.name: round(agreement(p, 75, options), 4)
                                     for p in sorted((args.data / "video").glob("*.mpg"))}
    result["device"] = torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)"
    result["encoder"] = redactor.encoder
    result["n_files"] = args.n_files
    result["ratios"] = {"single_vs_encode": round(result["single_file_fps"] / result["encode_only_fps"], 3),
                        "multi_vs_multi_encode": round(result["multi_file_fps"] / result["multi_encode_only_fps"], 3)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({k: v for k, v in result.items() if k in ("profile", "ratios", "real_clip_agreement", "seconds")}),
          flush=True)
    if args.out:
        write_result(args.out, result, __file__, argv)
    keys = ("encode_only_fps", "gpu_stage_fps", "single_file_fps", "multi_encode_only_fps", "multi_file_fps",
            "cpu_gpu_box_agreement", "device", "n_files")
    print(json.dumps({k: result[k] for k in keys}))
    return result


if __name__ == "__main__":
    main()
