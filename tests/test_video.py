"""Fidelity: frame count, timestamps (VFR), duration, rotation, odd sizes and audio survive redaction."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from media import EVALDATA, make_clip, set_mp4_rotation
from redact.video import VideoWriter, probe, read_frames

GRID = sorted((EVALDATA / "video" / "grid").glob("*.mpg"))


def pts_seconds(path) -> list[float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sorted(float(f.pts * s.time_base) for f in c.decode(s))


def audio_seconds(path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return sum(f.samples for f in c.decode(s)) / s.sample_rate


@pytest.mark.parametrize("clip", GRID[:3], ids=lambda p: p.name)
def test_grid_clip_fidelity(redactor, clip, tmp_path):
    result = redactor.run(clip, tmp_path)
    src, out = probe(clip, count=True), probe(result.video, count=True)
    assert out.frames == src.frames == result.frames
    assert out.fps == pytest.approx(src.fps)
    assert abs(out.duration - src.duration) <= 1 / src.fps + 1e-6
    assert out.has_audio
    assert audio_seconds(result.video) == pytest.approx(audio_seconds(clip), abs=0.05)
    # frame times are kept exactly (to the output time base), so audio and video stay in sync
    assert np.allclose(pts_seconds(result.video), pts_seconds(clip), atol=1e-3)
    log = json.loads(result.log.read_text())
    assert log["stats"]["frames"] == src.frames
    faces = [t for t in log["tracks"] if t["class"] == "face"]
    assert faces, "a GRID clip shows a frontal face in every frame"
    assert log["stats"]["frames_redacted"] == src.frames


def test_variable_frame_rate_is_kept(redactor, tmp_path):
    pts = [0, 1, 2, 4, 5, 9, 10, 11, 15, 16, 17, 18, 25, 26, 27, 28, 29, 30, 40, 41]
    clip = make_clip(tmp_path / "vfr.mp4", frames=len(pts), pts=pts)
    result = redactor.run(clip, tmp_path / "out")
    assert probe(result.video, count=True).frames == len(pts)
    assert np.allclose(pts_seconds(result.video), [p / 30 for p in pts], atol=1e-3)


def test_rotation_is_applied_to_pixels(redactor, tmp_path):
    clip = make_clip(tmp_path / "rot.mp4", size=(320, 240), frames=10)
    set_mp4_rotation(clip, 90)
    info = probe(clip)
    assert (info.width, info.height, info.rotation) == (240, 320, 270)
    first = next(read_frames(clip)).image
    assert first.shape == (320, 240, 3)
    result = redactor.run(clip, tmp_path / "out")
    out = probe(result.video, count=True)
    assert (out.width, out.height, out.rotation, out.frames) == (240, 320, 0, 10)


def test_odd_size_without_audio(redactor, tmp_path):
    clip = make_clip(tmp_path / "odd.mkv", size=(321, 241), frames=12, audio=False, codec="ffv1", pix_fmt="yuv444p")
    result = redactor.run(clip, tmp_path / "out")
    out = probe(result.video, count=True)
    assert (out.width, out.height) == (322, 242)  # padded by one replicated row/column, never cropped
    assert out.frames == 12 and not out.has_audio
    assert json.loads(result.log.read_text())["audio"] is None


@pytest.mark.parametrize("container,codec", [("avi", "mpeg4"), ("mov", "libx264"), ("matroska", "libx265")])
def test_containers_and_codecs(redactor, tmp_path, container, codec):
    suffix = {"matroska": "mkv"}.get(container, container)
    clip = make_clip(tmp_path / f"c.{suffix}", frames=15, audio=False, container=container, codec=codec)
    result = redactor.run(clip, tmp_path / "out")
    assert probe(result.video, count=True).frames == 15


def test_pieces_joined_keep_every_timestamp_exactly(tmp_path):
    """A piece that starts between two milliseconds (frame 7 at 30 fps) must not move by the MP4 edit list's
    rounding: segmented and one-pass outputs have the same timestamps, tick for tick."""
    clip = make_clip(tmp_path / "src.mp4", frames=14, audio=False)
    info = probe(clip)
    tick = round(1 / (30 * info.time_base))
    frames = list(read_frames(clip))
    pieces = []
    for k, part in enumerate((frames[:7], frames[7:])):
        writer = VideoWriter(tmp_path / f"piece{k}.mp4", info, piece=True, audio=[])
        for frame in part:
            writer.write(frame.image, frame.pts)
        writer.finish()
        pieces.append(writer.publish())
    joined = VideoWriter(tmp_path / "joined.mp4", info, joins=pieces[0], audio=[])
    for piece in pieces:
        joined.append(piece)
    joined.finish()
    with av.open(str(joined.publish())) as c:
        assert [f.pts for f in c.decode(c.streams.video[0])] == [i * tick for i in range(14)]
