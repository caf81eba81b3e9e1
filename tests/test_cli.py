"""Bad input gets one clear line, exit 2, and leaves nothing behind; the input is never modified."""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess

import pytest
import torch

from conftest import EVALDATA, REDACT, run_cli
from media import make_clip, noisy_clip
from redact.plan import Plan


def assert_user_error(proc, outdir) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("redact: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not outdir.exists() or not any(outdir.iterdir()), list(outdir.iterdir())


def truncated_mp4(tmp_path):
    good = make_clip(tmp_path / "good.mp4", frames=60)
    data = good.read_bytes()
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(data[: len(data) // 2])
    return bad


def audio_only(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=16000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


def text_as_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


def empty(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    return path


@pytest.mark.parametrize("make", [lambda p: p / "missing.mp4", empty, text_as_mp4, truncated_mp4, audio_only],
                         ids=["missing", "empty", "text", "truncated", "audio-only"])
def test_bad_inputs(tmp_path, make):
    path = make(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    outdir = tmp_path / "out"
    proc = run_cli("run", path, "-o", outdir, "--device", "cpu")
    assert_user_error(proc, outdir)
    if before:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_cuda_without_gpu_is_a_user_error(tmp_path):
    proc = run_cli("run", EVALDATA / "video/grid/bbaf2n.mpg", "-o", tmp_path / "out", "--device", "cuda")
    assert_user_error(proc, tmp_path / "out")
    assert "no CUDA GPU" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer of a machine without NVENC")
def test_gpu_codecs_without_a_gpu_are_user_errors(tmp_path):
    from redact.video import nvenc_available

    assert not nvenc_available()  # so `--encoder auto` means libx264 here
    proc = run_cli("run", EVALDATA / "video/grid/bbaf2n.mpg", "-o", tmp_path / "out", "--encoder", "h264_nvenc")
    assert_user_error(proc, tmp_path / "out")
    assert "no NVENC encoder" in proc.stderr
    proc = run_cli("run", EVALDATA / "video/grid/bbaf2n.mpg", "-o", tmp_path / "out", "--decoder", "nvdec")
    assert_user_error(proc, tmp_path / "out")
    assert "--decoder nvdec needs --device cuda" in proc.stderr


def test_unknown_model_and_nothing_to_do(tmp_path):
    clip = EVALDATA / "video/grid/bbaf2n.mpg"
    assert_user_error(run_cli("run", clip, "-o", tmp_path / "o", "--face-model", "nope"), tmp_path / "o")
    assert_user_error(run_cli("run", clip, "-o", tmp_path / "o", "--no-faces", "--no-plates"), tmp_path / "o")


def test_run_good_and_bad_together(tmp_path):
    """One bad file fails alone: the good one is published, exit status says something failed."""
    outdir = tmp_path / "out"
    proc = run_cli("run", EVALDATA / "video/grid/bbaf2n.mpg", empty(tmp_path), "-o", outdir, "--device", "cpu",
                   "--no-plates", "--mode", "pixelate")
    assert proc.returncode == 2
    names = sorted(p.name for p in outdir.iterdir())
    assert names == sorted(["bbaf2n.redacted.mp4", "bbaf2n.redaction.json", "bbaf2n.transcript.json", "bbaf2n.srt",
                            "bbaf2n.vtt", "bbaf2n.txt", "bbaf2n.plan.sqlite", "bbaf2n.decisions.json"]), names
    # nothing of the empty file, no temporary files
    log = json.loads((outdir / "bbaf2n.redaction.json").read_text())
    assert log["policy"]["modes"]["face"] == "pixelate" and log["policy"]["classes"] == ["face"]
    assert [(m["role"], m["id"]) for m in log["models"]] == [("face", "centerface"), ("appearance", "mobilenetv2-imagenet")]


def test_local_model_files_and_audit(tmp_path):
    """An agency's own weights are given as files; the log records exactly which file (by hash) was used."""
    from redact.models import resolve

    face, digest, _ = resolve("centerface", "faces")
    own = tmp_path / "agency-faces.onnx"
    own.write_bytes(face.read_bytes())
    outdir = tmp_path / "out"
    proc = run_cli("run", EVALDATA / "video/grid/lbax4n.mpg", "-o", outdir, "--device", "cpu", "--face-model", own,
                   "--no-plates", "--no-transcribe", "--mode", "fill", "--join-model", "none")
    assert proc.returncode == 0, proc.stderr
    log = json.loads((outdir / "lbax4n.redaction.json").read_text())
    assert log["models"] == [{"role": "face", "id": None, "path": str(own.resolve()), "sha256": digest}]
    with Plan(outdir / "lbax4n.plan.sqlite") as plan:  # rows by position only: no appearance model asked
        assert plan.meta["joined_by_look"] is None
    assert log["audio"] is None and log["stats"]["frames_redacted"] == log["stats"]["frames"] == 75
    assert sorted(p.name for p in outdir.iterdir()) == ["lbax4n.decisions.json", "lbax4n.plan.sqlite",
                                                        "lbax4n.redacted.mp4", "lbax4n.redaction.json"]
    not_onnx = tmp_path / "broken.onnx"
    not_onnx.write_text("nope")
    assert_user_error(run_cli("run", EVALDATA / "video/grid/lbax4n.mpg", "-o", tmp_path / "o2", "--face-model",
                              not_onnx, "--no-plates"), tmp_path / "o2")


def test_inputs_sharing_a_stem_keep_apart(tmp_path):
    """cam.mp4 and cam.mov into one folder get distinct outputs; two inputs with one name are refused up front."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mp4 = make_clip(tmp_path / "a" / "cam.mp4", frames=12, audio=False)
    mov = make_clip(tmp_path / "b" / "cam.mov", frames=15, audio=False, container="mov")
    outdir = tmp_path / "out"
    fast = ["--device", "cpu", "--no-plates", "--face-scale", "1"]
    proc = run_cli("run", mp4, mov, "-o", outdir, *fast)
    assert proc.returncode == 0, proc.stderr
    logs = {name: json.loads((outdir / f"{name}.redaction.json").read_text()) for name in ("cam.mp4", "cam.mov")}
    assert logs["cam.mp4"]["input"]["path"] == str(mp4.resolve()) and logs["cam.mov"]["stats"]["frames"] == 15
    twin = make_clip(tmp_path / "b" / "cam.mp4", frames=12, audio=False)
    assert_user_error(run_cli("run", mp4, twin, "-o", tmp_path / "o2", *fast), tmp_path / "o2")


def test_without_the_audio_stage_every_track_is_kept_as_it_is(tmp_path):
    """--no-transcribe keeps every audio track untouched (tests/test_tracks.py: with it, each is also bleeped)."""
    import av

    clip = make_clip(tmp_path / "two.mp4", frames=15, audio_tracks=2)
    proc = run_cli("run", clip, "-o", tmp_path / "out", "--device", "cpu", "--no-plates", "--face-scale", "1",
                   "--no-transcribe")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "out" / "two.redaction.json").read_text())["video"]
    assert (info["audio_tracks"], info["audio_tracks_kept"]) == (2, 2), info
    with av.open(str(clip)) as original, av.open(str(tmp_path / "out" / "two.redacted.mp4")) as out:
        assert len(out.streams.audio) == 2
        for k in range(2):  # stream copies: the same packets
            a = [bytes(p) for p in original.demux(original.streams.audio[k]) if p.size]
            original.seek(0)
            b = [bytes(p) for p in out.demux(out.streams.audio[k]) if p.size]
            out.seek(0)
            assert a == b


def test_full_disk_is_one_clear_line_and_nothing_published(tmp_path):
    clip = noisy_clip(tmp_path / "noise.mp4")
    limit = 400_000  # bytes any one file may grow to (RLIMIT_FSIZE): smaller than the redacted video

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    outdir = tmp_path / "out"
    proc = subprocess.run([*REDACT, "run", str(clip), "-o", str(outdir), "--device", "cpu", "--face-scale", "1",
                           "--plate-imgsz", "320"], capture_output=True, text=True, preexec_fn=small_disk)
    assert_user_error(proc, outdir)
    assert "out of disk space" in proc.stderr


def test_run_reports_progress_in_lines_where_stderr_is_not_a_terminal(tmp_path):
    """Issue 27, defect 7: `redact run` printed nothing while it worked into a log file or a batch job's output."""
    import re

    outdir = tmp_path / "out"
    proc = run_cli("run", EVALDATA / "video/grid/lbax4n.mpg", "-o", outdir, "--device", "cpu", "--no-plates",
                   "--no-transcribe", "--progress-every", "0.05")
    assert proc.returncode == 0, proc.stderr
    pattern = r"redact: lbax4n\.mpg: (\d+)/(7[45]) frames \((\d+)%\), (\d+\.\d) frames/s, ETA \d+:\d\d"  # 74: the estimate
    lines = [re.fullmatch(pattern, line) for line in proc.stderr.splitlines()]
    assert len(lines) >= 3 and all(lines), proc.stderr  # every line is a progress line, and there are some
    done = [int(m[1]) for m in lines]
    assert done == sorted(done) and 0 < done[0] and done[-1] <= 75
    assert all(int(m[3]) == round(100 * int(m[1]) / int(m[2])) and float(m[4]) > 0 for m in lines)
    assert "\r" not in proc.stderr  # no bar
    assert proc.stdout.startswith(f"{EVALDATA / 'video/grid/lbax4n.mpg'} -> ")
