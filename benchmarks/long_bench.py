"""A long recording redacted in one pass and in segments (issue 30): speed, memory over time, and whether the
segmented run publishes what the single pass does.

    python -m benchmarks.long_bench [--minutes 60] [--size 1280x720] [--segment-minutes 5] [--jobs 2]
        [--kill 0.6] [--work /tmp/redact-long] [--out benchmarks/results/long.json]

The recording (kept in `--work`, never in the repository) is the leak benchmark's generated clips (benchmarks/synth:
real annotated faces and plates filmed by a moving, shaking camera, objects entering and leaving) end to end,
cycled to `--minutes`, re-encoded with a keyframe every 2 s as a body camera does, with LJSpeech's read speech
(evaldata) as its audio. Its ground truth is the clips' truth at their offsets.

Each run is `redact run` in a process of its own (solid fill, as the leak benchmark, so leaks can be scored), its
memory sampled every second (resident set of the process and of each worker process); per run:

- `single`: one pass (`--segment-minutes 0`); `split`: in segments, one process; `split_jobs`: in segments over
  `--jobs` worker processes; `ray_1` and `ray_n`: `redact batch --backend ray` on a local Ray instance, each
  segment a Ray task declaring all of this machine's CPUs (one at a time) or one CPU (as many at once as CPUs);
- `killed`: the split run killed (SIGKILL) once `--kill` of its segments are finished, then run again: how many
  segments the rerun reused, and whether its decoded frames equal the uninterrupted split run's (frame hashes).

Compared, split against single: frame count and timestamps, box-frames leaked (the leak benchmark's score per
clip: faces >= 20 px, plates >= 10 px), and every track the single pass has on both sides of a cut (same id on
frame c-1 and c): whether the split run's boxes there (IoU >= 0.5) carry one id too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import psutil

from benchmarks.leak_bench import luma, near_black, parse_size, score_frames, summarize
from benchmarks.provenance import ROOT, write_result
from benchmarks.synth import Clip, ClipTruth, clip_specs, load_photos, make_clip
from redact.plan import Plan, plan_path
from redact.video import frame_times, read_frames

EVALDATA = ROOT.parent / "shared" / "evaldata"
CLIP_FRAMES = 300  # 10 s per generated clip
GOP = 60  # a keyframe every 2 s at 30 fps


# ---------------------------------------------------------------------------------------------- the recording
def clips(work: Path, size: tuple[int, int], count: int = 12) -> list[Clip]:
    """Six face and six plate clips, alternating: two minutes of distinct footage, cycled (the first `count` of
    them: a shorter recording makes only those it shows)."""
    w, h = size
    faces, plates = (clip_specs(kind, 6, CLIP_FRAMES, w, h, seed=0) for kind in ("faces", "plates"))
    photos = {"faces": load_photos("faces"), "plates": load_photos("plates")}
    specs = [spec for pair in zip(faces, plates, strict=True) for spec in pair][:count]
    return [make_clip(spec, photos[spec.kind], work / "clips") for spec in specs]


def speech(seconds: float, rate: int = 16000) -> np.ndarray:
    """LJSpeech utterances one after another with a second between them, cycled to `seconds` (mono float32)."""
    wavs = sorted((EVALDATA / "speech/ljspeech/wavs").glob("*.wav"))
    pieces, total = [], 0
    while total < seconds * rate:
        for wav in wavs:
            with av.open(str(wav)) as c:
                resampler = av.AudioResampler("flt", "mono", rate)
                samples = np.concatenate([f.to_ndarray().reshape(-1) for frame in c.decode(audio=0)
                                          for f in resampler.resample(frame)])
            pieces += [samples, np.zeros(rate, np.float32)]
            total += len(samples) + rate
            if total >= seconds * rate:
                break
    return np.concatenate(pieces)[: int(seconds * rate)]


def recording(work: Path, minutes: float, size: tuple[int, int]) -> tuple[Path, list[tuple[Clip, int]]]:
    """The long recording and (clip, first frame) of each clip in it; made once per length and size."""
    frames = int(round(minutes * 60 * 30))
    parts = clips(work, size, min(12, -(-frames // CLIP_FRAMES)))
    layout = [(parts[k % len(parts)], k * CLIP_FRAMES) for k in range(-(-frames // CLIP_FRAMES))]
    path = work / f"long-{minutes:g}min-{size[0]}x{size[1]}.mp4"
    if path.exists():
        return path, layout
    tmp = path.with_name(f".{path.name}.partial.mp4")
    audio = speech(frames / 30)
    with av.open(str(tmp), "w") as out:
        video = out.add_stream("libx264", rate=30, options={"g": str(GOP), "keyint_min": str(GOP), "crf": "23",
                                                           "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        sound = out.add_stream("aac", rate=16000)
        sound.layout = "mono"
        done, said = 0, 0
        for clip, first in layout:
            for frame in read_frames(clip.video):
                if first + frame.index >= frames:
                    break
                vf = av.VideoFrame.from_ndarray(frame.image, format="bgr24")
                vf.pts = first + frame.index
                out.mux(video.encode(vf))
                done += 1
                while said < done / 30 * 16000:  # audio kept level with the video
                    af = av.AudioFrame.from_ndarray(audio[None, said : said + 1024], format="flt", layout="mono")
                    af.sample_rate, af.pts = 16000, said
                    out.mux(sound.encode(af))
                    said += 1024
        out.mux(video.encode(None))
        out.mux(sound.encode(None))
    os.replace(tmp, path)
    return path, layout


# ---------------------------------------------------------------------------------------------- runs
def run(name: str, video: Path, outdir: Path, args: list[str], kill_at: float | None = None,
        segments: int | None = None, batch: bool = False) -> dict:
    """`redact run` (`batch`: `redact batch` of the recording's folder) in a process of its own; its tree's resident
    memory sampled every second. With `kill_at`, SIGKILL once that share of the `segments` are finished."""
    what = ["batch", str(video.parent / "input")] if batch else ["run", str(video)]
    cmd = [sys.executable, "-m", "redact", *what, "-o", str(outdir), "--mode", "fill", "--device", "cpu",
           "--no-index-transcripts", *args]
    journal = outdir / f".{video.stem}.segments"
    if kill_at is not None or name != "resumed":
        shutil.rmtree(outdir, ignore_errors=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main = psutil.Process(proc.pid)
    rss: dict[int, list[tuple[float, float]]] = defaultdict(list)  # pid -> (seconds, MB)
    killed = None
    while proc.poll() is None:
        try:
            for p in [main, *main.children(recursive=True)]:
                rss[p.pid].append((time.monotonic() - start, p.memory_info().rss / 2**20))
        except psutil.Error:
            pass
        if kill_at is not None and segments and len(list(journal.glob("segment-*.boxes.npz"))) >= kill_at * segments:
            proc.send_signal(signal.SIGKILL)
            killed = len(list(journal.glob("segment-*.boxes.npz")))
        time.sleep(1.0)
    stderr = proc.stderr.read() if proc.stderr else ""
    wall = time.monotonic() - start
    if killed is None and proc.returncode != 0:
        raise RuntimeError(f"{name}: redact run failed ({proc.returncode}): {stderr[-2000:]}")
    out = {"wall_s": round(wall, 1), "returncode": proc.returncode, "memory": memory(rss, main.pid)}
    if killed is not None:
        return {**out, "killed_with_segments_done": killed}
    log = json.loads((outdir / f"{video.stem}.redaction.json").read_text())
    frames = log["stats"]["frames"]
    return {**out, "frames": frames, "fps": round(frames / wall, 3), "segments": log["stats"].get("segments")}


def memory(rss: dict[int, list[tuple[float, float]]], main: int) -> dict:
    """Per process (the main one, then workers by start): peak resident MB in each minute of the run, and its
    growth, the last full minute's peak against the second minute's (the first loads the models). Helper
    processes (multiprocessing's resource tracker) are left out."""
    out = {}
    workers = [p for p in rss if p != main and max(mb for _, mb in rss[p]) > 200]  # not the resource tracker
    for k, pid in enumerate([main, *sorted(workers, key=lambda p: rss[p][0][0])]):
        per_minute: dict[int, float] = {}
        for t, mb in rss[pid]:
            per_minute[int(t // 60)] = max(per_minute.get(int(t // 60), 0.0), mb)
        peaks = [round(per_minute[m]) for m in sorted(per_minute)]
        full = peaks[:-1] if len(peaks) > 2 else peaks  # the last minute is cut short
        growth = round(full[-1] / full[1] - 1, 3) if len(full) > 2 else None
        out["main" if pid == main else f"worker{k}"] = {"peak_mb_per_minute": peaks, "growth": growth}
    return out


# ---------------------------------------------------------------------------------------------- comparisons
def frame_hashes(video: Path) -> list[str]:
    return [hashlib.sha256(f.image.tobytes()).hexdigest()[:16] for f in read_frames(video)]


def leaks(recording_path: Path, layout: list[tuple[Clip, int]], frames: int, output: Path) -> dict:
    """The leak benchmark's score of the output, clip by clip at its offset (the last one as far as the recording
    goes), summed per kind."""
    clean, redacted = read_frames(recording_path), read_frames(output)
    scores: dict[str, list] = defaultdict(list)
    for clip, first in layout:
        n, truth = min(clip.truth.frames, frames - first), clip.truth
        pairs = ((luma(a.image), near_black(b.image)) for _, a, b in zip(range(n), clean, redacted, strict=False))
        keep = truth.frame < n
        part = Clip(clip.spec, clip.video, ClipTruth(truth.frame[keep], truth.obj[keep], truth.box[keep],
                                                     truth.full[keep], truth.size[keep], n, truth.mats[:n],
                                                     truth.photos, truth.jerk[:n]))
        scores[clip.spec.kind].append(score_frames(part, pairs))
    return {kind: summarize(s, kind) for kind, s in scores.items()}


def crossing_tracks(single: Path, split: Path, stem: str, cuts: list[int]) -> dict:
    """Tracks of the single pass with a box on both sides of a cut, and how many of them the split run also
    carries across under one id (its boxes there matched by IoU >= 0.5)."""
    from redact.segments import _iou

    crossing = kept = 0
    with Plan(plan_path(single.parent, stem)) as a, Plan(plan_path(split.parent, stem)) as b:
        for c in cuts:
            one, two = a.boxes(c - 1, c), b.boxes(c - 1, c)
            for tid in set(one.dets.track_id[one.frame == c - 1].tolist()) & set(one.dets.track_id[one.frame == c].tolist()):
                crossing += 1
                ids = []
                for f in (c - 1, c):
                    box = one.dets.xyxy[(one.frame == f) & (one.dets.track_id == tid)]
                    theirs = two.frame == f
                    if not theirs.any():
                        break
                    iou = _iou(box, two.dets.xyxy[theirs])[0]
                    if iou.max() < 0.5:
                        break
                    ids.append(int(two.dets.track_id[theirs][iou.argmax()]))
                kept += len(ids) == 2 and ids[0] == ids[1]
    return {"crossing": crossing, "one_id": kept}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--size", type=parse_size, default=(1280, 720))
    ap.add_argument("--segment-minutes", type=float, default=5.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--kill", type=float, default=0.6, help="share of the segments finished when the run is killed")
    ap.add_argument("--work", type=Path, default=Path("/tmp/redact-long"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/long.json")
    a = ap.parse_args()

    video, layout = recording(a.work, a.minutes, a.size)
    info = {"minutes": a.minutes, "size": list(a.size), "frames": len(frame_times(video)[0]),
            "segment_minutes": a.segment_minutes, "jobs": a.jobs, "cpus": os.cpu_count()}
    seg = ["--segment-minutes", str(a.segment_minutes)]
    runs = {"single": run("single", video, a.work / "single", ["--segment-minutes", "0"]),
            "split": run("split", video, a.work / "split", seg)}
    count = runs["split"]["segments"]["count"]
    runs["split_jobs"] = run("split_jobs", video, a.work / "split-jobs", [*seg, "--jobs", str(a.jobs)])
    # Ray on this machine: a local instance with its CPUs; a segment task declaring all of them runs one at a time
    # (one worker), declaring 1 CPU runs as many at once as there are CPUs
    (a.work / "input").mkdir(exist_ok=True)
    if not (a.work / "input" / video.name).exists():
        os.link(video, a.work / "input" / video.name)
    cpus = os.cpu_count() or 1
    runs["ray_1"] = run("ray_1", video, a.work / "ray-1", [*seg, "--backend", "ray", "--cpus-per-task", str(cpus)],
                        batch=True)
    runs["ray_n"] = run("ray_n", video, a.work / "ray-n", [*seg, "--backend", "ray", "--cpus-per-task", "1"],
                        batch=True)
    runs["killed"] = run("killed", video, a.work / "killed", seg, kill_at=a.kill, segments=count)
    runs["resumed"] = run("resumed", video, a.work / "killed", seg)
    out = {name: a.work / name.replace("_", "-") / f"{video.stem}.redacted.mp4"
           for name in ("single", "split", "split_jobs", "ray_1", "ray_n")}
    out["resumed"] = a.work / "killed" / f"{video.stem}.redacted.mp4"
    single_pts, split_pts = frame_times(out["single"])[0], frame_times(out["split"])[0]
    cuts = [s for s, _ in runs["split"]["segments"]["frames"][1:]]
    split_hashes = frame_hashes(out["split"])
    result = {
        "recording": info, "runs": runs,
        "speedup_jobs": round(runs["split_jobs"]["fps"] / runs["split"]["fps"], 3),
        "speedup_ray": round(runs["ray_n"]["fps"] / runs["ray_1"]["fps"], 3),
        "split_vs_single": {
            "frames": [len(single_pts), len(split_pts)],
            "same_timestamps": bool(np.array_equal(single_pts, split_pts)),
            "tracks_across_cuts": crossing_tracks(out["single"], out["split"], video.stem, cuts),
            "leaks_single": leaks(video, layout, info["frames"], out["single"]),
            "leaks_split": leaks(video, layout, info["frames"], out["split"]),
        },
        "resume": {"segments": count, "finished_when_killed": runs["killed"]["killed_with_segments_done"],
                   "reused": runs["resumed"]["segments"]["reused"],
                   "frames_equal_uninterrupted": frame_hashes(out["resumed"]) == split_hashes,
                   "jobs_frames_equal": frame_hashes(out["split_jobs"]) == split_hashes,
                   "ray_frames_equal": [frame_hashes(out[k]) == split_hashes for k in ("ray_1", "ray_n")]},
    }
    write_result(a.out, result, __file__)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
