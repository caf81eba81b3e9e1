"""Batch throughput: wall time of `redact batch` on one folder of real footage with --jobs 1 and --jobs 2.

The folder holds the seven GRID clips of ../shared/evaldata/video (real faces and speech, 3 s each, MPEG-1)
and a 720p street clip built from real car and face photos (benchmarks/make_demo.py). Each --jobs value runs
`redact batch` in its own process into a fresh OUTDIR and transcript index, with the default options (faces,
plates, transcription, audio redaction); wall time includes starting the workers and loading the models,
as a user sees it. Peak memory per worker comes from the batch journal.

Command (from the project root):
    .venv/bin/python -m benchmarks.batch_bench [--jobs 1 2] [--out benchmarks/results/batch.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.provenance import write_result

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT.parent / "shared" / "evaldata" / "video" / "grid"


def build_folder(folder: Path) -> list[Path]:
    from benchmarks.make_demo import main as make_street

    (folder / "grid").mkdir(parents=True)
    clips = [Path(shutil.copy(p, folder / "grid" / p.name)) for p in sorted(GRID.glob("*.mpg"))]
    (folder / "street").mkdir()
    make_street([str(folder / "street" / "street.mp4")])
    return clips + [folder / "street" / "street.mp4"]


def run(folder: Path, jobs: int, work: Path) -> dict:
    outdir = work / f"out-jobs{jobs}"
    env = {**os.environ, "REDACT_INDEX": str(work / f"index-jobs{jobs}.sqlite")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "redact", "batch", str(folder), "-o", str(outdir), "--jobs", str(jobs)],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"batch --jobs {jobs} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    db = sqlite3.connect(outdir / ".redact-batch.sqlite")
    rows = db.execute("SELECT frames, seconds, peak_rss_mb FROM files WHERE status = 'done'").fetchall()
    db.close()
    frames = sum(r[0] for r in rows)
    return {"jobs": jobs, "files": len(rows), "frames": frames, "wall_s": round(wall, 2),
            "frames_per_s": round(frames / wall, 2), "sum_file_seconds": round(sum(r[1] for r in rows), 2),
            "worker_peak_rss_mb": max(r[2] for r in rows)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "batch.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="redact-batch-bench-") as tmp:
        work = Path(tmp)
        clips = build_folder(work / "footage")
        results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                               "load_avg_start": os.getloadavg()},
                   "folder": [p.name for p in clips], "runs": []}
        for jobs in args.jobs:
            r = run(work / "footage", jobs, work)
            print(f"--jobs {jobs}: {r['files']} files, {r['frames']} frames in {r['wall_s']} s "
                  f"({r['frames_per_s']} frames/s), worker peak RSS {r['worker_peak_rss_mb']} MB", flush=True)
            results["runs"].append(r)
    results["machine"]["load_avg_end"] = os.getloadavg()
    base = results["runs"][0]["wall_s"]
    results["speedup_vs_first"] = {r["jobs"]: round(base / r["wall_s"], 2) for r in results["runs"]}
    write_result(args.out, results, __file__, argv)
    print(json.dumps(results["speedup_vs_first"]))
    return results


if __name__ == "__main__":
    main()
