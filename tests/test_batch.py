"""`redact batch`: every good file done exactly once across a SIGKILL, bad files fail alone, full disks fail
cleanly, memory stays flat over many files, and the Ray backend gives the local backend's outputs."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import av
import pytest

from conftest import REDACT
from media import assert_same_pictures, make_clip, noisy_clip
from redact.batch import JOURNAL
from redact.video import read_frames

# the batch mechanics are under test, not detection quality: small clips, cheap detector settings
FAST = ["--no-transcribe", "--no-index-transcripts", "--face-scale", "1", "--plate-imgsz", "320"]
TEMPORARY = (".partial", ".pending", ".work")


def batch(source: Path, outdir: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([*REDACT, "batch", str(source), "-o", str(outdir), *FAST, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def journal_so_far(outdir: Path) -> dict[str, dict]:
    """The journal of a batch still starting: none while its file or its table is not made yet."""
    try:
        return journal(outdir) if (outdir / JOURNAL).exists() else {}
    except sqlite3.OperationalError:
        return {}


def journal(outdir: Path) -> dict[str, dict]:
    db = sqlite3.connect(outdir / JOURNAL)
    db.row_factory = sqlite3.Row
    try:
        return {Path(r["path"]).name: dict(r) for r in db.execute("SELECT * FROM files")}
    finally:
        db.close()


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def leftovers(outdir: Path) -> list[Path]:
    return [p for p in outdir.rglob(".*") if p.name.endswith(TEMPORARY)]


def footage(folder: Path, n: int, frames: int = 24) -> list[Path]:
    """`n` clips, half of them in a subfolder (the output mirrors it)."""
    clips = []
    for i in range(n):
        sub = folder / ("day2" if i % 2 else "day1")
        sub.mkdir(parents=True, exist_ok=True)
        clips.append(make_clip(sub / f"cam{i}.mp4", frames=frames + i, audio=False))
    return clips


def output_of(clip: Path, source: Path, outdir: Path) -> Path:
    return outdir / clip.parent.relative_to(source) / f"{clip.stem}.redacted.mp4"


def test_sigkill_then_rerun_does_every_file_exactly_once(tmp_path):
    source, outdir = tmp_path / "in", tmp_path / "out"
    clips = footage(source, 4, frames=40)
    proc = batch(source, outdir, "--jobs", "1", start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # kill it once one file is done
        if any(r["status"] == "done" for r in journal_so_far(outdir).values()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the batch finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {name: row for name, row in journal(outdir).items() if row["status"] == "done"}
    assert first and len(first) < len(clips)
    stamps = {name: os.stat(row["video"]).st_mtime_ns for name, row in first.items()}

    proc = batch(source, outdir, "--jobs", "2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    rows = journal(outdir)
    assert sorted(rows) == sorted(c.name for c in clips)
    for clip in clips:
        row = rows[clip.name]
        assert row["status"] == "done" and row["attempts"] == 1, row  # done once: never redone after the kill
        assert Path(row["video"]) == output_of(clip, source, outdir)
        assert frame_count(output_of(clip, source, outdir)) == frame_count(clip)
    assert {name: os.stat(rows[name]["video"]).st_mtime_ns for name in first} == stamps
    assert f"{len(first)} file(s) already done" in out
    assert not leftovers(outdir)
    assert not list(source.rglob("*.redacted.mp4"))  # inputs untouched, nothing written beside them


def test_bad_files_fail_alone_and_are_retried_on_rerun(tmp_path):
    source, outdir = tmp_path / "in", tmp_path / "out"
    good = footage(source, 2)
    (source / "corrupt.mp4").write_bytes(os.urandom(50_000))
    data = make_clip(tmp_path / "whole.mp4", frames=60, audio=False).read_bytes()
    (source / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (source / "notes.txt").write_text("not footage: ignored")
    (source / "day2" / "copy.mp4").write_bytes(good[1].read_bytes())  # the same content: done once only
    make_clip(source / "day1" / "cam0.mov", frames=20, audio=False, container="mov")  # same stem as cam0.mp4
    proc = batch(source, outdir, "--jobs", "2")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    failures = [ln for ln in err.splitlines() if ln.startswith("redact: error:")]
    assert len(failures) == 2 and any("corrupt.mp4" in ln for ln in failures) and any("truncated" in ln for ln in failures)
    assert "3 done, 2 failed, 1 skipped" in out
    rows = journal(outdir)
    assert {n: r["status"] for n, r in rows.items()} == {
        "cam0.mp4": "done", "cam0.mov": "done", "cam1.mp4": "done", "corrupt.mp4": "failed", "truncated.mp4": "failed"}
    assert "truncated" in rows["truncated.mp4"]["error"]
    for clip in good:
        assert frame_count(Path(rows[clip.name]["video"])) == frame_count(clip)
    assert Path(rows["cam0.mov"]["video"]).name == "cam0.mov.redacted.mp4" and frame_count(Path(rows["cam0.mov"]["video"])) == 20
    assert not list(outdir.glob("corrupt*")) and not list(outdir.glob("truncated*")) and not leftovers(outdir)

    proc = batch(source, outdir)  # a rerun retries the failures only
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 3 and "0 done, 2 failed, 4 skipped" in out, out + err
    assert journal(outdir)["corrupt.mp4"]["attempts"] == 2 and journal(outdir)["cam0.mp4"]["attempts"] == 1


def test_full_disk_is_a_clear_error_and_publishes_nothing(tmp_path):
    source, outdir = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    clip = noisy_clip(source / "noise.mp4")
    limit = 600_000  # bytes any one file may grow to: the journal fits, the redacted video does not
    assert clip.stat().st_size > limit

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = batch(source, outdir, preexec_fn=small_disk)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, out + err
    assert "out of disk space" in err and "Traceback" not in err
    assert journal(outdir)["noise.mp4"]["status"] == "failed"
    assert not list(outdir.glob("*.mp4")) and not list(outdir.glob("*.json")) and not leftovers(outdir)


def test_many_small_files_keep_memory_flat(tmp_path):
    source, outdir = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    base = make_clip(tmp_path / "base.mp4", size=(96, 64), frames=4, audio=False).read_bytes()
    for i in range(100):  # distinct content (the journal keys files by hash): one trailing byte each
        (source / f"c{i:03d}.mp4").write_bytes(base + bytes([i]))
    proc = batch(source, outdir)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    rows = sorted(journal(outdir).values(), key=lambda r: r["path"])
    assert len(rows) == 100 and all(r["status"] == "done" for r in rows)
    rss = [r["peak_rss_mb"] for r in rows]
    print(f"worker peak RSS after file 10: {rss[9]:.0f} MB, after file 100: {rss[-1]:.0f} MB")
    assert rss[-1] - rss[9] < 100, rss  # one worker did all 100: its peak may not keep growing


def test_ray_backend_gives_the_local_outputs(tmp_path):
    source = tmp_path / "in"
    clips = footage(source, 2)
    logs = {}
    for backend in ("local", "ray"):
        outdir = tmp_path / backend
        proc = batch(source, outdir, "--backend", backend, "--jobs", "2")
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "2 done, 0 failed" in out
        logs[backend] = {c.name: json.loads(output_of(c, source, outdir).with_name(f"{c.stem}.redaction.json")
                                            .read_text()) for c in clips}
    for clip in clips:
        local, ray = logs["local"][clip.name], logs["ray"][clip.name]
        assert local["tracks"] and ray["tracks"] == local["tracks"]
        # the same pictures, whatever the worker (not the same bytes: see media.assert_same_pictures)
        assert_same_pictures(*([f.image for f in read_frames(log["output"]["path"])] for log in (local, ray)))


def test_inputs_from_a_folder_or_a_list(tmp_path):
    """Folders are searched recursively by extension, hidden entries and an OUTDIR inside them skipped; a list
    file takes # comments and paths relative to itself, and names a missing file up front."""
    from redact.batch import find_inputs
    from redact.errors import UserError

    source = tmp_path / "in"
    for rel in ("a.mp4", "sub/B.MOV", "sub/deep/c.mpg", "notes.txt", ".hidden.mp4", ".cache/d.mp4", "out/e.mp4"):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(b"x")
    paths, root = find_inputs(source, exclude=source / "out")
    assert root == source.resolve()
    assert [p.relative_to(root).as_posix() for p in paths] == ["a.mp4", "sub/B.MOV", "sub/deep/c.mpg"]

    listing = tmp_path / "lists" / "request-42.txt"
    listing.parent.mkdir()
    listing.write_text(f"# FOIA request 42\n  # (indented comment)\n../in/sub/B.MOV\n\n{source / 'sub/deep/c.mpg'}\n")
    paths, root = find_inputs(listing)
    assert paths == [(source / "sub/B.MOV").resolve(), (source / "sub/deep/c.mpg").resolve()]
    assert root == (source / "sub").resolve()
    listing.write_text("../in/a.mp4\n../in/gone.mp4\n")
    with pytest.raises(UserError, match="gone.mp4"):
        find_inputs(listing)
    with pytest.raises(UserError, match="no such folder"):
        find_inputs(tmp_path / "nowhere")


def test_ray_resolves_auto_to_the_clusters_gpu(tmp_path):
    """`--device auto` on Ray is the cluster's choice: a cluster that reports a GPU (here a local Ray told it has
    one: the device query is the only thing that is not real) gets CUDA tasks that ask Ray for a GPU share. On
    this machine without CUDA the redaction itself then fails with the CUDA error, which shows the task was
    given `cuda` and scheduled on the GPU slot."""
    import ray

    from redact.batch import BatchItem, cluster_device, run_ray
    from redact.pipeline import RedactOptions

    assert cluster_device("auto", {"CPU": 16.0, "GPU": 8.0}) == "cuda"
    assert cluster_device("auto", {"CPU": 16.0}) == "cpu"
    assert cluster_device("cpu", {"GPU": 1.0}) == "cpu"
    clip = make_clip(tmp_path / "cam.mp4", frames=6, audio=False)
    item = BatchItem(clip, "0" * 64, tmp_path / "out", "cam")
    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert ray.cluster_resources()["GPU"] == 1.0
        [(done, outcome)] = list(run_ray([item], RedactOptions(device="auto", audio=None), None, 1.0, jobs=2))
    finally:
        ray.shutdown()
    assert done == item
    assert outcome.error is not None and "--device cuda was requested but no CUDA GPU is available" in outcome.error
