"""The torch stage (the CUDA path's code, run here on the CPU) against the onnxruntime path, and several files at
once sharing one set of models (`redact run --jobs`)."""

from __future__ import annotations

import json
import threading

import av
import cv2
import numpy as np
import pytest
import torch

from benchmarks.gpu_bench import box_agreement
from benchmarks.synth import ClipSpec, load_photos, make_clip
from conftest import EVALDATA, run_cli
from media import face_photo
from media import make_clip as make_test_clip
from redact.anonymize import RedactionPolicy, anonymize, anonymize_tensor
from redact.batch import Batch
from redact.detect import FACE, PLATE, CenterFaceDetector, DetectionQueue, Detections, enlarge_area
from redact.models import resolve
from redact.pipeline import RedactOptions, Redactor
from redact.track import Smoother
from redact.video import read_frames


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """A 640x360 clip of real face and plate photos filmed by a shaking, panning camera (as `make demo`)."""
    photos = [p for pair in zip(load_photos("plates")[:6], load_photos("faces")[:6], strict=True) for p in pair]
    spec = ClipSpec(kind="faces", index=0, seed=3, frames=24, width=640, height=360, base=24.0, zoom_ratio=1.5,
                    max_tiles=12, crf=23)
    return make_clip(spec, photos, tmp_path_factory.mktemp("street")).video


def boxes(redactor: Redactor, clip) -> list:
    return [(f.index, b) for f, b in redactor.frames_with_boxes(read_frames(clip), Smoother(redactor.track_policy))]


def test_torch_stage_finds_the_boxes_of_the_onnxruntime_path(street, tmp_path):
    """Both fp32: the CPU default may be OpenVINO in bf16 (tests/test_detect.py compares the CPU runtimes)."""
    reference = Redactor(RedactOptions(device="cpu", runtime="onnxruntime", audio=None, index_transcripts=False))
    staged = Redactor(RedactOptions(device="cpu", runtime="torch", audio=None, index_transcripts=False))
    cpu, torch_path = boxes(reference, street), boxes(staged, street)
    assert sum(len(b) for _, b in cpu) >= 24  # faces and plates in every frame
    assert {int(c) for _, b in cpu for c in b.cls} == {FACE, PLATE}
    assert box_agreement(cpu, torch_path) >= 0.95 and box_agreement(torch_path, cpu) >= 0.95
    result = staged.run(street, tmp_path)  # the whole file through the stage: upload, detect, redact, copy back
    with av.open(str(result.video)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 24
    assert result.audit["policy"]["runtime"] == "torch" and result.tracks > 0


@pytest.mark.parametrize("size", [(192, 108), (131, 77), (256, 144)])
def test_enlarging_on_the_device_is_opencvs_area_resize(size):
    """The detector sees the same pixels on both paths: CenterFace at 1.5x is fed OpenCV's INTER_AREA enlargement."""
    image = np.random.default_rng(0).random((72, 128, 3), np.float32) * 255
    cpu = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    dev = enlarge_area(torch.from_numpy(image).permute(2, 0, 1)[None], size[1], size[0])[0].permute(1, 2, 0).numpy()
    assert np.abs(cpu - dev).max() < 1e-3


@pytest.mark.parametrize("mode", ["blur", "pixelate", "fill"])
def test_redaction_on_the_device_matches_the_cpu(mode):
    image = face_photo()
    dets = Detections([[100.3, 80.7, 180.2, 180.9], [300, 200, 380, 230], [-20, -20, 10, 10]], [1, 1, 1],
                      [FACE, PLATE, FACE])
    policy = RedactionPolicy(modes=(mode, mode))
    cpu = anonymize(image.copy(), dets, policy).astype(int)
    dev = anonymize_tensor(torch.from_numpy(image.copy()), dets, policy).numpy().astype(int)
    changed = np.any((cpu != image) | (dev != image), axis=2)
    assert changed.sum() > 8000
    assert np.array_equal(cpu[~changed], image[~changed]) and np.array_equal(dev[~changed], image[~changed])
    differ = np.any(cpu != dev, axis=2)
    assert np.abs(cpu - dev)[changed].mean() < 2  # the same cells and kernel; OpenCV's area sums round otherwise
    assert differ.sum() < (0.01 if mode == "fill" else 0.9) * changed.sum()  # fill: only the ellipse's edge


def test_detection_queue_serves_each_caller_its_own_frames():
    path, digest, _ = resolve("centerface", "faces")
    detector = CenterFaceDetector(path, digest, threshold=0.3)
    photos = sorted((EVALDATA / "faces/dlib_pascal/images").glob("*.jpg"))[:4]
    images = [cv2.resize(cv2.imread(str(p)), (480, 360)) for p in photos]
    expected = [len(d) for d in detector(images)]
    queue = DetectionQueue([detector], max_frames=8)
    start = threading.Barrier(len(images))
    got: dict[int, int] = {}

    def ask(i: int) -> None:
        start.wait()
        got[i] = len(queue([images[i]])[0])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(images))] == expected and len(set(expected)) > 1
    assert queue.batches < len(images)  # requests that waited together ran as one batch


def test_run_jobs_shares_models_and_fails_bad_files_alone(tmp_path):
    clips = [EVALDATA / "video/grid/bbaf2n.mpg", EVALDATA / "video/grid/lbax4n.mpg",
             make_test_clip(tmp_path / "pan.mp4", frames=20, audio=False)]
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    common = ["--device", "cpu", "--no-transcribe"]
    proc = run_cli("run", *clips, bad, "-o", tmp_path / "jobs", "--jobs", "3", *common)
    assert proc.returncode == 2 and proc.stderr.count("error") == 1 and "bad.mp4" in proc.stderr
    one = run_cli("run", *clips, "-o", tmp_path / "one", *common)
    assert one.returncode == 0, one.stderr
    for clip in clips:
        a, b = (json.loads((tmp_path / d / f"{clip.stem}.redaction.json").read_text()) for d in ("jobs", "one"))
        assert a["stats"]["frames"] == b["stats"]["frames"] > 0
        assert [t["detections"] for t in a["tracks"]] == [t["detections"] for t in b["tracks"]]
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == sorted(
        f"{c.stem}.{kind}" for c in clips for kind in ("redacted.mp4", "redaction.json", "plan.sqlite", "decisions.json"))


def test_batch_on_the_torch_stage_shares_one_redactor(tmp_path):
    """With the torch stage (the GPU path) a local batch runs its files in threads sharing one set of models."""
    source = tmp_path / "in"
    source.mkdir()
    clips = [make_test_clip(source / f"cam{i}.mp4", frames=12 + i, audio=False) for i in range(3)]
    options = RedactOptions(device="cpu", runtime="torch", audio=None, index_transcripts=False)
    with Batch(source, tmp_path / "out", options) as work:
        outcomes = {item.path.name: outcome for item, outcome in work.run(jobs=2)}
    assert sorted(outcomes) == [c.name for c in clips]
    assert all(o.error is None for o in outcomes.values())
    assert [outcomes[c.name].frames for c in clips] == [12, 13, 14]
    assert {p.name for p in (tmp_path / "out").glob("*.redacted.mp4")} == {f"cam{i}.redacted.mp4" for i in range(3)}
