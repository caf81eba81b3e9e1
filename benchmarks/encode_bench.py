"""Encoder ceiling: libx264 presets (speed vs size at equal quality, 1080p) and the share of GOPs that carry a redaction.

Part 1 - presets. A 1920x1080 30 fps clip of real face and plate photos (benchmarks/synth.py, the make_demo layout
at 1080p) is decoded into memory once; its frames are then encoded with the pipeline's own writer
(`redact.video.VideoWriter`, libx264, yuv420p, +faststart MP4) at each preset. Only the write+finish loop is timed
(it includes the BGR -> YUV conversion, as in the pipeline), best of --repeat runs. Quality is the PSNR of the luma
(Y) plane of the decoded output against the Y plane of the source frames converted to yuv420p by the same swscale
path the writer uses, so it measures the encoder's loss alone; it is the mean of per-frame PSNRs. The reference is
the pipeline default, veryfast at CRF 20. For every other preset the CRF is stepped by 1 from 20 (within
--crf-range) until two CRFs bracket the reference PSNR; fps (linear) and size (log-linear) are interpolated at the
reference PSNR between them. Encode fps on this machine's cores is far below a 16-core GPU node's; the ratios to
veryfast are what carry over.

Part 2 - GOPs with a redaction. Copying every GOP without a redaction and re-encoding only the others would cut
encode work to the share of frames that lie in GOPs with a redaction. For each clip: the keyframes of the input
(decoded frames' key_frame, indexed like `read_frames`), the frames the engine redacts (the real `Redactor` on CPU,
one loaded model set for all clips), and the share of GOPs / frames in GOPs that carry a redaction, for the input's
own GOPs and for fixed GOP lengths of 30, 60 and 250 frames (a copy re-encoded with that keyint). Clips: the 11
GRID clips (../shared/evaldata/video/grid, talking faces: a face in every frame), the 1080p clip of part 1, and a
720p synthetic street clip with only two plate photos, panned past, so redactions are sparse.

Command (from the project root; about 10 minutes on 2 cores, most of it the engine on CPU in part 2):
    .venv/bin/python -m benchmarks.encode_bench [--frames 90] [--presets ...] [--crf-range 16 26] [--repeat 2]
        [--work /tmp/redact-encode-bench] [--out benchmarks/results/encode.json]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np

from benchmarks.provenance import write_result
from benchmarks.synth import ClipSpec, load_photos, make_clip
from redact.video import Frame, VideoInfo, VideoWriter, probe, read_frames

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT.parent / "shared" / "evaldata" / "video" / "grid"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
REF_PRESET, REF_CRF = "veryfast", 20  # the pipeline's defaults (RedactOptions)
KEYINTS = (30, 60, 250)


# ---------------------------------------------------------------------------------------------- clips


def bench_spec(frames: int) -> ClipSpec:
    """The 1080p benchmark clip: the make_demo street layout (faces and plates interleaved) at 1080p, CRF 18."""
    return ClipSpec(kind="faces", index=0, seed=7, frames=frames, width=1920, height=1080, base=18.0, zoom_ratio=2.0,
                    zoom_mode="inout", max_tiles=24, pan=0.35, crf=18)


def sparse_spec() -> ClipSpec:
    """Two plate photos on a wide canvas, panned past: plates are in view in about a third of the frames (the end)."""
    return ClipSpec(kind="plates", index=1, seed=8, frames=150, width=1280, height=720, base=20.0, zoom_ratio=1.5,
                    zoom_mode="in", max_tiles=2, pan=2.0, crf=23)


def build_clips(work: Path, frames: int) -> dict[str, Path]:
    faces, plates = load_photos("faces"), load_photos("plates")
    mixed = [p for pair in zip(plates[:12], faces[:12], strict=True) for p in pair]
    return {"bench-1080p": make_clip(bench_spec(frames), mixed, work).video,
            "sparse-plates-720p": make_clip(sparse_spec(), plates[:12], work).video}


# ---------------------------------------------------------------------------------------------- part 1


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a yuv420p frame, without the line padding."""
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]


def source_luma(frames: list[Frame]) -> list[np.ndarray]:
    """Y planes of the source frames as the writer's encoder sees them (bgr24 -> yuv420p through swscale)."""
    return [luma(av.VideoFrame.from_ndarray(f.image, format="bgr24").reformat(format="yuv420p")).copy() for f in frames]


def decoded_luma(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            yield luma(frame if frame.format.name == "yuv420p" else frame.reformat(format="yuv420p"))


def psnr_y(reference: list[np.ndarray], path: Path) -> float:
    """Mean over frames of the per-frame Y PSNR (dB) of the video at `path` against `reference`."""
    values = []
    for ref, out in zip(reference, decoded_luma(path), strict=True):
        mse = float(np.mean((ref.astype(np.int16) - out.astype(np.int16)) ** 2))
        values.append(100.0 if mse == 0 else 10 * math.log10(255**2 / mse))
    return float(np.mean(values))


def timed_write(frames: list[Frame], info: VideoInfo, preset: str, crf: int, out: Path,
                encoder: str = "libx264") -> float:
    """Encode the in-memory frames with the pipeline's writer; time only the write+finish loop."""
    writer = VideoWriter(out, info, crf=crf, preset=preset, encoder=encoder)
    start = time.perf_counter()
    for f in frames:
        writer.write(f.image, f.pts)
    writer.finish()
    seconds = time.perf_counter() - start
    writer.publish()
    return seconds


def encode(frames: list[Frame], info: VideoInfo, reference: list[np.ndarray], preset: str, crf: int, out: Path,
           repeat: int) -> dict:
    """Best (fastest) of `repeat` timed encodes (other load on the machine only ever slows one down), then size and PSNR."""
    times = [timed_write(frames, info, preset, crf, out) for _ in range(repeat)]
    seconds = min(times)
    size = out.stat().st_size
    return {"preset": preset, "crf": crf, "seconds": round(seconds, 3), "all_seconds": [round(t, 3) for t in times],
            "fps": round(len(frames) / seconds, 2), "bytes": size,
            "kbit_s": round(size * 8 / 1000 / (len(frames) / info.fps), 1),
            "bits_per_frame": round(size * 8 / len(frames)), "psnr_y": round(psnr_y(reference, out), 3)}


def bracket(probe_at: Callable[[int], dict], target: float, start: int, lo: int, hi: int) -> dict[int, dict]:
    """Probe CRFs from `start`, one step at a time towards `target` PSNR, until two adjacent CRFs bracket it."""
    probes = {start: probe_at(start)}
    step = 1 if probes[start]["psnr_y"] > target else -1  # a higher CRF gives a lower PSNR
    crf = start
    while lo <= crf + step <= hi and (probes[crf]["psnr_y"] - target) * step > 0:
        crf += step
        probes[crf] = probe_at(crf)
    return probes


def at_quality(probes: dict[int, dict], target: float) -> dict:
    """fps (linear) and size (log-linear) interpolated at `target` PSNR between the two CRFs that bracket it."""
    crfs = sorted(probes)
    exact = [c for c in crfs if probes[c]["psnr_y"] == target]
    if exact:
        crfs = [exact[0], exact[0]]
    for a, b in zip(crfs, crfs[1:], strict=False):
        pa, pb = probes[a]["psnr_y"], probes[b]["psnr_y"]
        if min(pa, pb) <= target <= max(pa, pb):
            t = 0.0 if pa == pb else (target - pa) / (pb - pa)
            size = math.exp((1 - t) * math.log(probes[a]["bytes"]) + t * math.log(probes[b]["bytes"]))
            fps = (1 - t) * probes[a]["fps"] + t * probes[b]["fps"]
            return {"crf": round(a + t * (b - a), 2), "fps": round(fps, 2), "bytes": round(size),
                    "kbit_s": round(size * probes[a]["kbit_s"] / probes[a]["bytes"], 1), "psnr_y": round(target, 3),
                    "bracketed": True}
    nearest = min(crfs, key=lambda c: abs(probes[c]["psnr_y"] - target))  # outside the CRF range: closest probe
    p = probes[nearest]
    return {"crf": nearest, "fps": p["fps"], "bytes": p["bytes"], "kbit_s": p["kbit_s"], "psnr_y": p["psnr_y"],
            "bracketed": False}


def preset_sweep(clip: Path, presets: list[str], crf_range: tuple[int, int], repeat: int, work: Path) -> dict:
    info = probe(clip, count=True)
    frames = list(read_frames(clip))
    reference = source_luma(frames)
    out = work / "encodes"
    out.mkdir(parents=True, exist_ok=True)

    def probe_at(preset: str) -> Callable[[int], dict]:
        def run(crf: int) -> dict:
            r = encode(frames, info, reference, preset, crf, out / f"{preset}-crf{crf}.mp4", repeat)
            print(f"  {preset:<10} crf {crf:>2}: {r['fps']:6.2f} fps  {r['kbit_s']:8.1f} kbit/s  Y-PSNR {r['psnr_y']:.2f} dB",
                  flush=True)
            return r
        return run

    ref = probe_at(REF_PRESET)(REF_CRF)
    rows = []
    for preset in presets:
        if preset == REF_PRESET:
            probes = {REF_CRF: ref}
        else:
            probes = bracket(probe_at(preset), ref["psnr_y"], REF_CRF, *crf_range)
        eq = at_quality(probes, ref["psnr_y"])
        eq.update(preset=preset, speed_vs_veryfast=round(eq["fps"] / ref["fps"], 2),
                  size_vs_veryfast=round(eq["bytes"] / ref["bytes"], 3))
        rows.append({"preset": preset, "equal_quality": eq, "probes": [probes[c] for c in sorted(probes)]})
    return {"clip": clip.name, "width": info.width, "height": info.height, "fps": info.fps, "frames": len(frames),
            "repeat": repeat,
            "reference": {"preset": REF_PRESET, "crf": REF_CRF, **{k: ref[k] for k in ("fps", "kbit_s", "psnr_y")}},
            "x264": x264_version(out / f"{REF_PRESET}-crf{REF_CRF}.mp4"), "presets": rows}


def x264_version(path: Path) -> dict:
    """The x264 core version and options libx264 wrote into the SEI of `path` (the reference encode)."""
    head = path.read_bytes()[:200_000]
    core = re.search(rb"x264 - (core [^-]*?) - H\.264", head)
    options = re.search(rb"options: ([ -~]+)", head)
    return {"version": core.group(1).decode().strip() if core else None,
            "options": options.group(1).decode() if options else None}


# ---------------------------------------------------------------------------------------------- part 2


def keyframes(path: Path) -> list[int]:
    """Indices (in presentation order, as `read_frames` numbers frames) of the input's keyframes."""
    with av.open(str(path)) as container:
        return [i for i, frame in enumerate(container.decode(container.streams.video[0])) if frame.key_frame]


def redacted_frames(redactor, path: Path) -> list[bool]:
    from redact.track import Smoother

    return [len(boxes) > 0 for _, boxes in redactor.frames_with_boxes(read_frames(path), Smoother(redactor.track_policy))]


def gop_counts(starts: list[int], redacted: list[bool]) -> dict:
    """GOPs [starts[i], starts[i+1]) and how many of them (and of their frames) hold a redacted frame."""
    n = len(redacted)
    bounds = sorted({0, *starts}) + [n]
    lengths = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    carry = [any(redacted[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return {"gops": len(lengths), "gops_redacted": sum(carry),
            "frames_in_redacted_gops": sum(length for length, c in zip(lengths, carry, strict=True) if c)}


def shares(counts: dict, frames: int) -> dict:
    return {**counts, "gop_share": round(counts["gops_redacted"] / counts["gops"], 3),
            "frame_share": round(counts["frames_in_redacted_gops"] / frames, 3)}


def gop_report(name: str, path: Path, redactor) -> dict:
    start = time.perf_counter()
    keys = keyframes(path)
    redacted = redacted_frames(redactor, path)
    n = len(redacted)
    layouts = {"input": gop_counts(keys, redacted)}
    for k in KEYINTS:
        layouts[f"keyint{k}"] = gop_counts(list(range(0, n, k)), redacted)
    row = {"clip": name, "frames": n, "redacted_frames": sum(redacted), "keyframes": keys,
           "layouts": {k: shares(v, n) for k, v in layouts.items()}, "seconds": round(time.perf_counter() - start, 1)}
    i = row["layouts"]["input"]
    print(f"  {name:<22} {n:>4} frames, {row['redacted_frames']:>4} redacted, input GOPs {i['gops_redacted']}/{i['gops']}"
          f" carry one ({row['seconds']} s)", flush=True)
    return row


def totals(rows: list[dict], name: str) -> dict:
    frames = sum(r["frames"] for r in rows)
    layouts = {}
    for key in rows[0]["layouts"]:
        summed = {k: sum(r["layouts"][key][k] for r in rows) for k in ("gops", "gops_redacted", "frames_in_redacted_gops")}
        layouts[key] = shares(summed, frames)
    return {"clip": name, "frames": frames, "redacted_frames": sum(r["redacted_frames"] for r in rows), "layouts": layouts}


def gop_shares(clips: dict[str, Path]) -> dict:
    from redact.pipeline import RedactOptions, Redactor

    redactor = Redactor(RedactOptions(device="cpu", audio=None, index_transcripts=False))
    grid = [gop_report(p.name, p, redactor) for p in sorted(GRID.glob("*.mpg"))]
    others = [gop_report(name, path, redactor) for name, path in clips.items()]
    return {"clips": grid + others, "grid_total": totals(grid, f"GRID total ({len(grid)} clips)")}


# ---------------------------------------------------------------------------------------------- report


def print_presets(sweep: dict) -> None:
    ref = sweep["reference"]
    print(f"\nPresets at equal quality (Y-PSNR {ref['psnr_y']:.2f} dB = {ref['preset']} CRF {ref['crf']}), "
          f"{sweep['width']}x{sweep['height']}, {sweep['frames']} frames, {os.cpu_count()} cores")
    print("| preset | CRF | fps | kbit/s | speed vs veryfast | size vs veryfast |")
    print("|---|---|---|---|---|---|")
    for row in sweep["presets"]:
        e = row["equal_quality"]
        mark = "" if e["bracketed"] else " (not bracketed)"
        print(f"| {e['preset']} | {e['crf']}{mark} | {e['fps']} | {e['kbit_s']} | {e['speed_vs_veryfast']}x "
              f"| {e['size_vs_veryfast']}x |")


def print_gops(gops: dict) -> None:
    print("\nShare of GOPs carrying a redaction (GOPs with one / all; share of frames in those GOPs)")
    heads = ["input", *(f"keyint{k}" for k in KEYINTS)]
    print("| clip | frames | redacted frames | input GOPs | " + " | ".join(f"{h}: frames to re-encode" for h in heads) + " |")
    print("|---|---|---|---|" + "---|" * len(heads))
    for row in [*gops["clips"], gops["grid_total"]]:
        lay = row["layouts"]
        cells = [f"{lay[h]['frame_share']:.0%} ({lay[h]['gops_redacted']}/{lay[h]['gops']} GOPs)" for h in heads]
        print(f"| {row['clip']} | {row['frames']} | {row['redacted_frames']} | {lay['input']['gops']} | "
              + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=90, help="frames of the 1080p clip")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--crf-range", type=int, nargs=2, default=(16, 26), metavar=("LO", "HI"))
    ap.add_argument("--repeat", type=int, default=2, help="timed encodes per preset and CRF; the fastest counts")
    ap.add_argument("--work", type=Path, default=Path("/tmp/redact-encode-bench"), help="clip cache and encodes")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "encode.json")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "pyav": av.__version__, "ffmpeg_libs": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
               "load_avg_start": os.getloadavg()}
    clips = build_clips(args.work, args.frames)
    print("Part 1: x264 presets", flush=True)
    sweep = preset_sweep(clips["bench-1080p"], args.presets, tuple(args.crf_range), args.repeat, args.work)
    machine["libx264"] = sweep.pop("x264")
    print("Part 2: GOPs carrying a redaction", flush=True)
    gops = gop_shares(clips)
    machine["load_avg_end"] = os.getloadavg()
    results = {"machine": machine, "psnr": "Y plane, mean of per-frame PSNR, vs the source converted to yuv420p",
               "presets": sweep, "gops": gops, "wall_s": round(time.perf_counter() - start, 1)}
    print_presets(sweep)
    print_gops(gops)
    write_result(args.out, results, __file__, argv)
    print(f"\n{args.out} written, {results['wall_s']} s")
    return results


if __name__ == "__main__":
    main()
