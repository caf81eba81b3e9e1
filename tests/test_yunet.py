"""YuNet, the second face model: it finds real faces, its torch conversion agrees with the ONNX graph, it runs on
every face look beside CenterFace's turns, it comes from the file committed under models/, and beside CenterFace a
22-26 px masked face is covered in every frame of a moving clip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_leak import Counting, engine_options, score_video, short_clip, summarize

from benchmarks.detector_eval import load_gt, match
from conftest import EVALDATA
from redact.detect import FACE, CenterFaceDetector, DetectionQueue, YuNetDetector, fuse
from redact.errors import ModelError
from redact.models import REGISTRY_PATH, load_registry, resolve
from redact.pipeline import Redactor

MASKED = "facemask_cc0/images/maksssksksss10.png"  # one face, under a white mask, 96x116 px in the photo


@pytest.fixture(scope="module")
def yunet():
    return YuNetDetector(*resolve("yunet", "faces")[:2], backend="onnxruntime")


def test_yunet_finds_the_faces_of_real_group_photos(yunet):
    gt = load_gt(EVALDATA / "faces")
    names = [k for k in gt if k.startswith("dlib_pascal")]
    hits = found = 0
    for name in names:
        dets = yunet([cv2.imread(str(EVALDATA / "faces" / name))])[0]
        hits += match(gt[name], dets.xyxy, dets.score)
        found += len(dets)
        assert (dets.cls == FACE).all() and (dets.score >= YuNetDetector.THRESHOLD).all()
    assert hits >= 41 and hits / found >= 0.85, (hits, found)  # of 43 faces of 30-45 px


def test_yunet_torch_conversion_matches_onnx(yunet):
    """The CUDA path runs the same graph converted to torch (here on the CPU, fp32): the same boxes."""
    image = cv2.imread(str(EVALDATA / "faces/dlib_pascal/images/2007_007763.jpg"))
    converted = YuNetDetector(yunet.weights, yunet.sha256, backend="torch")
    a, b = yunet([image])[0], converted([image])[0]
    assert len(a) == len(b) >= 4
    assert np.allclose(a.xyxy, b.xyxy, atol=0.5) and np.allclose(a.score, b.score, atol=1e-3)
    c = converted.detect_tensor(torch.from_numpy(image[None]))[0]  # the torch stage's entry: frames as a tensor
    assert np.allclose(c.xyxy, b.xyxy, atol=0.5)


def test_yunet_runs_on_every_face_look_beside_centerfaces_turns(yunet):
    path, digest, _ = resolve("centerface", "faces")
    face = CenterFaceDetector(path, digest, threshold=0.2, scale=1.5)
    queue = DetectionQueue([face, face.at_scale(1.0), yunet], max_frames=2)
    assert [queue.active(turns={FACE: t}) for t in range(3)] == [(0, 2), (1, 2), (0, 2)]
    assert queue.active() == (0, 1, 2)
    image = cv2.imread(str(EVALDATA / "faces/dlib_pascal/images/2007_007763.jpg"))
    got = queue([image], (0, 2))[0]
    want = fuse([face([image])[0], yunet([image])[0]])
    assert len(got) == len(want) and np.allclose(np.sort(got.xyxy, axis=0), np.sort(want.xyxy, axis=0), atol=0.5)


def test_a_file_that_is_not_yunet_is_refused():
    path, digest, _ = resolve("centerface", "faces")
    with pytest.raises(ModelError, match="not a YuNet model"):
        YuNetDetector(path, digest)


def test_a_committed_model_is_fetched_from_the_repository_and_verified(tmp_path):
    """No package carries YuNet: `models fetch` copies the file committed under models/ into the cache and checks
    its SHA-256 like a wheel member's."""
    spec = load_registry()["yunet"]
    assert spec.packages == () and (REGISTRY_PATH.parent / spec.files[0].members[0]).is_file()
    assert "WIDER FACE" in spec.licence and "non-commercial" in spec.licence
    env = {**os.environ, "REDACT_HOME": str(tmp_path / "home")}
    fetch = [sys.executable, "-m", "redact", "models", "fetch", "yunet"]
    proc = subprocess.run(fetch, capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "fetched and verified" in proc.stdout, proc.stderr
    assert (tmp_path / "home/models/yunet/yunet_n_dynamic.onnx").is_file()
    registry = tmp_path / "registry"  # the same entry, its committed file altered: refused, nothing cached
    shutil.copytree(REGISTRY_PATH.parent, registry)
    member = registry / spec.files[0].members[0]
    member.write_bytes(member.read_bytes()[:-1] + b"\0")
    env = {**env, "REDACT_HOME": str(tmp_path / "home2"), "REDACT_REGISTRY": str(registry / "registry.toml")}
    proc = subprocess.run(fetch, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "refusing it" in proc.stderr
    assert not list(Path(tmp_path / "home2/models/yunet").glob("*.onnx"))


def test_a_22px_masked_face_is_covered_in_every_frame_with_yunet_beside_centerface(tmp_path):
    clip = short_clip(tmp_path, "faces", MASKED, 25.0)
    assert 20 <= clip.truth.size.min() and clip.truth.size.max() <= 30
    redactor = Redactor(engine_options(plates=False, face_model="centerface,yunet"))
    counting = Counting.install(redactor)
    result = redactor.run(clip.video, tmp_path / "out")
    *centerface, yunet = counting
    assert isinstance(yunet.detector, YuNetDetector) and yunet.frames == sum(c.frames for c in centerface) == 6
    faces = [(m["role"], m["id"]) for m in result.audit["models"] if m["role"] == "face"]
    assert faces == [("face", "centerface"), ("face", "yunet")]
    summary = summarize([score_video(clip, result.video)], "faces")
    assert summary["box_frames"] >= 13 and summary["leak"] == 0, summary
