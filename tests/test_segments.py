"""Long recordings in segments (redact.segments): a run cut into segments publishes what one pass does, a face
crossing a cut keeps one id and is covered on every frame, and a rerun after SIGKILL redoes only the unfinished
segments. Real models on real media; the clips are cut into 1-second segments so the tests stay short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import EVALDATA, REDACT, run_cli
from media import decoded, make_clip
from redact.plan import Plan, plan_path
from redact.segments import Segment, SegmentBoxes, cut, global_ids
from redact.video import frame_times

GRID = EVALDATA / "video/grid/bbaf2n.mpg"


def frames_and_pts(video: Path) -> tuple[list[int], list[np.ndarray]]:
    with av.open(str(video)) as c:
        frames = list(c.decode(video=0))
    return [f.pts for f in frames], [f.to_ndarray(format="bgr24") for f in frames]


def plan_boxes(outdir: Path, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(frame, box, track id) of every box of the plan in a fixed order, its track and row counts."""
    with Plan(plan_path(outdir, stem)) as plan:
        boxes = plan.boxes(0, 10**9)
        order = np.lexsort((boxes.dets.xyxy[:, 1], boxes.dets.xyxy[:, 0], boxes.frame))
        return (boxes.frame[order], boxes.dets.xyxy[order], boxes.dets.track_id[order], len(plan.tracks()),
                len(plan.groups()))


def test_cuts_fall_on_keyframes_and_cover_every_frame_once() -> None:
    keys = np.zeros(1000, bool)
    keys[::48] = True
    segments = cut(keys, 1000, 300, before=40, after=10)
    assert [s.start for s in segments] == [0, 288, 576] and segments[-1].stop == 1000  # 912 would leave 88 < 150
    assert all(keys[s.start] for s in segments)
    assert all(a.stop == b.start for a, b in zip(segments, segments[1:], strict=False))
    assert segments[1].read_from == 248 and segments[1].read_to == 586 and segments[-1].read_to == 1000
    assert len(cut(keys, 400, 300, 40, 10)) == 1  # shorter than 1.5 segments: one


def test_tracks_that_coincide_where_two_segments_overlap_get_one_id() -> None:
    """Segment 0 read frames 0-14 (published 0-9), segment 1 read 5-19 (published 10-19). Its track 1 lies on
    segment 0's track 2 in the shared frames: one id. Its track 2 (another face beside it) does not."""
    def boxes(frames, tracks):
        rows = [(f, t) for f in frames for t in tracks]
        xy = np.array([[10 + 100 * t, 10, 50 + 100 * t, 60] for _, t in rows], np.float32)
        return SegmentBoxes(np.array([f for f, _ in rows]), xy, np.ones(len(rows), np.float32),
                            np.zeros(len(rows), np.int64), np.array([t for _, t in rows]))

    a = boxes(range(0, 15), [2])
    b = SegmentBoxes(*(np.concatenate(x) for x in zip(boxes(range(5, 20), [2]), boxes(range(12, 20), [5]), strict=True)))
    b = b._replace(track=np.where(b.track == 2, 1, 2))  # its own ids: 1 on the shared face, 2 on the other
    ids = global_ids([Segment(0, 0, 10, 0, 15), Segment(1, 10, 20, 5, 20)], [a, b])
    assert ids == [{2: 1}, {1: 1, 2: 2}]


@pytest.fixture()
def segmented(redactor, monkeypatch):
    """The session's redactor (faces, plates, speech) with 1-second segments."""
    monkeypatch.setattr(redactor.options, "segment_s", 1.0)
    return redactor


def test_a_recording_in_segments_is_published_as_one_pass_makes_it(segmented, grid_run, tmp_path) -> None:
    """GRID's talking face is in view on all 75 frames, across both cuts: the same frames and timestamps as the
    single pass (grid_run), the same boxes, one track, the face covered on every frame, the audio kept and
    transcribed over the whole file; the segments' journal is gone once published."""
    times = frame_times(GRID)
    assert times is not None and times[1].sum() >= 3  # keyframes to cut at
    result = segmented.run(GRID, tmp_path)
    log = json.loads(result.log.read_text())
    assert log["stats"]["segments"]["count"] == 3 and log["stats"]["segments"]["reused"] == 0
    assert [b - a for a, b in log["stats"]["segments"]["frames"]] != [75]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # journal and partial files gone

    one_pts, one_frames = frames_and_pts(grid_run / "bbaf2n.redacted.mp4")
    seg_pts, seg_frames = frames_and_pts(result.video)
    assert seg_pts == one_pts and len(seg_pts) == 75
    frame, xyxy, track, tracks, rows = plan_boxes(tmp_path, "bbaf2n")
    one = plan_boxes(grid_run, "bbaf2n")
    assert np.array_equal(frame, one[0]) and np.allclose(xyxy, one[1], atol=0.01)
    faces = [t for t in log["tracks"] if t["class"] == "face"]
    assert len(faces) == 1 and (tracks, rows) == one[3:]
    face_id = faces[0]["id"]
    assert set(frame[track == face_id].tolist()) == set(range(75))  # one id on every frame, across both cuts
    # covered on every frame: the pixels in the face box are the single pass's redacted ones, not the original's
    original = decoded(GRID)
    for k in range(75):
        x0, y0, x1, y1 = xyxy[(frame == k) & (track == face_id)][0].astype(int)
        region = (slice(y0, y1), slice(x0, x1))
        to_original = np.abs(seg_frames[k][region].astype(int) - original[k][region]).mean()
        to_one_pass = np.abs(seg_frames[k][region].astype(int) - one_frames[k][region]).mean()
        assert to_one_pass < 4 and to_original > 4 * to_one_pass, k
    with av.open(str(result.video)) as c:
        assert len(c.streams.audio) == 1
    said = [json.loads((d / "bbaf2n.transcript.json").read_text())["segments"] for d in (tmp_path, grid_run)]
    assert said[0] and [s["text"] for s in said[0]] == [s["text"] for s in said[1]]


WALK_ARGS = ["--segment-minutes", str(1 / 60), "--no-transcribe", "--device", "cpu"]  # 4 segments of 30 frames


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> tuple[Path, Path]:
    """A generated 120-frame clip and its uninterrupted run in 4 segments (`redact run`, one process)."""
    folder = tmp_path_factory.mktemp("walk")
    (folder / "in").mkdir()
    clip = make_clip(folder / "in" / "walk.mp4", size=(480, 270), frames=120, audio=False)
    whole = run_cli("run", clip, *WALK_ARGS, "-o", folder / "whole")
    assert whole.returncode == 0, whole.stderr
    return clip, folder / "whole"


def test_a_run_killed_midway_redoes_only_the_unfinished_segments(walk, tmp_path) -> None:
    """`redact run` killed (SIGKILL) once its first segment is finished; the rerun, with two worker processes,
    reuses what was finished, runs the rest on both workers, and publishes the frames an uninterrupted run does."""
    clip, whole = walk
    out = tmp_path / "out"
    journal = out / ".walk.segments"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.Popen([*REDACT, "run", str(clip), *WALK_ARGS, "-o", str(out)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 240
    while not (journal / "segment-00000.boxes.npz").exists():
        assert run.poll() is None and time.monotonic() < deadline, "the first segment did not finish"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = sorted(p.name for p in journal.glob("segment-*.boxes.npz"))
    assert 1 <= len(done) < 4 and not (out / "walk.redacted.mp4").exists()

    again = run_cli("run", clip, *WALK_ARGS, "-o", out, "--jobs", "2", "--progress-every", "0")
    assert again.returncode == 0, again.stderr
    progress = [line for line in again.stderr.splitlines() if line.startswith("redact: walk.mp4:")]
    assert progress[0].startswith(f"redact: walk.mp4: {30 * (len(done) + 1)}/120 frames")  # finished ones counted
    assert progress[-1].startswith("redact: walk.mp4: 120/120 frames") and progress[-1].endswith("segments 4/4")
    segments = json.loads((out / "walk.redaction.json").read_text())["stats"]["segments"]
    assert segments["count"] == 4 and segments["reused"] == len(done) and segments["workers"] == 2
    assert [r["reused"] for r in segments["runs"]] == [k < len(done) for k in range(4)]
    assert sum(r["frames"] for r in segments["runs"]) == 120
    if len(done) < 3:
        assert len({r["worker"] for r in segments["runs"] if not r["reused"]}) == 2
    assert not journal.exists()
    assert_same_output(out, whole)


def test_ray_spreads_one_files_segments_over_its_workers(walk, tmp_path) -> None:
    """`redact batch --backend ray` on a local Ray of this machine's 2 CPUs: each segment of the file is a Ray task
    of its own, made by more than one worker, and the output is the one `redact run` makes in segments."""
    clip, whole = walk
    done = run_cli("batch", clip.parent, "-o", tmp_path, "--backend", "ray", "--cpus-per-task", "1", *WALK_ARGS)
    assert done.returncode == 0, done.stderr
    segments = json.loads((tmp_path / "walk.redaction.json").read_text())["stats"]["segments"]
    assert segments["workers"] == "ray" and segments["count"] == 4 and segments["reused"] == 0
    assert len({r["worker"] for r in segments["runs"]}) >= 2
    assert_same_output(tmp_path, whole)


def assert_same_output(a: Path, b: Path) -> None:
    """The same timestamps, the same decoded frames and the same plan boxes."""
    pts_a, frames_a = frames_and_pts(a / "walk.redacted.mp4")
    pts_b, frames_b = frames_and_pts(b / "walk.redacted.mp4")
    assert pts_a == pts_b and len(pts_a) == 120
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b, strict=True))
    assert np.array_equal(plan_boxes(a, "walk")[1], plan_boxes(b, "walk")[1])
