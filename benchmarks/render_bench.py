"""Review-and-release speed: `redact render` against `redact run` on one clip, and a plan at the scale of an hour.

    .venv/bin/python -m benchmarks.render_bench [--frames 150] [--out benchmarks/results/render.json]

1. Run against render, same clip, same run, CPU: the demo's 720p street clip (real annotated photos, shaking
   camera; `benchmarks/make_demo.py`), `redact run` then `redact render` on its output folder, each as its own
   process (model loading and start-up included: what a records officer waits for). Render must be >= 4x faster.
2. An hour of 30 fps footage with 2,000 tracks: a plan written with `PlanWriter` (tracks of 1-600 frames with
   moving boxes, as the detection pass writes them) over a real 108,000-frame video (small, so it is quick to
   make): its size on disk, how long "boxes for any 10 s window" takes (`Plan.boxes`, 200 random windows), and how
   long the review page takes to be ready in a real browser (Debian chromium through Playwright: the track list
   filled and the first frame shown), from a fresh server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

from benchmarks.make_demo import main as make_demo
from benchmarks.provenance import write_result
from redact.detect import Detections
from redact.models import sha256_file
from redact.plan import Plan, PlanWriter, plan_path

FPS = 30
HOUR = 3600 * FPS
SIZE = (160, 96)


def timed(*args: str | Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "redact", *map(str, args)], check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def run_against_render(work: Path, frames: int) -> dict:
    clip = work / "street.mp4"
    make_demo([str(clip), "--frames", str(frames)])
    out = work / "out"
    env_index = ["--index", str(work / "index.sqlite")]
    run_s = timed("run", clip, "-o", out, "--device", "cpu", *env_index)
    render_s = timed("render", out)
    return {"clip": "demo street clip, 1280x720", "frames": frames, "run_s": round(run_s, 2),
            "render_s": round(render_s, 2), "render_speedup": round(run_s / render_s, 2),
            "run_fps": round(frames / run_s, 2), "render_fps": round(frames / render_s, 2)}


def hour_video(path: Path) -> Path:
    """108,000 small frames (a moving gradient) at 30 fps: a real hour-long H.264 file for the page to read."""
    w, h = SIZE
    base = np.tile(np.linspace(0, 255, w + 256, dtype=np.uint8), (h, 1))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"}
        for i in range(HOUR):
            grey = base[:, i % 256:i % 256 + w]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.stack([grey] * 3, -1)), format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def hour_plan(outdir: Path, video: Path, tracks: int, seed: int = 0) -> dict:
    """A plan of `tracks` tracks over an hour, written frame by frame as the run writes it."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    first = np.sort(rng.integers(0, HOUR - 600, tracks))
    length = np.where(rng.random(tracks) < 0.4, 1, rng.integers(30, 600, tracks))  # many one-detection fragments
    start = rng.uniform([0, 0], [w - 20, h - 24], (tracks, 2))
    velocity = rng.normal(0, 0.05, (tracks, 2))
    size = rng.uniform(8, 20, tracks)
    cls = (rng.random(tracks) < 0.3).astype(np.int64)
    writer = PlanWriter(plan_path(outdir, "hour"))
    t0 = time.perf_counter()
    active: list[int] = []
    nxt = 0
    for frame in range(HOUR):
        while nxt < tracks and first[nxt] == frame:
            active.append(nxt)
            nxt += 1
        active = [i for i in active if frame < first[i] + length[i]]
        if active:
            idx = np.array(active)
            xy = start[idx] + velocity[idx] * (frame - first[idx])[:, None]
            boxes = np.concatenate([xy, xy + size[idx, None] * [1, 1.25]], axis=1)
            dets = Detections(boxes, np.where((frame - first[idx]) % 2 == 0, 0.8, 0.0), cls[idx], idx + 1)
        else:
            dets = Detections()
        writer.add(frame, frame, dets)
    records = [{"id": i + 1, "class": ("face", "plate")[cls[i]], "first_frame": int(first[i]),
                "last_frame": int(first[i] + length[i] - 1), "detections": int(max(1, length[i] // 2)), "max_score": 0.8,
                "mean_score": 0.8, "best_frame": int(first[i])} for i in range(tracks)]
    meta = {"input": {"path": str(video.resolve()), "size": video.stat().st_size, "sha256": sha256_file(video)},
            "created": "bench", "policy": {},
            "video": {"width": w, "height": h, "fps": FPS, "frames": HOUR, "duration": HOUR / FPS, "time_base": "1/30"},
            "render": {"face_mode": "blur", "plate_mode": "blur", "crf": 20, "preset": "veryfast", "encoder": "libx264"}}
    writer.finish(meta, records, None)
    writer.publish()
    return {"write_s": round(time.perf_counter() - t0, 2), "boxes": int(sum(length))}


def window_queries(outdir: Path, n: int = 200) -> dict:
    rng = np.random.default_rng(1)
    with Plan(plan_path(outdir, "hour")) as plan:
        times, counts = [], []
        for start in rng.integers(0, HOUR - 10 * FPS, n):
            t0 = time.perf_counter()
            boxes = plan.boxes(int(start), int(start) + 10 * FPS - 1)
            times.append(time.perf_counter() - t0)
            counts.append(len(boxes.frame))
        t0 = time.perf_counter()
        groups = plan.groups()
        groups_s = time.perf_counter() - t0
    ms = sorted(1000 * t for t in times)
    return {"windows": n, "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[int(0.95 * n)], 2),
            "max_ms": round(ms[-1], 2), "mean_boxes_per_window": round(float(np.mean(counts)), 1),
            "review_rows": len(groups), "groups_s": round(groups_s, 3)}


def page_ready(outdir: Path) -> dict:
    """Seconds from a fresh server to the review page showing its track list and first frame, in chromium."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    from redact.review.server import create_app

    app = create_app(outdir)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/?token={app.state.token}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1440, "height": 960})
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_function("() => document.querySelectorAll('#groups li').length > 0 && "  # a function: the
                                   "document.getElementById('frame').complete && "  # page's CSP forbids eval
                                   "document.getElementById('frame').naturalWidth > 0", timeout=60_000)
            ready = time.perf_counter() - t0
            rows = page.evaluate("() => document.querySelectorAll('#groups li').length")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    return {"page_ready_s": round(ready, 2), "rows_shown": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="frames of the run/render clip")
    parser.add_argument("--tracks", type=int, default=2000)
    parser.add_argument("--skip-run", action="store_true", help="only the hour-long plan")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/render.json"))
    args = parser.parse_args(argv)
    result: dict = {"machine": {"cores": os.cpu_count()}}
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_run:
            result["run_vs_render"] = run_against_render(work, args.frames)
            print(json.dumps(result["run_vs_render"]), flush=True)
        hour = work / "hour"
        hour.mkdir()
        t0 = time.perf_counter()
        video = hour_video(hour / "hour.mp4")
        plan = {"video_s": round(time.perf_counter() - t0, 1), **hour_plan(hour, video, args.tracks)}
        plan["plan_mb"] = round(plan_path(hour, "hour").stat().st_size / 2**20, 2)
        plan.update(frames=HOUR, tracks=args.tracks, **window_queries(hour), **page_ready(hour))
        result["hour_plan"] = plan
        print(json.dumps(plan), flush=True)
    write_result(args.out, result, __file__, argv)


if __name__ == "__main__":
    main()

