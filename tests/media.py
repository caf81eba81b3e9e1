"""Clips generated for tests: known sizes, timestamps, rotation and audio, so fidelity can be checked exactly."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from redact.video import read_frames

EVALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "evaldata"


def face_photo() -> np.ndarray:
    """A real group photo with several annotated faces (dlib/PASCAL VOC)."""
    return cv2.imread(str(EVALDATA / "faces/dlib_pascal/images/2007_007763.jpg"))


def make_clip(
    path: Path,
    size: tuple[int, int] = (320, 240),
    frames: int = 30,
    fps: int = 30,
    pts: list[int] | None = None,
    audio: bool = True,
    image: np.ndarray | None = None,
    container: str | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_tracks: int = 1,
) -> Path:
    """Write a clip of `image` (default: a real face photo) panning slowly; `pts` in 1/fps units makes it VFR;
    with `audio`, `audio_tracks` AAC tracks of a tone (440 Hz, 660 Hz, ...)."""
    w, h = size
    base = cv2.resize(image if image is not None else face_photo(), (w + frames, h))
    out = av.open(str(path), "w", format=container)
    stream = out.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    scale = 100 if pts else 1
    if pts:  # irregular timestamps need a finer time base than 1/fps
        stream.time_base = Fraction(1, fps * scale)
    astreams = []
    for _ in range(audio_tracks if audio else 0):
        astreams.append(out.add_stream("aac", rate=16000))
        astreams[-1].layout = "mono"
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, i : i + w]), format="bgr24")
        frame.pts = (pts[i] if pts else i) * scale
        if pts:
            frame.time_base = stream.time_base
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    for k, astream in enumerate(astreams):
        n = -(-int(16000 * (pts[-1] + 1 if pts else frames) / fps) // 1024) * 1024  # whole AAC frames
        t = np.arange(n) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 220 * (k + 2) * t)).astype(np.float32).reshape(1, -1)
        for start in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(samples[:, start : start + 1024], format="flt", layout="mono")
            af.sample_rate = 16000
            af.pts = start
            out.mux(astream.encode(af))
        out.mux(astream.encode(None))
    out.close()
    return path


def film(path: Path, pieces: list[tuple[str, int]], width: int = 810, gap: int = 36) -> None:
    """30 frames of each GRID clip at its x offset on a grey stage, `gap` grey frames between (25 fps): longer
    than the tracker holds a lost face (30 frames), so each piece is a new track."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, 288, "yuv420p"

        def put(image: np.ndarray) -> None:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))

        for k, (clip, x) in enumerate(pieces):
            for _ in range(gap if k else 0):
                put(np.full((288, width, 3), 128, np.uint8))
            for frame in list(read_frames(EVALDATA / "video" / "grid" / clip))[:30]:
                image = np.full((288, width, 3), 128, np.uint8)
                image[:, x:x + 360] = frame.image
                put(image)
        out.mux(stream.encode())


def noisy_clip(path: Path, frames: int = 30) -> Path:
    """Random pixels: they do not compress, so the output is large."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (240, 320, 3), np.uint8), format="bgr24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


def set_mp4_rotation(path: Path, degrees: int) -> None:
    """Write a display matrix into the video track header (what phones do for portrait video)."""
    data = bytearray(path.read_bytes())
    one, minus = 0x10000, (-0x10000) & 0xFFFFFFFF
    a, b, c, d = {90: (0, one, minus, 0), 180: (minus, 0, 0, minus), 270: (0, minus, one, 0)}[degrees]
    pos = 0
    while (pos := data.find(b"tkhd", pos + 1)) != -1:
        version = data[pos + 4]
        matrix = pos + 4 + 4 + (32 if version == 1 else 20) + 8 + 8
        w = struct.unpack(">I", data[matrix + 36 : matrix + 40])[0]
        if w:  # the video track (audio tracks have zero width); the matrix is a b u c d v x y w
            data[matrix : matrix + 20] = struct.pack(">IIIII", a, b, 0, c, d)
    path.write_bytes(bytes(data))


def speak(text: str, rate: int = 16000, layout: str = "mono") -> np.ndarray:
    """espeak-ng speech as float32 (channels, n) at `rate` with `layout` (mono copied to every channel)."""
    if not shutil.which("espeak-ng"):
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)")
    raw = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text], capture_output=True,
                         check=True).stdout
    with av.open(io.BytesIO(raw)) as container:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        frames = [f for packet in container.decode(audio=0) for f in resampler.resample(packet)]
        frames += resampler.resample(None)
    mono = np.concatenate([f.to_ndarray() for f in frames], axis=1)
    return np.repeat(mono, len(av.AudioLayout(layout).channels), axis=0)


def talking_clip(path: Path, text: str, lead: float = 0.5, more: tuple[str, ...] = ()) -> Path:
    """A real talking face (a GRID clip's frames, looped) speaking `text` (espeak-ng) after `lead` seconds of
    silence, as H.264 + AAC, as long as the speech; each of `more` is spoken on an audio track of its own."""
    grid = [f.to_ndarray(format="bgr24") for f in av.open(str(EVALDATA / "video/grid/bbaf2n.mpg")).decode(video=0)]
    speech = [np.concatenate([np.zeros((1, int(lead * 16000)), np.float32), speak(t)], axis=1) for t in (text, *more)]
    frames = int(np.ceil(max(s.shape[1] for s in speech) / 16000 * 25)) + 5
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = grid[0].shape[1], grid[0].shape[0], "yuv420p"
        tracks = [out.add_stream("aac", rate=16000) for _ in speech]
        for audio in tracks:
            audio.layout = "mono"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(grid[i % len(grid)], format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for audio, samples in zip(tracks, speech, strict=True):
            for start in range(0, samples.shape[1], 1024):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format="flt",
                                                layout="mono")
                af.sample_rate, af.pts = 16000, start
                out.mux(audio.encode(af))
            out.mux(audio.encode(None))
    return path


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame of a video, decoded (BGR, upright)."""
    from redact.video import read_frames

    return [f.image for f in read_frames(path)]


def box_difference(a: np.ndarray, b: np.ndarray, box) -> float:
    """Mean absolute difference of two frames inside `box` (x1, y1, x2, y2 in pixels, rounded)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(np.abs(a[y1:y2, x1:x2].astype(np.int16) - b[y1:y2, x1:x2]).mean())


def assert_same_pictures(a: list[np.ndarray], b: list[np.ndarray], block: int = 16, tolerance: float = 8.0) -> None:
    """Two decodes show the same pictures: as many frames, and no 16x16 block differing by more than `tolerance`
    grey levels on average. libx264 does not give the same bytes for the same frames in two processes here (seen
    even single-threaded, with the encoder's input hashed equal): its noise moved blocks by up to 4.7 levels on a
    talking face, while a face left unredacted moves blocks by 15 and more."""
    assert len(a) == len(b), (len(a), len(b))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        h, w = (x.shape[0] // block) * block, (x.shape[1] // block) * block
        d = np.abs(x[:h, :w].astype(np.int16) - y[:h, :w]).reshape(h // block, block, w // block, block, 3).mean((1, 3, 4))
        assert d.max() <= tolerance, f"frame {i}: a {block}x{block} block differs by {d.max():.1f} grey levels"
